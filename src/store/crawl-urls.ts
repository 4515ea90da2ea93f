/**
 * The `crawl_urls` table (the crawl frontier), the only module with its SQL: every article URL a
 * crawl discovered, with what became of it, so URLs that failed or were left pending by a cap are
 * retried by the next run even when their listing answers 304. Keyed by (columnist, url): a URL
 * one voice has settled is still new to another.
 */
import type { Store } from './db.ts';
import { DEFAULT_COLUMNIST_NAME } from '../paths.ts';

export type CrawlUrlStatus = 'pending' | 'done' | 'skipped' | 'robots' | 'failed';

export interface CrawlUrlRow {
  url: string;
  status: CrawlUrlStatus;
  attempts: number;
  found_on: string | null;
  lastmod: string | null;
}

export function crawlUrl(store: Store, url: string, columnist: string = DEFAULT_COLUMNIST_NAME): CrawlUrlRow | undefined {
  return store
    .prepare<[string, string], CrawlUrlRow>('SELECT url, status, attempts, found_on, lastmod FROM crawl_urls WHERE columnist = ? AND url = ?')
    .get(columnist, url);
}

/** A source's URLs still to fetch: pending, or failed fewer than `maxAttempts` times in a row. */
export function retryableUrls(store: Store, source: string, maxAttempts: number): CrawlUrlRow[] {
  return store
    .prepare<[string, number], CrawlUrlRow>(
      `SELECT url, status, attempts, found_on, lastmod FROM crawl_urls WHERE source = ? AND status IN ('pending', 'failed') AND attempts < ?`,
    )
    .all(source, maxAttempts);
}

/** Adds a discovered URL as pending; a known one keeps its status and takes a newer lastmod. */
export function addFoundUrl(store: Store, u: { url: string; source: string; foundOn: string; lastmod: string | null; columnist?: string }): void {
  store
    .prepare(
      `INSERT INTO crawl_urls (columnist, url, source, found_on, lastmod) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT(columnist, url) DO UPDATE SET lastmod = coalesce(excluded.lastmod, crawl_urls.lastmod)`,
    )
    .run(u.columnist ?? DEFAULT_COLUMNIST_NAME, u.url, u.source, u.foundOn, u.lastmod);
}

/** Records what became of a URL. attempts counts consecutive failures; any settled outcome resets it. */
export function markUrl(store: Store, url: string, status: Exclude<CrawlUrlStatus, 'pending'>, reason: string | null, columnist: string = DEFAULT_COLUMNIST_NAME): void {
  store
    .prepare(
      `UPDATE crawl_urls SET status = @status, reason = @reason,
         attempts = CASE WHEN @status = 'failed' THEN attempts + 1 ELSE 0 END,
         last_attempt_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE columnist = @columnist AND url = @url`,
    )
    .run({ status, reason, url, columnist });
}

export function pendingUrlCount(store: Store, source: string): number {
  return (store.prepare(`SELECT count(*) AS n FROM crawl_urls WHERE source = ? AND status = 'pending'`).get(source) as { n: number }).n;
}
