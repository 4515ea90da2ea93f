/**
 * Dataset stage. `composeDataset` is pure: cleaned, deduplicated articles + style + settings +
 * tokenizer → chat examples with a train/validation split, a max-length policy applied, and an
 * immutable version id (a content hash of the inputs and settings, so rebuilding unchanged inputs
 * gives the same id). `saveDataset` / `exportJsonl` are the I/O edges: SQLite rows and JSONL files
 * in the `messages` format that TRL and Axolotl read.
 */
import fs from 'node:fs';
import path from 'node:path';
import { isDiskFull, MorrisError, wrapFsError } from '../../errors.ts';
import type { Store } from '../../store/db.ts';
import { tmpPathFor } from '../../store/tmp-files.ts';
import { datasetExamples, datasetExists, exampleFigures, exampleWriter, getDataset, insertDataset } from '../../store/datasets.ts';
import type { ArticleInput } from './clean-text.ts';
import {
  articleMessages,
  hashNumber,
  selectExtras,
  stableHash,
  withSystem,
  type Style,
} from './enhance.ts';
import type { ChatMessage } from '../../prompts.ts';
import type { TokenCounter } from './token-count.ts';

/** Bump when the way examples are made changes, so old ids are not reused for new content. */
export const DATASET_FORMAT_VERSION = 1;

export type LengthPolicy = 'truncate' | 'split';

export interface DatasetSettings {
  maxTokens: number;
  policy: LengthPolicy;
  /** Share of articles held out for validation (by a stable hash of the URL). */
  valFraction: number;
  /** Extra hand-written examples per article example. */
  extraRatio: number;
  nearDupThreshold: number;
  minWords: number;
}

export const DEFAULT_VAL_FRACTION = 0.1;

export interface Example {
  split: 'train' | 'validation';
  kind: 'article' | 'extra';
  articleId: number | null;
  messages: ChatMessage[];
  nTokens: number;
}

export interface LengthCounts {
  /** Examples that fitted as they were. */
  fitted: number;
  /** Examples cut to fit (policy truncate, or a single paragraph too long in split mode). */
  truncated: number;
  /** Articles split into several examples, and the examples that made. */
  split: number;
  splitParts: number;
}

export interface ComposedDataset {
  id: string;
  examples: Example[];
  length: LengthCounts;
}

/** Stable split of one article: same URL, same side, whatever else is in the dataset. */
export function splitOf(key: string, valFraction: number): 'train' | 'validation' {
  key = splitKey(key);
  return (hashNumber(`split:${key}`) % 10_000) / 10_000 < valFraction ? 'validation' : 'train';
}

/**
 * An article URL without scheme, host and port: the same article keeps its side when a site moves
 * host or a local mirror (like the demo's sample site) comes up on another port.
 */
