/**
 * Readers' preference pairs as TRL's conversational preference format, one JSON object a line:
 *
 *     {"prompt":   [{"role":"system","content":…},{"role":"user","content":"Write a column about …."}],
 *      "chosen":   [{"role":"assistant","content":…}],
 *      "rejected": [{"role":"assistant","content":…}]}
 *
 * (what `DPOTrainer` reads), plus a "morris" field naming the rule and articles behind the pair.
 * The prompt is built by prompts.ts exactly as generation asks (a revision's prompt is the whole
 * conversation), so a DPO run trains on the request the model really saw. Import reads the same
 * lines back into signals that store/feedback.ts derives into the same pairs.
 */
import { MorrisError } from '../../errors.ts';
import { articleMessages, revisionMessages, type ChatMessage } from '../../prompts.ts';
import type { Store } from '../../store/db.ts';
import { PAIR_SOURCES, preferencePairs, recordFeedback, type PairSource, type PreferencePair } from '../../store/feedback.ts';
import { closeGeneration, newGenerationId, openGeneration } from '../../store/generations.ts';

export interface PreferenceRecord {
  prompt: ChatMessage[];
  chosen: ChatMessage[];
  rejected: ChatMessage[];
  /**
   * Where the pair came from, so an import rebuilds the same signals (TRL reads the three fields
   * above and ignores this one): the rule that made it and the ids of the articles involved.
   */
  morris?: PairOrigin;
}

export interface PairOrigin {
  source: PairSource;
  family_id: string;
  chosen_id: string | null;
  rejected_id: string;
}

/** Who imported pairs are recorded as (platform and user of their generations and signals). */
export const IMPORT_PLATFORM = 'import';

export function toPreferenceRecord(pair: PreferencePair, systemPrompt: string): PreferenceRecord {
  return {
    prompt: pair.revision ? revisionMessages(systemPrompt, pair.topic, pair.revision.previousArticle, pair.revision.instruction) : articleMessages(systemPrompt, pair.topic),
    chosen: [{ role: 'assistant', content: pair.chosen }],
    rejected: [{ role: 'assistant', content: pair.rejected }],
    morris: { source: pair.source, family_id: pair.familyId, chosen_id: pair.chosenId, rejected_id: pair.rejectedId },
  };
}

/**
 * Every pair the store derives, as JSONL lines (each ends with a newline); with `columnist`, only
 * that voice's (a pair trains the voice its articles were written in, with its style guide).
 */
export function exportPreferenceLines(store: Store, systemPrompt: string, columnist?: string): string[] {
  return preferencePairs(store, columnist).map((p) => `${JSON.stringify(toPreferenceRecord(p, systemPrompt))}\n`);
}

/** The topic behind a user turn written by `columnInstruction`, or the turn itself. */
function topicOf(userTurn: string): string {
  return /^Write a column about ([\s\S]+)\.$/.exec(userTurn.trim())?.[1] ?? userTurn.trim();
}

function assistantText(messages: unknown, where: string): string {
  const last = Array.isArray(messages) ? (messages as Partial<ChatMessage>[]).at(-1) : undefined;
  if (!last || last.role !== 'assistant' || typeof last.content !== 'string') throw new MorrisError('BAD_INPUT', `${where} must end with an assistant message.`);
  return last.content;
}

export interface ParsedPair {
  topic: string;
  revision?: { previousArticle: string; instruction: string };
  chosen: string;
  rejected: string;
  origin?: PairOrigin;
}

function parseOrigin(raw: unknown): PairOrigin | undefined {
  const o = raw as Partial<PairOrigin> | undefined;
  if (!o || typeof o !== 'object') return undefined;
  const id = (v: unknown) => typeof v === 'string' && v.length > 0 && v.length <= 100;
  if (!PAIR_SOURCES.includes(o.source as PairSource) || !id(o.family_id) || !id(o.rejected_id) || !(o.chosen_id === null || id(o.chosen_id))) {
    throw new MorrisError('BAD_INPUT', '"morris" must be {"source":"edit"|"rating"|"pick","family_id":…,"chosen_id":…|null,"rejected_id":…}.');
  }
  return o as PairOrigin;
}

