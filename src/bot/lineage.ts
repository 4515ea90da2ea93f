/**
 * The lineage of a finished article (issue 16): which adapter, base model and dataset wrote it, and
 * how fresh that dataset's writing is (the newest publication date among its articles), so a
 * reader can tell versions apart and see when the voice was last brought up to date.
 */
import type { Store } from '../store/db.ts';
import { newestPublished } from '../store/articles.ts';
import { datasetArticleIds } from '../store/datasets.ts';
import type { Lineage } from './types.ts';

/** Datasets are immutable, so each one's newest article is looked up once per database. */
const newestByStore = new WeakMap<Store, Map<string, string | null>>();

/** The dataset's newest article date as a day (YYYY-MM-DD when the source gave an ISO date). */
export function datasetNewestArticle(store: Store, datasetId: string | null | undefined): string | null {
  if (!datasetId) return null;
  let cache = newestByStore.get(store);
  if (!cache) newestByStore.set(store, (cache = new Map()));
  if (!cache.has(datasetId)) {
    const newest = newestPublished(store, datasetArticleIds(store, datasetId));
    cache.set(datasetId, newest && /^\d{4}-\d{2}-\d{2}/.test(newest) ? newest.slice(0, 10) : newest);
  }
  return cache.get(datasetId)!;
}

export function lineageOf(store: Store, done: { adapterId?: string | null; baseModel?: string | null; datasetId?: string | null }): Lineage {
  return {
    adapterId: done.adapterId ?? null,
    baseModel: done.baseModel ?? null,
    datasetId: done.datasetId ?? null,
    newestArticle: datasetNewestArticle(store, done.datasetId),
  };
}