function splitKey(key: string): string {
  if (!/^https?:\/\//.test(key)) return key;
  const u = new URL(key);
  return `${u.pathname}${u.search}`;
}

export function datasetId(
  articles: ArticleInput[],
  style: Style,
  settings: DatasetSettings,
  tokenizerId: string,
): string {
  const inputs = articles
    .map((a) => [a.url, stableHash(`${a.title ?? ''}\n${a.published ?? ''}\n${a.body}`)])
    .sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
  const key = JSON.stringify({
    v: DATASET_FORMAT_VERSION,
    settings: Object.fromEntries(Object.entries(settings).sort(([a], [b]) => a.localeCompare(b))),
    tokenizer: tokenizerId,
    system: stableHash(style.systemPrompt),
    extras: stableHash(JSON.stringify(style.extras)),
    inputs,
  });
  return `ds-${stableHash(key).slice(0, 16)}`;
}

export function composeDataset(
  articles: ArticleInput[],
  style: Style,
  settings: DatasetSettings,
  counter: TokenCounter,
): ComposedDataset {
  if (articles.length === 0 && style.extras.length === 0) {
    throw new MorrisError('DATASET_EMPTY', 'No articles survived cleaning and dedupe, and there are no extra examples.', {
      hint: 'Scrape a source first (`morris scrape --source NAME`), then build again.',
    });
  }
  const length: LengthCounts = { fitted: 0, truncated: 0, split: 0, splitParts: 0 };
  const sorted = [...articles].sort((a, b) => (a.url < b.url ? -1 : a.url > b.url ? 1 : 0));
  const splits = new Map(sorted.map((a) => [a.id, splitOf(a.url, settings.valFraction)]));
  // A tiny archive can hash every article into train; hold out the one with the smallest hash.
  if (sorted.length >= 5 && settings.valFraction > 0 && ![...splits.values()].includes('validation')) {
    const pick = sorted.reduce((m, a) => (hashNumber(`split:${a.url}`) < hashNumber(`split:${m.url}`) ? a : m));
    splits.set(pick.id, 'validation');
  }

  const examples: Example[] = [];
  for (const a of sorted) {
    const parts = fitToLength(articleMessages(a, style.systemPrompt), a.title ?? '', counter, settings, length);
    for (const p of parts) {
      examples.push({ split: splits.get(a.id) ?? 'train', kind: 'article', articleId: a.id, messages: p.messages, nTokens: p.nTokens });
    }
  }
  for (const extra of selectExtras(style.extras, sorted.length, settings.extraRatio)) {
    const messages = withSystem(extra, style.systemPrompt);
    const title = messages.find((m) => m.role === 'assistant')?.content.split('\n', 1)[0] ?? '';
    for (const p of fitToLength(messages, title, counter, settings, length)) {
      examples.push({
        split: splitOf(`extra:${JSON.stringify(extra)}`, settings.valFraction),
        kind: 'extra',
        articleId: null,
        messages: p.messages,
        nTokens: p.nTokens,
      });
    }
  }
  // Train first, then validation; within each, the order above (articles by URL, then extras).
  examples.sort((x, y) => (x.split === y.split ? 0 : x.split === 'train' ? -1 : 1));
  return { id: datasetId(articles, style, settings, counter.id), examples, length };
}

/**
 * Applies the max-length policy to one conversation whose last turn is the assistant's text
 * (paragraphs separated by blank lines). `truncate` keeps the longest prefix of whole paragraphs
 * that fits; `split` packs paragraphs into several examples, each continuation asking to carry on
 * from where the previous part ended. A single paragraph too long for any example is cut by words.
 */
export function fitToLength(
  messages: ChatMessage[],
  title: string,
  counter: TokenCounter,
  settings: Pick<DatasetSettings, 'maxTokens' | 'policy'>,
  counts: LengthCounts,
): { messages: ChatMessage[]; nTokens: number }[] {
  const max = settings.maxTokens;
  const whole = counter.countChat(messages);
  if (whole <= max) {
    counts.fitted++;
    return [{ messages, nTokens: whole }];
  }
  const head = messages.slice(0, -1);
  const paragraphs = messages[messages.length - 1].content.split(/\n\s*\n/).filter((p) => p.trim());
  const build = (h: ChatMessage[], paras: string[]) => [...h, { role: 'assistant' as const, content: paras.join('\n\n') }];
  const emptyCost = counter.countChat(build(head, []));
  if (emptyCost >= max) {
    throw new MorrisError('BAD_INPUT', `--max-tokens ${max} leaves no room for an answer: the prompt alone takes ${emptyCost} tokens.`, {
      hint: 'Raise --max-tokens (MORRIS_MAX_SEQ_TOKENS) or shorten data/style/system-prompt.md.',
    });
  }
  if (settings.policy === 'truncate') {
    counts.truncated++;
    return [fitPrefix(head, paragraphs, counter, max, build)];
  }

  const parts: { messages: ChatMessage[]; nTokens: number }[] = [];
  let rest = paragraphs;
  let h = head;
  while (rest.length) {
    const part = fitPrefix(h, rest, counter, max, build);
    if (part.cut) counts.truncated++;
    parts.push(part);
    rest = rest.slice(part.used);
    if (rest.length) {
      const last = part.messages[part.messages.length - 1].content.split(/\n\s*\n/).pop() ?? '';
      const tail = last.split(/(?<=[.!?])\s+/).pop()?.split(/\s+/).slice(-40).join(' ') ?? '';
      h = [
        head[0],
        { role: 'user', content: `Continue your column "${title}" from where it left off: "${tail}"` },
      ];
    }
  }
  counts.split++;
  counts.splitParts += parts.length;
  return parts;
}

/** The most leading paragraphs that fit (binary search: token counts grow with paragraphs). */
function fitPrefix(
  head: ChatMessage[],
  paragraphs: string[],
  counter: TokenCounter,
  max: number,
  build: (h: ChatMessage[], p: string[]) => ChatMessage[],
): { messages: ChatMessage[]; nTokens: number; used: number; cut: boolean } {
  let lo = 0;
  let hi = paragraphs.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (counter.countChat(build(head, paragraphs.slice(0, mid))) <= max) lo = mid;
    else hi = mid - 1;
  }
  if (lo > 0) {
    const msgs = build(head, paragraphs.slice(0, lo));
    return { messages: msgs, nTokens: counter.countChat(msgs), used: lo, cut: false };
  }
  // Not even one paragraph fits: keep as many of its words as do.
  const words = paragraphs[0].split(/\s+/);
  let wl = 0;
  let wh = words.length;
  while (wl < wh) {
    const mid = Math.ceil((wl + wh) / 2);
    if (counter.countChat(build(head, [words.slice(0, mid).join(' ')])) <= max) wl = mid;
    else wh = mid - 1;
  }
  const msgs = build(head, [words.slice(0, Math.max(1, wl)).join(' ')]);
  return { messages: msgs, nTokens: counter.countChat(msgs), used: 1, cut: true };
}

