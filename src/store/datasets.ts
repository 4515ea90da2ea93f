/**
 * The `datasets` and `examples` tables, the only module with their SQL: dataset versions and their
 * examples, written by the dataset build and import (pipeline/dataset/), read by them, the
 * trainer, the jobs, the demo and the dashboard. Messages are stored as JSON text.
 */
import type { Store } from './db.ts';
import { MorrisError } from '../errors.ts';
import { DEFAULT_COLUMNIST_NAME } from '../paths.ts';

export interface DatasetRow {
  id: string;
  created_at: string;
  origin: string;
  settings: string;
  stats: string;
  train_count: number;
  val_count: number;
  jsonl_path: string | null;
  columnist: string;
}

export interface ExampleRow {
  split: 'train' | 'validation';
  kind: string;
  article_id: number | null;
  messages: string;
  n_tokens: number | null;
}

/** One example to store; ordinal is its place in the dataset (the order the files list it in). */
export interface NewExample {
  split: 'train' | 'validation';
  kind: 'article' | 'extra' | 'import';
  articleId: number | null;
  /** JSON of the chat messages. */
  messages: string;
  nTokens: number | null;
  ordinal: number;
}

export interface DatasetSummaryRow {
  id: string;
  created_at: string;
  origin: string;
  train_count: number;
  val_count: number;
  stats: string | null;
}

/** The newest dataset of a columnist (default: the default one), if any. */
export function latestDatasetId(store: Store, columnist: string = DEFAULT_COLUMNIST_NAME): string | undefined {
  return (store.prepare('SELECT id FROM datasets WHERE columnist = ? ORDER BY created_at DESC, rowid DESC LIMIT 1').get(columnist) as { id: string } | undefined)?.id;
}

/** The columnist a dataset belongs to (undefined when there is no such dataset). */
export function datasetColumnist(store: Store, id: string): string | undefined {
  return (store.prepare('SELECT columnist FROM datasets WHERE id = ?').get(id) as { columnist: string } | undefined)?.columnist;
}

/**
 * `latest` (the columnist's newest), an exact id, or an unambiguous id prefix → the dataset id;
 * undefined when none fits. Ids are content hashes, unique across columnists.
 */
export function resolveDatasetRef(store: Store, ref: string, columnist: string = DEFAULT_COLUMNIST_NAME): string | undefined {
  if (ref === 'latest') return latestDatasetId(store, columnist);
  const exact = store.prepare('SELECT id FROM datasets WHERE id = ?').get(ref) as { id: string } | undefined;
  if (exact) return exact.id;
  const byPrefix = store.prepare('SELECT id FROM datasets WHERE id LIKE ? LIMIT 2').all(`${ref.replace(/[%_]/g, '')}%`) as { id: string }[];
  return byPrefix.length === 1 ? byPrefix[0]!.id : undefined;
}

/** A dataset's examples (messages as stored JSON), by split, in their stored order. */
export function datasetExampleRows(store: Store, datasetId: string, split?: 'train' | 'validation'): { split: 'train' | 'validation'; messages: string }[] {
  return split
    ? (store.prepare('SELECT split, messages FROM examples WHERE dataset_id = ? AND split = ? ORDER BY ordinal, id').all(datasetId, split) as { split: 'train'; messages: string }[])
    : (store.prepare('SELECT split, messages FROM examples WHERE dataset_id = ? ORDER BY split, ordinal, id').all(datasetId) as { split: 'train' | 'validation'; messages: string }[]);
}

export function recentDatasets(store: Store, limit = 20, columnist?: string): DatasetSummaryRow[] {
  return columnist === undefined
    ? (store.prepare('SELECT id, created_at, origin, train_count, val_count, stats FROM datasets ORDER BY created_at DESC, rowid DESC LIMIT ?').all(limit) as DatasetSummaryRow[])
    : (store
        .prepare('SELECT id, created_at, origin, train_count, val_count, stats FROM datasets WHERE columnist = ? ORDER BY created_at DESC, rowid DESC LIMIT ?')
        .all(columnist, limit) as DatasetSummaryRow[]);
}

