/**
 * Readers' preference pairs as TRL's conversational preference format, one JSON object a line:
 *
 *     {"prompt":   [{"role":"system","content":…},{"role":"user","content":"Write a column about …."}],
 *      "chosen":   [{"role":"assistant","content":…}],
 *      "rejected": [{"role":"assistant","content":…}]}
 *
 * (what `DPOTrainer` reads). The prompt is built by prompts.ts exactly as generation asks, so a
 * DPO run trains on the request the model really saw. Import reads the same lines back: each
 * becomes an imported article (the rejected text) and a reader's edit of it (the chosen text),
 * which store/feedback.ts derives back into the same pair.
 */
import { MorrisError } from '../../errors.ts';
import { articleMessages, type ChatMessage } from '../../prompts.ts';
import type { Store } from '../../store/db.ts';
import { preferencePairs, recordFeedback, type PreferencePair } from '../../store/feedback.ts';
import { closeGeneration, newGenerationId, openGeneration } from '../../store/generations.ts';

export interface PreferenceRecord {
  prompt: ChatMessage[];
  chosen: ChatMessage[];
  rejected: ChatMessage[];
}

/** Who imported pairs are recorded as (platform and user of their generations and edits). */
export const IMPORT_PLATFORM = 'import';

export function toPreferenceRecord(pair: Pick<PreferencePair, 'topic' | 'chosen' | 'rejected'>, systemPrompt: string): PreferenceRecord {
  return {
    prompt: articleMessages(systemPrompt, pair.topic),
    chosen: [{ role: 'assistant', content: pair.chosen }],
    rejected: [{ role: 'assistant', content: pair.rejected }],
  };
}

/** Every pair the store derives, as JSONL lines (each ends with a newline). */
export function exportPreferenceLines(store: Store, systemPrompt: string): string[] {
  return preferencePairs(store).map((p) => `${JSON.stringify(toPreferenceRecord(p, systemPrompt))}\n`);
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

/** One line → topic, chosen and rejected text; a clear error naming what is wrong. */
export function parsePreferenceLine(line: string): { topic: string; chosen: string; rejected: string } {
  let rec: Partial<PreferenceRecord>;
  try {
    rec = JSON.parse(line) as Partial<PreferenceRecord>;
  } catch {
    throw new MorrisError('BAD_INPUT', 'not JSON');
  }
  const user = Array.isArray(rec.prompt) ? rec.prompt.filter((m) => m?.role === 'user').at(-1) : undefined;
  if (typeof user?.content !== 'string') throw new MorrisError('BAD_INPUT', 'prompt has no user message.');
  return { topic: topicOf(user.content), chosen: assistantText(rec.chosen, 'chosen'), rejected: assistantText(rec.rejected, 'rejected') };
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

/** Every pair the store derives, as records with the serving prompt (what `--pairs latest` trains on). */
export function storePreferenceRecords(store: Store, systemPrompt: string): PreferenceRecord[] {
  return preferencePairs(store).map((p) => toPreferenceRecord(p, systemPrompt));
}

export interface ImportSummary {
  imported: number;
  /** Pairs whose chosen and rejected texts are the same (they teach nothing). */
  skipped: number;
}

/** Reads JSONL preference lines into the store, all or nothing. */
export function importPreferenceLines(store: Store, text: string, source = 'input'): ImportSummary {
  const summary: ImportSummary = { imported: 0, skipped: 0 };
  const lines = text.split('\n');
  store.transaction(() => {
    lines.forEach((line, n) => {
      if (!line.trim()) return;
      let pair: ReturnType<typeof parsePreferenceLine>;
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
      const id = newGenerationId();
      openGeneration(store, { id, requester: { platform: IMPORT_PLATFORM, userId: IMPORT_PLATFORM }, topic: pair.topic });
      closeGeneration(store, id, { outcome: 'ok', durationMs: 0, nChars: pair.rejected.length, article: pair.rejected });
      recordFeedback(store, { generationId: id, kind: 'edit', editedText: pair.chosen, platform: IMPORT_PLATFORM, userId: IMPORT_PLATFORM });
      summary.imported++;
    });
  })();
  return summary;
}