// ---------- I/O edges ----------

/** Writes one JSONL file atomically (temp file + rename), each line `{"messages": [...]}`. */
export function writeJsonl(file: string, rows: ChatMessage[][]): void {
  const tmp = tmpPathFor(file);
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(tmp, rows.map((messages) => JSON.stringify({ messages })).join('\n') + (rows.length ? '\n' : ''));
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw wrapFsError(e, file);
  }
}

export function datasetFiles(outDir: string, id: string) {
  return {
    all: path.join(outDir, `${id}.jsonl`),
    train: path.join(outDir, `${id}.train.jsonl`),
    validation: path.join(outDir, `${id}.validation.jsonl`),
  };
}

/** One example as stored: built ones come from an article or an extra; imported ones have neither. */
export interface StoredExample {
  split: 'train' | 'validation';
  kind: Example['kind'] | 'import';
  articleId: number | null;
  messages: ChatMessage[];
  nTokens: number | null;
}

/**
 * Writes the JSONL files (when `outDir` is given), then registers the dataset and its examples in
 * one transaction. INSERT OR IGNORE + early return: a version that already exists (the same
 * content, built or imported concurrently) is registered once. Returns whether it was new.
 */
export function registerDataset(
  store: Store,
  ds: { id: string; origin: 'build' | 'import'; examples: StoredExample[]; settings: object; stats: object; outDir?: string },
): { created: boolean; jsonlPath: string | null } {
  const train = ds.examples.filter((e) => e.split === 'train');
  const val = ds.examples.filter((e) => e.split === 'validation');
  let jsonlPath: string | null = null;
  const written: string[] = [];
  let writing = `the database ${store.name}`;
  try {
    if (ds.outDir) {
      const files = datasetFiles(ds.outDir, ds.id);
      for (const [file, rows] of [[files.train, train], [files.validation, val], [files.all, ds.examples]] as const) {
        writing = file;
        writeJsonl(file, rows.map((e) => e.messages));
        written.push(file);
      }
      jsonlPath = files.all;
      writing = `the database ${store.name}`;
    }
    return insertDatasetRows(store, ds, train.length, val.length, jsonlPath);
  } catch (e) {
    // Files without their rows are orphans no build would clean up. Unless the same version got
    // registered meanwhile (by another process: same id, same content), they go.
    if (!datasetExists(store, ds.id)) {
      for (const f of written) fs.rmSync(f, { force: true });
    }
    if (!isDiskFull(e)) throw e;
    throw new MorrisError('DISK_FULL', `Disk full while writing ${writing}; dataset ${ds.id} was not registered and its partial files were removed (stored articles and earlier datasets are unchanged).`, {
      hint: 'Free some disk space (old datasets live under data/datasets, runs under data/runs, backups under data/backups) and try again.',
      cause: e,
    });
  }
}

