/**
 * `morris dataset import FILE.jsonl`: bring your own data. Each line is one conversation in the
 * `messages` format TRL/Axolotl use — `{"messages": [{"role": "user", "content": "…"},
 * {"role": "assistant", "content": "…"}]}` — optionally with `"split": "train" | "validation"`.
 * After an optional system message, user and assistant alternate, and the assistant has the last
 * word (that reply is what training learns). Lines without a split are assigned by a stable hash
 * (10 % validation). The dataset version's id is the hash of its content, so importing the same
 * file twice gives the same version.
 *
 * The file is read line by line, never whole: memory is bounded by the longest line, not the
 * file (a 10 MB import once peaked at 900 MB). That takes three passes — check every line and
 * count the splits; hash the content into the id; write the JSONL files and rows — because the id
 * and the split fix-ups (at least one validation and one training example) are only known at the
 * end of the one before. A UTF-8 byte-order mark and CRLF line ends are accepted.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { MorrisError, wrapFsError } from '../../errors.ts';
import type { Store } from '../../store/db.ts';
import { exampleWriter, insertDataset } from '../../store/datasets.ts';
import { DEFAULT_VAL_FRACTION, datasetFiles } from './versions.ts';
import type { ChatMessage } from '../../prompts.ts';
import type { TokenCounter } from './token-count.ts';

const ROLES = new Set(['system', 'user', 'assistant']);
/** Bytes read at a time. */
const CHUNK_BYTES = 1 << 20;
/** Rejected lines listed one by one; past this they are only counted (a wrong file can have millions). */
export const MAX_REJECTED_LISTED = 1000;

export interface ImportResult {
  readonly id: string;
  readonly created: boolean;
  readonly train: number;
  readonly validation: number;
  /** Lines that were not usable, with why (1-based line numbers); the first MAX_REJECTED_LISTED. */
  readonly rejected: readonly { line: number; reason: string }[];
  /** Every rejected line, listed or not. */
  readonly rejectedTotal: number;
}

interface Parsed {
  messages: ChatMessage[];
  split: 'train' | 'validation';
}

/**
 * A file's lines, read in chunks: one chunk and the line being assembled are all it holds.
 * Splitting on the byte 0x0A is safe in UTF-8 (no multi-byte character contains it); a trailing
 * CR and, on the first line, a byte-order mark are removed.
 */
export function* readLines(file: string): Generator<{ line: number; text: string }> {
  const fd = fs.openSync(file, 'r');
  try {
    const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
    let pending: Buffer[] = [];
    let line = 0;
    const decode = (parts: Buffer[]): { line: number; text: string } => {
      let text = (parts.length === 1 ? parts[0]! : Buffer.concat(parts)).toString('utf8');
      if (text.endsWith('\r')) text = text.slice(0, -1);
      if (++line === 1 && text.startsWith('\uFEFF')) text = text.slice(1);
      return { line, text };
    };
    for (;;) {
      const n = fs.readSync(fd, chunk, 0, CHUNK_BYTES, null);
      if (n === 0) break;
      let start = 0;
      for (let nl = chunk.indexOf(0x0a, start); nl !== -1 && nl < n; nl = chunk.indexOf(0x0a, start)) {
        pending.push(chunk.subarray(start, nl));
        yield decode(pending);
        pending = [];
        start = nl + 1;
      }
      // The chunk buffer is reused: keep a copy of the unfinished line.
      if (start < n) pending.push(Buffer.from(chunk.subarray(start, n)));
    }
    if (pending.length) yield decode(pending);
  } finally {
    fs.closeSync(fd);
  }
}

/** Why a conversation cannot be trained on, or null: roles alternate and the assistant ends it. */
export function conversationProblem(messages: readonly ChatMessage[]): string | null {
  if (messages.length === 0) return 'no messages';
  const turns = messages[0]!.role === 'system' ? messages.slice(1) : messages;
  if (!turns.some((m) => m.role === 'assistant')) return 'no assistant reply';
  for (const [i, m] of turns.entries()) {
    const n = i + (turns === messages ? 1 : 2);
    if (m.role === 'system') return `message ${n} is a system message: only the first message may be one`;
    const want = i % 2 === 0 ? 'user' : 'assistant';
    if (m.role !== want) {
      return i === 0
        ? `starts with the assistant: the first message (after an optional system message) must be the user's`
        : `message ${n} is ${m.role === 'user' ? 'a user' : 'an assistant'} message after another: user and assistant must alternate`;
    }
  }
  const last = turns[turns.length - 1]!;
  if (last.role !== 'assistant') return "ends with the user: the assistant's reply must come last";
  if (last.content.trim() === '') return 'the last assistant reply is empty';
  return null;
}

function parseLine(text: string, valFraction: number): Parsed | string {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return 'not JSON';
  }
  const obj = raw as { messages?: unknown; split?: unknown };
  if (typeof obj !== 'object' || obj === null || !Array.isArray(obj.messages)) return 'no "messages" array';
  const messages: ChatMessage[] = [];
  for (const m of obj.messages as unknown[]) {
    const mm = m as { role?: unknown; content?: unknown };
    if (typeof mm !== 'object' || mm === null || typeof mm.role !== 'string' || typeof mm.content !== 'string') return 'a message lacks role/content strings';
    if (!ROLES.has(mm.role)) return `unknown role "${mm.role}"`;
    messages.push({ role: mm.role as ChatMessage['role'], content: mm.content });
  }
  const problem = conversationProblem(messages);
  if (problem) return problem;
  let split: 'train' | 'validation';
  if (obj.split === 'train' || obj.split === 'validation') split = obj.split;
  else if (obj.split === undefined) {
    const h = createHash('sha256').update(JSON.stringify(messages)).digest().readUInt32BE(0);
    split = h / 2 ** 32 < valFraction ? 'validation' : 'train';
  } else return `split must be "train" or "validation"`;
  return { messages, split };
}

