/**
 * Choosing what a crawl fetches: every URL discovery found, plus the source's URLs left pending
 * or failed by earlier runs. New URLs are fetched; known ones only when they are still unsettled
 * or a sitemap says they changed since we last fetched them, unless the run is `full`.
 */
import type { Store } from '../../store/db.ts';
import { articleByUrl } from '../../store/articles.ts';
import { addFoundUrl, crawlUrl, retryableUrls, type CrawlUrlRow } from '../../store/crawl-urls.ts';
import { pageValidators } from '../../store/crawl-pages.ts';

/** A URL that failed this many times is left alone until `full`. */
const MAX_ATTEMPTS = 5;

export interface Target {
  url: string;
  foundOn: string;
  lastmod: string | null;
}

/**
 * The targets of this run, after adding every one to the frontier: URLs a cap leaves unfetched
 * are still pending for the next run. One transaction: a big sitemap means thousands of rows.
 */
export function chooseTargets(store: Store, source: string, found: Map<string, Target>, full: boolean, columnist?: string): Target[] {
  for (const row of retryableUrls(store, source, MAX_ATTEMPTS)) {
    if (!found.has(row.url)) found.set(row.url, { url: row.url, foundOn: row.found_on ?? '', lastmod: row.lastmod });
  }
  return store.transaction(() => {
    const chosen: Target[] = [];
    for (const t of found.values()) {
      const known = crawlUrl(store, t.url, columnist);
      addFoundUrl(store, { url: t.url, source, foundOn: t.foundOn, lastmod: t.lastmod, columnist });
      const fetchedAt = known && isSettled(known) ? pageValidators(store, t.url, columnist)?.fetched_at : undefined;
      if (needsFetch(t, known, full, fetchedAt)) chosen.push(t);
    }
    return chosen;
  })();
}

/** Whether a found URL is fetched this run, given its frontier row from before the run. */
export function needsFetch(t: Target, known: CrawlUrlRow | undefined, full: boolean, fetchedAt: string | undefined): boolean {
  if (full || !known) return true;
  // Robots rules may have changed; checking again costs no request (robots.txt is cached per run).
  if (known.status === 'robots' || known.status === 'pending') return true;
  if (known.status === 'failed') return known.attempts < MAX_ATTEMPTS;
  // Known and settled: refetch only when the sitemap says it changed since we last fetched it.
  return Boolean(t.lastmod && fetchedAt && t.lastmod > fetchedAt);
}

/** Fetched with an outcome that stands (done, skipped, robots): not waiting for a first or next try. */
function isSettled(row: CrawlUrlRow): boolean {
  return row.status !== 'pending' && row.status !== 'failed';
}

/** Known to this voice: settled in its frontier, or stored as its article (another voice's do not count). */
export function isKnown(store: Store, url: string, columnist?: string): boolean {
  const row = crawlUrl(store, url, columnist);
  return Boolean(row && isSettled(row)) || Boolean(articleByUrl(store, url, columnist));
}
