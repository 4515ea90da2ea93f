/**
 * Dataset stage. `composeDataset` is pure: cleaned, deduplicated articles + style + settings +
 * tokenizer → chat examples with a train/validation split, the max-length policy (fit-length.ts)
 * applied, and an immutable version id (a content hash of the inputs and settings, so rebuilding
 * unchanged inputs gives the same id). `saveDataset` / `exportJsonl` are the I/O edges: SQLite rows and JSONL files
 * in the `messages` format that TRL and Axolotl read.
 */
import fs from 'node:fs';
import path from 'node:path';
import { isDiskFull, MorrisError, wrapFsError } from '../../errors.ts';
import type { Store } from '../../store/db.ts';
import { tmpPathFor } from '../../store/tmp-files.ts';
import { datasetExamples, datasetExists, exampleWriter, getDataset, insertDataset } from '../../store/datasets.ts';
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
import { fitToLength, type LengthCounts, type LengthPolicy } from './fit-length.ts';

/** Bump when the way examples are made changes, so old ids are not reused for new content. */
export const DATASET_FORMAT_VERSION = 1;

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

export interface ComposedDataset {
  id: string;
  examples: Example[];
  length: LengthCounts;
}

/** Stable split of one article: same URL, same side, whatever else is in the dataset. */
export function splitOf(key: string, valFraction: number): 'train' | 'validation' {
  return (splitHash(key) % 10_000) / 10_000 < valFraction ? 'validation' : 'train';
}

/** The hash behind an article's side; the small-archive fallback ranks by it too, so both ignore the host alike. */
function splitHash(key: string): number {
  return hashNumber(`split:${splitKey(key)}`);
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
    const pick = sorted.reduce((m, a) => (splitHash(a.url) < splitHash(m.url) ? a : m));
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
  ds: { id: string; origin: 'build' | 'import'; examples: StoredExample[]; settings: object; stats: object; outDir?: string; columnist?: string },
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
  ds: { id: string; origin: 'build' | 'import'; examples: StoredExample[]; settings: object; stats: object; columnist?: string },
  trainCount: number,
  valCount: number,
  jsonlPath: string | null,
): { created: boolean; jsonlPath: string | null } {
  let created = false;
  store.transaction(() => {
    created = insertDataset(store, { id: ds.id, origin: ds.origin, settings: ds.settings, stats: ds.stats, trainCount, valCount, jsonlPath, columnist: ds.columnist });
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
  meta: { settings: object; stats: object; outDir: string; columnist?: string },
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

