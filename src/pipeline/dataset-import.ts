/**
 * `morris dataset import FILE.jsonl`: bring your own data. Each line is one conversation in the
 * `messages` format TRL/Axolotl use — `{"messages": [{"role": "user", "content": "…"},
 * {"role": "assistant", "content": "…"}]}` — optionally with `"split": "train" | "validation"`.
 * Lines without a split are assigned by a stable hash (10 % validation). The dataset version's
 * id is the hash of its content, so importing the same file twice gives the same version.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { MorrisError } from '../errors.ts';
import type { Store } from '../store/db.ts';
import { DEFAULT_VAL_FRACTION, registerDataset } from './dataset.ts';
import type { ChatMessage } from './enhance.ts';
import type { TokenCounter } from './tokens.ts';

const ROLES = new Set(['system', 'user', 'assistant']);

export interface ImportResult {
  readonly id: string;
  readonly created: boolean;
  readonly train: number;
  readonly validation: number;
  /** Lines that were not usable, with why (1-based line numbers). */
  readonly rejected: readonly { line: number; reason: string }[];
}

interface Parsed {
  messages: ChatMessage[];
  split: 'train' | 'validation';
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
  if (!messages.some((m) => m.role === 'assistant' && m.content.trim() !== '')) return 'no assistant reply';
  let split: 'train' | 'validation';
  if (obj.split === 'train' || obj.split === 'validation') split = obj.split;
  else if (obj.split === undefined) {
    const h = createHash('sha256').update(JSON.stringify(messages)).digest().readUInt32BE(0);
    split = h / 2 ** 32 < valFraction ? 'validation' : 'train';
  } else return `split must be "train" or "validation"`;
  return { messages, split };
}

export function importDataset(
  store: Store,
  file: string,
  tokenizer?: TokenCounter,
  opts: { outDir?: string; valFraction?: number } = {},
): ImportResult {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new MorrisError('NOT_FOUND', `Cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
  const valFraction = opts.valFraction ?? DEFAULT_VAL_FRACTION;
  const examples: Parsed[] = [];
  const rejected: { line: number; reason: string }[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() === '') return;
    const p = parseLine(line, valFraction);
    if (typeof p === 'string') rejected.push({ line: i + 1, reason: p });
    else examples.push(p);
  });
  if (examples.length === 0) {
    throw new MorrisError('DATASET_EMPTY', `${file} has no usable conversation${rejected.length ? ` (${rejected.length} lines rejected, first: line ${rejected[0]!.line}: ${rejected[0]!.reason})` : ''}.`, {
      hint: 'Each line must be {"messages": [{"role": "user", "content": "…"}, {"role": "assistant", "content": "…"}]}.',
    });
  }
  // A tiny import would otherwise have no validation example at all.
  if (examples.length >= 2 && !examples.some((e) => e.split === 'validation')) examples[examples.length - 1]!.split = 'validation';
  if (!examples.some((e) => e.split === 'train')) examples[0]!.split = 'train';

  const id = `ds-${createHash('sha256').update(JSON.stringify(examples)).digest('hex').slice(0, 16)}`;
  const train = examples.filter((e) => e.split === 'train');
  const validation = examples.filter((e) => e.split === 'validation');
  const stats = { imported_from: path.resolve(file), lines_rejected: rejected.length, tokenizer: tokenizer?.id ?? null };
  const { created } = registerDataset(store, {
    id,
    origin: 'import',
    examples: examples.map((e) => ({ ...e, kind: 'import', articleId: null, nTokens: tokenizer ? tokenizer.countChat(e.messages) : null })),
    settings: { valFraction },
    stats,
    ...(opts.outDir ? { outDir: opts.outDir } : {}),
  });
  return { id, created, train: train.length, validation: validation.length, rejected };
}
