/**
 * Reading dataset versions and their examples (the `datasets` and `examples` tables). The
 * dataset build (pipeline/dataset/versions.ts) and import still write them; their writes move here next.
 */
import type { Store } from './db.ts';

export interface DatasetSummaryRow {
  id: string;
  created_at: string;
  origin: string;
  train_count: number;
  val_count: number;
  stats: string | null;
}

/** The newest dataset's id, if any. */
export function latestDatasetId(store: Store): string | undefined {
  return (store.prepare('SELECT id FROM datasets ORDER BY created_at DESC, rowid DESC LIMIT 1').get() as { id: string } | undefined)?.id;
}

/** `latest`, an exact id, or an unambiguous id prefix → the dataset id; undefined when none fits. */
export function resolveDatasetRef(store: Store, ref: string): string | undefined {
  if (ref === 'latest') return latestDatasetId(store);
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

export function recentDatasets(store: Store, limit = 20): DatasetSummaryRow[] {
  return store.prepare('SELECT id, created_at, origin, train_count, val_count, stats FROM datasets ORDER BY created_at DESC, rowid DESC LIMIT ?').all(limit) as DatasetSummaryRow[];
}

export function datasetJsonlPath(store: Store, datasetId: string): string | null {
  return (store.prepare('SELECT jsonl_path FROM datasets WHERE id = ?').get(datasetId) as { jsonl_path: string | null } | undefined)?.jsonl_path ?? null;
}
