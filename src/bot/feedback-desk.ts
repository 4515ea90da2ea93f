/**
 * Reader feedback, platform-neutral: what a 👍/👎, a suggested edit or a Regenerate click means,
 * whoever clicked (the clicker is recorded, who may not be the person who asked). Adapters turn
 * button clicks, reactions and modal submissions into these calls; the signals go to
 * store/feedback.ts, where they become preference pairs. Regenerate is an ordinary request of the
 * clicker's through the core (same checks, rate limit, queue and bookkeeping), linked to the
 * article it replaces.
 */
import { isMorrisError } from '../errors.ts';
import { childLog } from '../log.ts';
import type { Store } from '../store/db.ts';
import { articleForMessage, linkArticleMessages, listFeedback, recordFeedback } from '../store/feedback.ts';
import { askedFor, getGeneration, getGenerationEntry, type GenerationRecord } from '../store/generations.ts';
import { articleDetailsText } from './article-details.ts';
import { lineageOf } from './lineage.ts';
import { attributionOf } from './voices.ts';
import type { BotCore, Prepared } from './core.ts';
import { prepareRevision } from './revise.ts';
import type { GenerationOptions, Requester } from './types.ts';

const logger = childLog('bot-feedback');

/** What the clicker is told (privately) after a rating or an edit. */
export interface FeedbackReceipt {
  ok: boolean;
  message: string;
}

/** The options a generation was stored with (shared with revise.ts). */
export function storedOptions(raw: unknown): Partial<GenerationOptions> {
  const o = (raw && typeof raw === 'object' ? raw : {}) as Record<string, unknown>;
  return {
    ...(o.length === 'short' || o.length === 'medium' || o.length === 'long' ? { length: o.length } : {}),
    ...(typeof o.temperature === 'number' ? { temperature: o.temperature } : {}),
    ...(typeof o.maxNewTokens === 'number' ? { maxNewTokens: o.maxNewTokens } : {}),
  };
}

export class FeedbackDesk {
  constructor(
    private readonly core: BotCore,
    private readonly store: Store,
  ) {}

  /** The article behind a button (its text fills the edit form). */
  article(generationId: string): GenerationRecord | undefined {
    return getGeneration(this.store, generationId);
  }

  rate(clicker: Requester, generationId: string, value: 1 | -1): FeedbackReceipt {
    return this.record(clicker, generationId, () => {
      recordFeedback(this.store, { generationId, kind: 'rating', value, platform: clicker.platform, userId: clicker.userId });
      return value > 0 ? 'Thanks: noted 👍' : 'Thanks: noted 👎. Regenerate or suggest an edit to show what would be better.';
    });
  }

  suggestEdit(clicker: Requester, generationId: string, editedText: string): FeedbackReceipt {
    return this.record(clicker, generationId, () => {
      const before = getGeneration(this.store, generationId)?.article ?? '';
      if (editedText.trim() === before.trim()) return 'Nothing changed, so nothing was recorded.';
      recordFeedback(this.store, { generationId, kind: 'edit', editedText, platform: clicker.platform, userId: clicker.userId });
      return 'Thanks: your edit is recorded and will help train the next version.';
    });
  }

  /**
   * Asks for the same article again as the clicker: the original topic and options go through
   * the core's checks (the clicker's rate limit included) and open a generation whose parent is
   * `generationId`. A refusal comes back like any other.
   */
  async regenerate(clicker: Requester, generationId: string): Promise<Prepared> {
    const original = getGeneration(this.store, generationId);
    const asked = original && askedFor(this.store, original.id);
    if (!original || !asked) return { ok: false, reason: 'usage', message: 'That article is no longer known to Morris; ask for a new one.' };
    const checked = await this.core.precheck({ requester: clicker, text: original.topic, options: storedOptions(original.options) });
    if (!checked.ok) return checked;
    // Regenerating a revision redoes the revision (same article, same instruction).
    const prepared = this.core.accept(checked.accepted, { parentId: original.id, kind: 'regenerate', ...(asked.revision ? { revision: asked.revision } : {}) });
    recordFeedback(this.store, { generationId: original.id, kind: 'regenerate', platform: clicker.platform, userId: clicker.userId });
    return prepared;
  }

  /** A reader's reply to an article: its revision, linked to it (see revise.ts). */
  revise(replier: Requester, generationId: string, instruction: string): Promise<Prepared> {
    return prepareRevision(this.core, this.store, replier, generationId, instruction);
  }

  /** The full record of an article (its "Details"), for whoever asks; any reader may look. */
  details(generationId: string): FeedbackReceipt {
    const entry = getGenerationEntry(this.store, generationId);
    if (!entry) return { ok: false, message: 'That article is no longer known to Morris.' };
    const kindOf = (id: string) => {
      const g = getGeneration(this.store, id);
      return g && { id: g.id, kind: g.kind };
    };
    const text = articleDetailsText({
      entry,
      parent: entry.parentId ? kindOf(entry.parentId) : undefined,
      children: [...entry.regenerations, ...entry.revisions].map(kindOf).filter((c) => c !== undefined),
      feedback: listFeedback(this.store, entry.id),
      columnist: attributionOf(this.core.settings, entry.columnist),
      lineage: lineageOf(this.store, entry),
    });
    return { ok: true, message: text };
  }

  /** Remembers the messages an article was posted as, so a reaction on any of them counts. */
  linkMessages(platform: string, messageIds: readonly string[], generationId: string): void {
    linkArticleMessages(this.store, platform, messageIds, generationId);
  }

  generationForMessage(platform: string, messageId: string): string | undefined {
    return articleForMessage(this.store, platform, messageId);
  }

  private record(clicker: Requester, generationId: string, work: () => string): FeedbackReceipt {
    try {
      return { ok: true, message: work() };
    } catch (e) {
      logger.warn({ err: e, generationId, user: clicker.userId, platform: clicker.platform }, 'feedback not recorded');
      return { ok: false, message: isMorrisError(e) ? `${e.message}${e.hint ? ` ${e.hint}` : ''}` : 'Sorry, that could not be recorded.' };
    }
  }
}
