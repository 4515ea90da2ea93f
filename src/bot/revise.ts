/**
 * Revise in the thread (issue 16): a reader's reply to an article ("shorter, and more about
 * spectrum costs") asks for a revised article with the conversation as context. The reply is an
 * ordinary request of the replier's through the core (same checks, rate limit, queue and
 * bookkeeping), on the original topic and options, linked to the article it revises by parent_id.
 */
import type { Store } from '../store/db.ts';
import { getGeneration } from '../store/generations.ts';
import type { BotCore, Prepared } from './core.ts';
import { storedOptions } from './feedback-desk.ts';
import { findBlockedTerm } from './render.ts';
import type { ReplyUpdate, Requester } from './types.ts';

/** What a reply that says nothing gets: how revising works, instead of a silent drop. */
export const REVISE_USAGE = 'Reply to a Morris article with what to change, e.g. “shorter, and more about spectrum costs”, and Morris will revise it.';

/**
 * Prepares the revision of `generationId` asked by `replier`; a refusal (empty or too long
 * instruction, blocked term, unknown article, rate limit) comes back like any other.
 */
export async function prepareRevision(core: BotCore, store: Store, replier: Requester, generationId: string, instruction: string): Promise<Prepared> {
  const text = instruction.replace(/\s+/g, ' ').trim();
  if (!text) return { ok: false, reason: 'usage', message: REVISE_USAGE };
  const { maxTopicChars, blocklist } = core.settings;
  if (text.length > maxTopicChars) {
    return { ok: false, reason: 'too_long', message: `That instruction is ${text.length.toLocaleString('en-GB')} characters; please keep it under ${maxTopicChars}.` };
  }
  if (findBlockedTerm(text, blocklist)) return { ok: false, reason: 'blocked', message: "Sorry, that's a topic Morris won't write about." };
  const original = getGeneration(store, generationId);
  // Only a finished article can be revised: the previous text is part of the prompt.
  if (!original?.article) return { ok: false, reason: 'usage', message: 'That article’s text is no longer kept, so it cannot be revised; ask for a new one.' };
  const checked = await core.precheck({ requester: replier, text: original.topic, options: storedOptions(original.options) });
  if (!checked.ok) return checked;
  return core.accept(checked.accepted, { parentId: original.id, revision: { previousArticle: original.article, instruction: text } });
}

/**
 * The feedback_messages key of a Slack thread (channel and root ts). A finished article in the
 * thread replaces the link, so a later reply revises the latest version.
 */
export function threadKey(channel: string, threadTs: string): string {
  return `thread:${channel}:${threadTs}`;
}

/** Passes updates through, calling `link` with a finished article's id before it is shown. */
export async function* onFinal(updates: AsyncIterable<ReplyUpdate>, link: (generationId: string) => void): AsyncGenerator<ReplyUpdate> {
  for await (const u of updates) {
    if (u.kind === 'final') link(u.generationId);
    yield u;
  }
}
