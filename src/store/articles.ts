/**
 * The `articles` table, the only module with its SQL: one row per canonical article URL, written by
 * the crawl (articles, and pages that are not articles as 'skipped' so they are not refetched
 * blindly), read and marked by the dataset build, counted by the dashboard and the demo. Each row
 * belongs to the columnist whose scrape stored it; a URL is unique per columnist (migration 49), so
 * two voices may both learn from the same public page.
 */
import type { Store } from './db.ts';
import { DEFAULT_COLUMNIST_NAME } from '../paths.ts';

export type ArticleStatus = 'ok' | 'skipped' | 'duplicate';

/** What the crawl needs to know about a stored URL. */
export interface StoredArticle {
  id: number;
  status: ArticleStatus;
  content_hash: string | null;
}

/** An article as the dataset build reads it. */
export interface ArticleText {
  id: number;
  url: string;
  title: string | null;
  author: string | null;
  published: string | null;
  body: string;
}

export interface ArticleCount {
  source: string;
  status: ArticleStatus;
  n: number;
  last_updated: string;
}

export function articleByUrl(store: Store, url: string, columnist: string = DEFAULT_COLUMNIST_NAME): StoredArticle | undefined {
  return store.prepare<[string, string], StoredArticle>('SELECT id, status, content_hash FROM articles WHERE columnist = ? AND url = ?').get(columnist, url);
}

/** Inserts or replaces an article; a row that was skipped before becomes an article. */
export function saveArticle(
  store: Store,
  a: { source: string; url: string; title: string | null; author: string | null; published: string | null; body: string; contentHash: string | null; columnist?: string },
): void {
  store
    .prepare(
      `INSERT INTO articles (source, url, title, author, published, body, content_hash, columnist, status)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'ok')
       ON CONFLICT(columnist, url) DO UPDATE SET title = excluded.title, author = excluded.author,
         published = excluded.published, body = excluded.body, content_hash = excluded.content_hash,
         status = 'ok', skip_reason = NULL, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now')`,
    )
    .run(a.source, a.url, a.title, a.author, a.published, a.body, a.contentHash, a.columnist ?? DEFAULT_COLUMNIST_NAME);
}

/** Remembers a URL that is not an article we keep; a row already there (an article) is left alone. */
export function saveSkippedArticle(store: Store, s: { source: string; url: string; title: string | null; reason: string; columnist?: string }): void {
  store
    .prepare(`INSERT INTO articles (source, url, title, status, skip_reason, columnist) VALUES (?, ?, ?, 'skipped', ?, ?) ON CONFLICT(columnist, url) DO NOTHING`)
    .run(s.source, s.url, s.title, s.reason, s.columnist ?? DEFAULT_COLUMNIST_NAME);
}

/**
 * The dataset build's inputs, by id: 'ok' and 'duplicate' rows alike, since dedupe decides afresh
 * each build (so its own marks cannot change the next build's inputs, and with them its id).
 */
export function articleTexts(store: Store, source?: string, columnist: string = DEFAULT_COLUMNIST_NAME): ArticleText[] {
  return store
    .prepare<unknown[], ArticleText>(
      `SELECT id, url, title, author, published, body FROM articles
       WHERE status IN ('ok', 'duplicate') AND columnist = ? ${source ? 'AND source = ?' : ''} ORDER BY id`,
    )
    .all(columnist, ...(source ? [source] : []));
}

/** Marks each article ok, or a duplicate of another, in one transaction; skipped rows stay skipped. */
export function markDuplicates(store: Store, marks: readonly { id: number; duplicateOf: number | null }[]): void {
  const mark = store.prepare(`UPDATE articles SET status = ?, duplicate_of = ? WHERE id = ? AND status IN ('ok', 'duplicate')`);
  store.transaction(() => {
    for (const m of marks) mark.run(m.duplicateOf === null ? 'ok' : 'duplicate', m.duplicateOf, m.id);
  })();
}

/** Articles kept, of one columnist or (without one) of all. */
export function okArticleCount(store: Store, columnist?: string): number {
  return columnist === undefined
    ? (store.prepare(`SELECT COUNT(*) AS n FROM articles WHERE status = 'ok'`).get() as { n: number }).n
    : (store.prepare(`SELECT COUNT(*) AS n FROM articles WHERE status = 'ok' AND columnist = ?`).get(columnist) as { n: number }).n;
}

/** Rows per source and status, with the latest change of each. */
export function articleCounts(store: Store): ArticleCount[] {
  return store
    .prepare(`SELECT source, status, COUNT(*) AS n, MAX(updated_at) AS last_updated FROM articles GROUP BY source, status ORDER BY source, status`)
    .all() as ArticleCount[];
}

/**
 * The latest publication date among these articles (as the source wrote it, ISO dates sorting
 * last-is-newest), or null when none has one.
 */
export function newestPublished(store: Store, ids: readonly number[]): string | null {
  if (!ids.length) return null;
  const row = store.prepare('SELECT MAX(published) AS newest FROM articles WHERE id IN (SELECT value FROM json_each(?)) AND published IS NOT NULL').get(JSON.stringify(ids)) as
    | { newest: string | null }
    | undefined;
  return row?.newest ?? null;
}