/**
 * One line → what was asked (a topic, or a revision: the user turn, the article, the instruction),
 * chosen and rejected text; a clear error naming what is wrong.
 */
export function parsePreferenceLine(line: string): ParsedPair {
  let rec: Partial<PreferenceRecord>;
  try {
    rec = JSON.parse(line) as Partial<PreferenceRecord>;
  } catch {
    throw new MorrisError('BAD_INPUT', 'not JSON');
  }
  const turns = Array.isArray(rec.prompt) ? rec.prompt.filter((m) => m?.role !== 'system') : [];
  const users = turns.filter((m) => m?.role === 'user');
  const first = users[0];
  if (typeof first?.content !== 'string') throw new MorrisError('BAD_INPUT', 'prompt has no user message.');
  const pair: ParsedPair = { topic: topicOf(first.content), chosen: assistantText(rec.chosen, 'chosen'), rejected: assistantText(rec.rejected, 'rejected') };
  // user, assistant, user: a revision of the article in the middle.
  const [, previous, instruction] = turns;
  if (turns.length === 3 && previous?.role === 'assistant' && typeof previous.content === 'string' && instruction?.role === 'user' && typeof instruction.content === 'string') {
    pair.revision = { previousArticle: previous.content, instruction: instruction.content };
  }
  const origin = parseOrigin(rec.morris);
  return origin ? { ...pair, origin } : pair;
}

function messages(v: unknown, where: string): ChatMessage[] {
  if (!Array.isArray(v) || v.length === 0) throw new MorrisError('BAD_INPUT', `${where} must be a non-empty list of messages.`);
  return v.map((m: Partial<ChatMessage>, i) => {
    if (!m || typeof m.content !== 'string' || !['system', 'user', 'assistant'].includes(m.role as string)) {
      throw new MorrisError('BAD_INPUT', `${where}[${i}] must be {"role": "system"|"user"|"assistant", "content": "…"}.`);
    }
    return { role: m.role!, content: m.content };
  });
}

/**
 * JSONL preference lines → whole records (the prompt exactly as written, for training on it).
 * Pairs whose two texts are the same are kept: the trainer skips and counts them.
 */
export function parsePreferenceRecords(text: string, source = 'input'): PreferenceRecord[] {
  const out: PreferenceRecord[] = [];
  text.split('\n').forEach((line, n) => {
    if (!line.trim()) return;
    try {
      let rec: Partial<Record<keyof PreferenceRecord, unknown>>;
      try {
        rec = JSON.parse(line) as typeof rec;
      } catch {
        throw new MorrisError('BAD_INPUT', 'not JSON');
      }
      const record = { prompt: messages(rec.prompt, 'prompt'), chosen: messages(rec.chosen, 'chosen'), rejected: messages(rec.rejected, 'rejected') };
      assistantText(record.chosen, 'chosen');
      assistantText(record.rejected, 'rejected');
      out.push(record);
    } catch (e) {
      throw new MorrisError('BAD_INPUT', `${source} line ${n + 1}: ${(e as Error).message}`, {
        hint: 'Each line must be {"prompt":[…],"chosen":[{"role":"assistant",…}],"rejected":[{"role":"assistant",…}]} (TRL conversational preference format; `morris feedback export` writes it).',
      });
    }
  });
  return out;
}

/**
 * The pairs as training (`--pairs latest`) and the gate read them, with the serving prompt; with
 * `columnist`, only that voice's (its articles).
 */
export function storePreferenceRecords(store: Store, systemPrompt: string, columnist?: string): PreferenceRecord[] {
  return preferencePairs(store, columnist).map((p) => toPreferenceRecord(p, systemPrompt));
}

export interface ImportSummary {
  imported: number;
  /** Pairs whose chosen and rejected texts are the same (they teach nothing). */
  skipped: number;
}

/**
 * Rebuilds, in the store, signals that derive back into these pairs: an edit becomes an imported
 * article and the reader's edit of it; a pair from ratings or a pick becomes two takes of one
 * request with the same ratings (👍 on the chosen, 👎 on a rejected one that was rated down).
 * Articles named by the lines' "morris" ids are created once, so one article in several pairs
 * stays one article. Lines without those ids (from elsewhere) each become an edit.
 */