export function datasetJsonlPath(store: Store, datasetId: string): string | null {
  return (store.prepare('SELECT jsonl_path FROM datasets WHERE id = ?').get(datasetId) as { jsonl_path: string | null } | undefined)?.jsonl_path ?? null;
}

export function datasetExists(store: Store, id: string): boolean {
  return store.prepare('SELECT 1 FROM datasets WHERE id = ?').get(id) !== undefined;
}

/**
 * Registers a dataset version; INSERT OR IGNORE, since the same id is the same content (built or
 * imported concurrently). Returns whether the row is new: only then do its examples go in.
 */
export function insertDataset(
  store: Store,
  ds: { id: string; origin: 'build' | 'import'; settings: object; stats: object; trainCount: number; valCount: number; jsonlPath: string | null; columnist?: string },
): boolean {
  const r = store
    .prepare(
      `INSERT OR IGNORE INTO datasets (id, origin, settings, stats, train_count, val_count, jsonl_path, columnist)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    )
    .run(ds.id, ds.origin, JSON.stringify(ds.settings), JSON.stringify(ds.stats), ds.trainCount, ds.valCount, ds.jsonlPath, ds.columnist ?? DEFAULT_COLUMNIST_NAME);
  return r.changes > 0;
}

/** A function that stores one example of `datasetId` (prepared once: imports add them by the million). */
export function exampleWriter(store: Store, datasetId: string): (e: NewExample) => void {
  const insert = store.prepare(
    'INSERT INTO examples (dataset_id, split, article_id, kind, messages, n_tokens, ordinal) VALUES (?, ?, ?, ?, ?, ?, ?)',
  );
  return (e) => insert.run(datasetId, e.split, e.articleId, e.kind, e.messages, e.nTokens, e.ordinal);
}

export function getDataset(store: Store, id: string): DatasetRow {
  const row = store.prepare<[string], DatasetRow>('SELECT * FROM datasets WHERE id = ?').get(id);
  if (!row) {
    throw new MorrisError('NOT_FOUND', `No dataset ${id}.`, { hint: 'See `morris dataset list` for the ids there are.' });
  }
  return row;
}

/** Dataset versions, newest first: one columnist's, or (without one) every columnist's. */
export function listDatasets(store: Store, columnist?: string): DatasetRow[] {
  return columnist === undefined
    ? store.prepare<[], DatasetRow>('SELECT * FROM datasets ORDER BY created_at DESC, rowid DESC').all()
    : store.prepare<[string], DatasetRow>('SELECT * FROM datasets WHERE columnist = ? ORDER BY created_at DESC, rowid DESC').all(columnist);
}

/** A dataset's examples in ordinal order (for the whole dataset, the order of its .jsonl file). */
export function datasetExamples(store: Store, id: string, split?: 'train' | 'validation'): ExampleRow[] {
  return split
    ? store
        .prepare<[string, string], ExampleRow>('SELECT split, kind, article_id, messages, n_tokens FROM examples WHERE dataset_id = ? AND split = ? ORDER BY ordinal')
        .all(id, split)
    : store
        .prepare<[string], ExampleRow>('SELECT split, kind, article_id, messages, n_tokens FROM examples WHERE dataset_id = ? ORDER BY ordinal')
        .all(id);
}

/** Every example's split, kind, article and length, without the messages (they can run to hundreds of megabytes). */
export function exampleFigures(store: Store, id: string): Omit<ExampleRow, 'messages'>[] {
  return store
    .prepare<[string], Omit<ExampleRow, 'messages'>>('SELECT split, kind, article_id, n_tokens FROM examples WHERE dataset_id = ?')
    .all(id);
}

/** The articles a dataset's examples were built from (imported and extra examples have none). */
export function datasetArticleIds(store: Store, datasetId: string): number[] {
  return (store.prepare('SELECT DISTINCT article_id AS id FROM examples WHERE dataset_id = ? AND article_id IS NOT NULL').all(datasetId) as { id: number }[]).map((r) => r.id);
}