function insertDatasetRows(
  store: Store,
  ds: { id: string; origin: 'build' | 'import'; examples: StoredExample[]; settings: object; stats: object },
  trainCount: number,
  valCount: number,
  jsonlPath: string | null,
): { created: boolean; jsonlPath: string | null } {
  let created = false;
  store.transaction(() => {
    created = insertDataset(store, { id: ds.id, origin: ds.origin, settings: ds.settings, stats: ds.stats, trainCount, valCount, jsonlPath });
    if (!created) return;
    const addExample = exampleWriter(store, ds.id);
    ds.examples.forEach((e, i) =>
      addExample({ split: e.split, kind: e.kind, articleId: e.articleId, messages: JSON.stringify(e.messages), nTokens: e.nTokens, ordinal: i }),
    );
  })();
  return { created, jsonlPath };
}

/** A built dataset version: its JSONL files and its rows. */
export function saveDataset(
  store: Store,
  ds: ComposedDataset,
  meta: { settings: object; stats: object; outDir: string },
): void {
  registerDataset(store, { id: ds.id, origin: 'build', examples: ds.examples, ...meta });
}

/** Writes a stored dataset (or one split of it) as messages-format JSONL. Returns the line count. */
export function exportJsonl(store: Store, id: string, outFile: string, split?: 'train' | 'validation'): number {
  getDataset(store, id);
  const rows = datasetExamples(store, id, split);
  writeJsonl(outFile, rows.map((r) => JSON.parse(r.messages) as ChatMessage[]));
  return rows.length;
}

export interface DatasetStats {
  id: string;
  origin: string;
  createdAt: string;
  examples: number;
  bySplit: { train: number; validation: number };
  byKind: Record<string, number>;
  articles: number;
  tokens: { total: number; min: number; max: number; mean: number; p50: number; p95: number } | null;
  /** [upper bound, count] per length bucket. */
  histogram: { upTo: number; count: number }[];
  build: unknown;
}

export function datasetStats(store: Store, id: string): DatasetStats {
  const row = getDataset(store, id);
  // Only what the figures need: the messages themselves can run to hundreds of megabytes.
  const ex = exampleFigures(store, id);
  const byKind: Record<string, number> = {};
  for (const e of ex) byKind[e.kind] = (byKind[e.kind] ?? 0) + 1;
  const lens = ex.map((e) => e.n_tokens).filter((n): n is number => n !== null).sort((a, b) => a - b);
  const q = (p: number) => lens[Math.min(lens.length - 1, Math.floor(p * lens.length))];
  return {
    id,
    origin: row.origin,
    createdAt: row.created_at,
    examples: ex.length,
    bySplit: { train: ex.filter((e) => e.split === 'train').length, validation: ex.filter((e) => e.split === 'validation').length },
    byKind,
    articles: new Set(ex.map((e) => e.article_id).filter((x) => x !== null)).size,
    tokens: lens.length
      ? {
          total: lens.reduce((s, n) => s + n, 0),
          min: lens[0],
          max: lens[lens.length - 1],
          mean: Math.round(lens.reduce((s, n) => s + n, 0) / lens.length),
          p50: q(0.5),
          p95: q(0.95),
        }
      : null,
    histogram: histogram(lens),
    build: JSON.parse(row.stats),
  };
}

/** Ten equal-width buckets with a round width (1, 2 or 5 × 10^k tokens) covering 0..max. */
export function histogram(lens: number[]): { upTo: number; count: number }[] {
  if (!lens.length) return [];
  const max = Math.max(...lens);
  const raw = Math.max(1, max / 10);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const width = [1, 2, 5, 10].map((m) => m * mag).find((w) => w >= raw) as number;
  const out = Array.from({ length: Math.ceil(max / width) || 1 }, (_, i) => ({ upTo: (i + 1) * width, count: 0 }));
  for (const n of lens) out[Math.min(out.length - 1, Math.max(0, Math.ceil(n / width) - 1))].count++;
  return out;
}