/** The usable examples in file order, each with its final split (after the pass-1 fix-ups). */
function* examplesOf(file: string, valFraction: number, flips: ReadonlyMap<number, Parsed['split']>): Generator<Parsed> {
  let ordinal = 0;
  for (const { text } of readLines(file)) {
    if (text.trim() === '') continue;
    const p = parseLine(text, valFraction);
    if (typeof p === 'string') continue;
    p.split = flips.get(ordinal++) ?? p.split;
    yield p;
  }
}

export function importDataset(
  store: Store,
  file: string,
  tokenizer?: TokenCounter,
  opts: { outDir?: string; valFraction?: number; columnist?: string } = {},
): ImportResult {
  try {
    fs.accessSync(file, fs.constants.R_OK);
  } catch (e) {
    throw new MorrisError('NOT_FOUND', `Cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
  const valFraction = opts.valFraction ?? DEFAULT_VAL_FRACTION;

  // --- pass 1: check every line, count the splits ---
  const rejected: { line: number; reason: string }[] = [];
  let rejectedTotal = 0;
  let usable = 0;
  let validation = 0;
  for (const { line, text } of readLines(file)) {
    if (text.trim() === '') continue;
    const p = parseLine(text, valFraction);
    if (typeof p === 'string') {
      rejectedTotal++;
      if (rejected.length < MAX_REJECTED_LISTED) rejected.push({ line, reason: p });
      continue;
    }
    usable++;
    if (p.split === 'validation') validation++;
  }
  if (usable === 0) {
    throw new MorrisError('DATASET_EMPTY', `${file} has no usable conversation${rejectedTotal ? ` (${rejectedTotal} lines rejected, first: line ${rejected[0]!.line}: ${rejected[0]!.reason})` : ''}.`, {
      hint: 'Each line must be {"messages": [{"role": "user", "content": "…"}, {"role": "assistant", "content": "…"}]}.',
    });
  }
  // A tiny import would otherwise have no validation example at all, or no training one.
  const flips = new Map<number, Parsed['split']>();
  if (usable >= 2 && validation === 0) {
    flips.set(usable - 1, 'validation');
    validation = 1;
  }
  if (validation === usable) {
    flips.set(0, 'train');
    validation--;
  }
  const train = usable - validation;

  // --- pass 2: the id, the hash of JSON.stringify(examples) computed one example at a time ---
  const h = createHash('sha256').update('[');
  let i = 0;
  for (const e of examplesOf(file, valFraction, flips)) h.update(`${i++ ? ',' : ''}${JSON.stringify(e)}`);
  const id = `ds-${h.update(']').digest('hex').slice(0, 16)}`;

  // --- pass 3: JSONL files (temp, renamed at the end) and rows, in one transaction ---
  const files = opts.outDir ? datasetFiles(opts.outDir, id) : null;
  const stats = { imported_from: path.resolve(file), lines_rejected: rejectedTotal, tokenizer: tokenizer?.id ?? null };
  const out = files ? [files.all, files.train, files.validation].map((f) => ({ file: f, tmp: `${f}.tmp-${process.pid}`, fd: -1 })) : [];
  let created = false;
  try {
    if (files) fs.mkdirSync(opts.outDir!, { recursive: true });
    for (const o of out) o.fd = fs.openSync(o.tmp, 'w');
    store.transaction(() => {
      created = insertDataset(store, { id, origin: 'import', settings: { valFraction }, stats, trainCount: train, valCount: validation, jsonlPath: files?.all ?? null, columnist: opts.columnist });
      // The same content imported before: its rows stand; the files are written again all the same.
      if (!created && !files) return;
      const addExample = exampleWriter(store, id);
      let ordinal = 0;
      for (const e of examplesOf(file, valFraction, flips)) {
        const messages = JSON.stringify(e.messages);
        if (out.length) {
          const line = `{"messages":${messages}}\n`;
          fs.writeSync(out[0]!.fd, line);
          fs.writeSync(out[e.split === 'train' ? 1 : 2]!.fd, line);
        }
        if (created) addExample({ split: e.split, kind: 'import', articleId: null, messages, nTokens: tokenizer ? tokenizer.countChat(e.messages) : null, ordinal });
        ordinal++;
      }
      // Renamed before the commit: a row never names a file that is not there.
      for (const o of out) {
        fs.closeSync(o.fd);
        o.fd = -1;
        fs.renameSync(o.tmp, o.file);
      }
    })();
  } catch (e) {
    throw wrapFsError(e, files ? files.all : 'the dataset rows');
  } finally {
    for (const o of out) {
      if (o.fd >= 0) fs.closeSync(o.fd);
      fs.rmSync(o.tmp, { force: true });
    }
  }
  return { id, created, train, validation, rejected, rejectedTotal };
}
