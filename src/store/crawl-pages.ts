/**
 * The `pages` table, the only module with its SQL: HTTP cache validators and history per fetched
 * URL (listing pages, feeds, sitemaps, articles), so an unchanged page costs a 304 next time.
 * Per columnist: another voice's 304 must not hide a page's body from a voice that never read it.
 */
import type { Store } from './db.ts';
import { DEFAULT_COLUMNIST_NAME } from '../paths.ts';

export interface PageValidators {
  etag: string | null;
  last_modified: string | null;
  fetched_at: string;
}

/** One HTTP response, as much of it as the table keeps (the crawl's FetchResult has these fields). */
export interface FetchedPage {
  url: string;
  finalUrl: string;
  status: number;
  etag: string | null;
  lastModified: string | null;
  truncated: boolean;
  bodyHash: string | null;
  redirects: readonly unknown[];
}

export function pageValidators(store: Store, url: string, columnist: string = DEFAULT_COLUMNIST_NAME): PageValidators | undefined {
  return store.prepare<[string, string], PageValidators>('SELECT etag, last_modified, fetched_at FROM pages WHERE columnist = ? AND url = ?').get(columnist, url);
}

export function savePage(store: Store, r: FetchedPage, columnist: string = DEFAULT_COLUMNIST_NAME): void {
  store
    .prepare(
      `INSERT INTO pages (columnist, url, final_url, etag, last_modified, http_status, body_hash, redirects, fetched_at)
       VALUES (@columnist, @url, @final_url, @etag, @last_modified, @http_status, @body_hash, @redirects, strftime('%Y-%m-%dT%H:%M:%fZ','now'))
       ON CONFLICT(columnist, url) DO UPDATE SET
         final_url = excluded.final_url,
         -- A 304 may omit validators; keep the ones we had. An error page must not erase them either.
         etag = CASE WHEN excluded.http_status < 400 THEN coalesce(excluded.etag, pages.etag) ELSE pages.etag END,
         last_modified = CASE WHEN excluded.http_status < 400 THEN coalesce(excluded.last_modified, pages.last_modified) ELSE pages.last_modified END,
         http_status = excluded.http_status,
         body_hash = coalesce(excluded.body_hash, pages.body_hash),
         redirects = excluded.redirects,
         fetched_at = excluded.fetched_at`,
    )
    .run({
      columnist,
      url: r.url,
      final_url: r.finalUrl,
      // Validators of a capped body would make the next run skip a page we never read whole.
      etag: r.truncated ? null : r.etag,
      last_modified: r.truncated ? null : r.lastModified,
      http_status: r.status,
      body_hash: r.bodyHash,
      redirects: r.redirects.length ? JSON.stringify(r.redirects) : null,
    });
}