class PairImporter {
  private readonly ids = new Map<string, string>();
  private readonly roots = new Map<string, string>();
  private readonly previous = new Map<string, string>();
  private readonly rated = new Set<string>();
  private readonly who = { platform: IMPORT_PLATFORM, userId: IMPORT_PLATFORM };

  /** `columnist`: the voice the imported articles (and so their pairs) belong to. */
  constructor(
    private readonly store: Store,
    private readonly columnist: string | undefined,
  ) {}

  add(pair: ParsedPair): void {
    const o = pair.origin;
    const family = o ? `f\u0000${o.family_id}` : `line\u0000${this.roots.size}`;
    const rejected = this.article(pair, family, o?.rejected_id, pair.rejected);
    if (!o || o.source === 'edit') {
      recordFeedback(this.store, { generationId: rejected, kind: 'edit', editedText: pair.chosen, ...this.who });
      return;
    }
    const chosen = this.article(pair, family, o.chosen_id ?? undefined, pair.chosen);
    this.rate(chosen, 1);
    if (o.source === 'rating') this.rate(rejected, -1);
  }

  private rate(generationId: string, value: 1 | -1): void {
    if (this.rated.has(generationId)) return;
    this.rated.add(generationId);
    recordFeedback(this.store, { generationId, kind: 'rating', value, ...this.who });
  }

  /** The imported generation for `sourceId` (created on first sight) in the family `family`. */
  private article(pair: ParsedPair, family: string, sourceId: string | undefined, text: string): string {
    const known = sourceId && this.ids.get(sourceId);
    if (known) return known;
    const id = newGenerationId();
    const root = this.roots.get(family);
    const link = root
      ? { parentId: root, kind: 'regenerate' as const, instruction: pair.revision?.instruction }
      : pair.revision
        ? { parentId: this.previousArticle(pair.topic, pair.revision.previousArticle), kind: 'revise' as const, instruction: pair.revision.instruction }
        : {};
    openGeneration(this.store, { id, requester: this.who, topic: pair.topic, columnist: this.columnist, ...link });
    closeGeneration(this.store, id, { outcome: 'ok', durationMs: 0, nChars: text.length, article: text });
    if (!root) this.roots.set(family, id);
    if (sourceId) this.ids.set(sourceId, id);
    return id;
  }

  /** The article a revision revised, imported once per text. */
  private previousArticle(topic: string, text: string): string {
    const key = `${topic}\u0000${text}`;
    let id = this.previous.get(key);
    if (!id) {
      id = newGenerationId();
      openGeneration(this.store, { id, requester: this.who, topic, columnist: this.columnist });
      closeGeneration(this.store, id, { outcome: 'ok', durationMs: 0, nChars: text.length, article: text });
      this.previous.set(key, id);
    }
    return id;
  }
}

/**
 * Reads JSONL preference lines into the store, all or nothing, as pairs of `columnist`'s articles
 * (default: the default columnist): they train that voice and its gate measures on them.
 */
export function importPreferenceLines(store: Store, text: string, source = 'input', columnist?: string): ImportSummary {
  const summary: ImportSummary = { imported: 0, skipped: 0 };
  const lines = text.split('\n');
  const importer = new PairImporter(store, columnist);
  store.transaction(() => {
    lines.forEach((line, n) => {
      if (!line.trim()) return;
      let pair: ParsedPair;
      try {
        pair = parsePreferenceLine(line);
      } catch (e) {
        throw new MorrisError('BAD_INPUT', `${source} line ${n + 1}: ${(e as Error).message}`, {
          hint: 'Each line must be {"prompt":[…,{"role":"user",…}],"chosen":[{"role":"assistant",…}],"rejected":[{"role":"assistant",…}]} (TRL conversational preference format).',
        });
      }
      if (pair.chosen.trim() === pair.rejected.trim()) {
        summary.skipped++;
        return;
      }
      importer.add(pair);
      summary.imported++;
    });
  })();
  return summary;
}
