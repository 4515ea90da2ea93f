/**
 * One crawl of one source profile: discover article URLs (listing pages with pagination, feeds,
 * sitemaps), fetch what is new or changed through the polite Fetcher, extract, and upsert into the
 * store. Incremental by default: a listing walk stops at the first page that brings only known
 * articles, known articles are refetched only when a sitemap says they changed (and then
 * conditionally, so unchanged ones cost a 304), and URLs that failed last time are retried.
 * `full` re-walks every page and revalidates every article. Every write is an upsert inside a
 * transaction, and a failed or empty fetch never replaces an article already stored.
 *
 * Contained: links and redirects outside the profile's hosts are refused and counted as off-host;
 * per-run caps (new URLs, fetches, bytes, wall time) end a run cleanly, URLs not yet fetched stay
 * pending, and a run whose discovery was cut re-reads its listings and sitemaps next time (without
 * validators, so a 304 cannot hide what it never read) until discovery completes.
 */
import { createHash } from 'node:crypto';
import { deleteKv, getKv, setKv, type Store } from '../../store/db.ts';
import { articleByUrl, saveArticle, saveSkippedArticle } from '../../store/articles.ts';
import { addFoundUrl, crawlUrl, markUrl, pendingUrlCount, retryableUrls, type CrawlUrlRow } from '../../store/crawl-urls.ts';
import { pageValidators, savePage } from '../../store/crawl-pages.ts';
import { isDiskFull, MorrisError, wrapFsError } from '../../errors.ts';
import { childLog } from '../../log.ts';
import { extractArticle, type Article } from '../extract/article.ts';
import { encodingProblem } from '../extract/quality.ts';
import type { Fetcher, FetchResult } from './fetch.ts';
import { allowedHosts, type SourceProfile } from './profile.ts';
import { canonicalUrl, pageCanonical, parseFeed, parseListing, parseSitemap, unwantedReason } from './discover.ts';
import { CrawlBudget, type CapHit, type CrawlLimits } from './budget.ts';
import { closeScrapeRun, openScrapeRun, recoverCrashedScrapes, type ScrapeRunStatus } from '../../store/scrape-runs.ts';

const log = childLog('crawl');

/** A URL that failed this many times is left alone until `full`. */
const MAX_ATTEMPTS = 5;
const MAX_SITEMAPS = 50;
/** Off-host URLs listed by reason in a summary; the count covers them all. */
const MAX_OFF_HOST_LISTED = 50;
const NO_LIMITS: CrawlLimits = { urls: Infinity, fetches: Infinity, bytes: Infinity, seconds: Infinity };

/** kv key set while a source's discovery was cut short by a cap: the next run re-reads it all. */
export const discoveryCutKey = (source: string) => `crawl:discovery-cut:${source}`;

export interface CrawlOptions {
  fetcher: Fetcher;
  /** Re-walk all listing pages and revalidate every known article. */
  full?: boolean;
  /** Listing pages walked per listing (overrides the profile). */
  maxPages?: number;
  /** Article fetches in flight (the fetcher still enforces each host's own limits). */
  concurrency?: number;
  onProgress?: (p: CrawlProgress) => void;
  /** Stops the crawl between requests (a cancelled job); what was stored stays. */
  signal?: AbortSignal;
  /** Per-run caps (default: none). */
  limits?: CrawlLimits;
}

export interface CrawlProgress {
  phase: 'discover' | 'fetch';
  done: number;
  total: number;
  url?: string;
}

export interface UrlReason {
  url: string;
  reason: string;
}

export interface CrawlSummary {
  source: string;
  runId: number;
  full: boolean;
  /** Article URLs found by discovery (kept by the profile's patterns). */
  discovered: number;
  /** Links discovery saw but the profile's patterns rejected. */
  filtered: number;
  /** Links and redirects refused because they lead outside the profile's hosts or to a private address. */
  offHost: number;
  /** The first off-host URLs, with why (all are counted in `offHost`). */
  offHostUrls: UrlReason[];
  /** Pages skipped because their decoded text is mostly replacement characters (also in `skipped`). */
  badEncoding: number;
  listingPages: number;
  fetched: number;
  new: number;
  updated: number;
  /** Answered 304, or fetched with the same content as stored. */
  unchanged: number;
  skippedRobots: number;
  /** Fetched but not an article, or an article we do not want: counted by reason. */
  skipped: UrlReason[];
  failed: UrlReason[];
  /** Not fatal, counted: invalid dates dropped, pages cut at the size cap. */
  warnings: Record<string, number>;
  requests: number;
  notModified: number;
  bytes: number;
  durationMs: number;
  /** How the run ended: finished, capped (see `caps`), failed or cancelled (see `error`). */
  status: ScrapeRunStatus;
  /** Per-run caps reached; the run stopped cleanly and the next one continues. */
  caps: CapHit[];
  /** This source's URLs still waiting to be fetched after the run. */
  pending: number;
  /** Set when the run stopped early on an unexpected error. */
  error?: string;
}

interface Target {
  url: string;
  foundOn: string;
  lastmod: string | null;
}

export async function crawlSource(store: Store, profile: SourceProfile, opts: CrawlOptions): Promise<CrawlSummary> {
  const t0 = Date.now();
  const before = { ...opts.fetcher.counters };
  const delaysBefore = opts.fetcher.clampedDelays.length;
  for (const r of recoverCrashedScrapes(store)) {
    log.warn({ runId: r.id, source: r.source, pid: r.pid }, 'closed a scrape run left open by a process that died as crashed');
  }
  const runId = openScrapeRun(store, profile.name);
  const s: CrawlSummary = {
    source: profile.name, runId, full: Boolean(opts.full), discovered: 0, filtered: 0, offHost: 0, offHostUrls: [],
    badEncoding: 0, listingPages: 0, fetched: 0, new: 0, updated: 0, unchanged: 0, skippedRobots: 0, skipped: [],
    failed: [], warnings: {}, requests: 0, notModified: 0, bytes: 0, durationMs: 0, status: 'running', caps: [],
    pending: 0,
  };
  const budget = new CrawlBudget(opts.limits ?? NO_LIMITS, () => opts.fetcher.counters.bytes - before.bytes);
  try {
    await crawlInto(store, profile, opts, s, budget);
    s.status = budget.hits.length ? 'capped' : 'finished';
  } catch (e) {
    // Whatever was stored so far stays (every write was its own transaction, and the counts only
    // count committed ones); the run says why it stopped.
    s.error = reasonOf(e);
    s.status = isCode(e, 'CANCELLED') ? 'cancelled' : 'failed';
    throw wrapFsError(
      e,
      `the database ${store.name} during the scrape of ${profile.name}`,
      `kept what was committed before it filled: ${s.new} new and ${s.updated} updated articles`,
    );
  } finally {
    s.caps = budget.hits;
    for (const d of opts.fetcher.clampedDelays.slice(delaysBefore)) {
      s.warnings[`Crawl-delay of ${d.askedS} s (${d.host}) clamped to ${d.usedS} s`] = 1;
    }
    s.requests = opts.fetcher.counters.requests - before.requests;
    s.notModified = opts.fetcher.counters.notModified - before.notModified;
    s.bytes = opts.fetcher.counters.bytes - before.bytes;
    s.durationMs = Date.now() - t0;
    try {
      s.pending = pendingUrlCount(store, profile.name);
      const stopReason = s.error ?? (s.caps.length ? `${s.caps.map((c) => c.message).join('; ')}; ${s.pending} URLs left pending for the next run` : null);
      closeScrapeRun(store, runId, { status: s.status, stopReason, summary: s });
    } catch (e) {
      // On a full disk this fails too; the error the run ended with is the one to report.
      if (!s.error) throw e;
      log.warn({ err: e, runId }, 'cannot record the end of the scrape run');
    }
  }
  log.info(
    { source: s.source, new: s.new, updated: s.updated, unchanged: s.unchanged, failed: s.failed.length, offHost: s.offHost, caps: s.caps.map((c) => c.cap) },
    'crawl done',
  );
  for (const c of s.caps) log.warn({ source: s.source, cap: c.cap, limit: c.limit, pending: s.pending }, `${s.source}: ${c.message}; the next run continues`);
  return s;
}

async function crawlInto(store: Store, profile: SourceProfile, opts: CrawlOptions, s: CrawlSummary, budget: CrawlBudget): Promise<void> {
  const { fetcher } = opts;
  const warn = (k: string) => (s.warnings[k] = (s.warnings[k] ?? 0) + 1);
  const rules = {
    hosts: new Set(allowedHosts(profile)),
    keep: profile.keep.map((r) => new RegExp(r)),
    drop: profile.drop.map((r) => new RegExp(r)),
  };
  const offHostSeen = new Set<string>();
  const offHost = (url: string, reason: string) => {
    if (offHostSeen.has(url)) return;
    offHostSeen.add(url);
    s.offHost++;
    if (s.offHostUrls.length < MAX_OFF_HOST_LISTED) s.offHostUrls.push({ url, reason });
  };

  // --- discovery ---
  // A previous run's discovery was cut by a cap: walk and read everything again (known URLs cost
  // nothing against the URL cap), so this run reaches the ones that run never saw.
  const cutKey = discoveryCutKey(profile.name);
  const resuming = !opts.full && getKv(store, cutKey) !== undefined;
  let discoveryCut = false;
  const found = new Map<string, Target>();
  const offer = (raw: string, foundOn: string, lastmod: string | null = null): 'new' | 'known' | 'dropped' | 'capped' => {
    const url = canonicalUrl(raw, undefined, profile.stripParams);
    if (!url) {
      s.filtered++;
      return 'dropped';
    }
    const host = new URL(url).host;
    if (!rules.hosts.has(host)) {
      offHost(url, `link on ${foundOn} refused: host ${host} is not one of this source's hosts (${[...rules.hosts].join(', ')})`);
      return 'dropped';
    }
    if (unwantedReason(url, rules)) {
      s.filtered++;
      return 'dropped';
    }
    const seen = found.get(url);
    if (seen) {
      if (lastmod && (!seen.lastmod || lastmod > seen.lastmod)) seen.lastmod = lastmod;
    } else {
      if (!crawlUrl(store, url) && !budget.takeUrl()) {
        discoveryCut = true;
        return 'capped';
      }
      found.set(url, { url, foundOn, lastmod });
    }
    return isKnown(store, url) ? 'known' : 'new';
  };
  const discoveryFetch = async (url: string, accept?: string): Promise<FetchResult | null> => {
    throwIfCancelled(opts.signal);
    if (budget.takeFetch()) {
      discoveryCut = true;
      return null;
    }
    opts.onProgress?.({ phase: 'discover', done: s.listingPages, total: 0, url });
    try {
      const prev = opts.full || resuming ? undefined : pageValidators(store, url);
      const res = await fetcher.get(url, { validators: prev ? { etag: prev.etag, lastModified: prev.last_modified } : undefined, accept });
      savePage(store, res);
      if (res.notModified) return null;
      if (res.status >= 400) s.failed.push({ url, reason: `HTTP ${res.status}` });
      else if (res.binary) s.failed.push({ url, reason: `not text (${res.contentType ?? 'unknown type'})` });
      else return res;
    } catch (e) {
      if (isDiskFull(e)) throw e; // not this URL's fault: the run cannot go on
      if (isCode(e, 'ROBOTS_DISALLOWED')) s.skippedRobots++;
      else if (isCode(e, 'OFF_HOST')) offHost(url, reasonOf(e));
      else s.failed.push({ url, reason: reasonOf(e) });
    }
    return null;
  };

  for (const listing of profile.listings) {
    const maxPages = opts.maxPages ?? listing.maxPages ?? profile.maxPages;
    const seen = new Set<string>();
    let url: string | null = listing.url;
    for (let page = 1; url && page <= maxPages && !seen.has(url) && !discoveryCut; page++) {
      seen.add(url);
      const res = await discoveryFetch(url);
      if (discoveryCut) break;
      s.listingPages++;
      if (!res) break; // 304 (nothing new on the first page means nothing new), error, or robots
      const parsed = parseListing(res.text, res.finalUrl, { links: listing.links, next: listing.next?.selector });
      const verdicts: ReturnType<typeof offer>[] = [];
      for (const l of parsed.links) {
        verdicts.push(offer(l, url));
        if (discoveryCut) break;
      }
      if (discoveryCut) break;
      const kept = verdicts.filter((v) => v !== 'dropped');
      if (kept.length === 0) break; // past the last page
      if (!opts.full && !resuming && kept.every((v) => v === 'known')) break; // incremental: the rest is known
      url =
        parsed.next ??
        (listing.next?.template ? listing.next.template.replace('{page}', String(listing.next.start + page - 1)) : null);
    }
  }
  for (const feed of profile.feeds) {
    if (discoveryCut) break;
    const res = await discoveryFetch(feed, 'application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5');
    if (!res) continue;
    for (const item of parseFeed(res.text, res.finalUrl)) {
      if (profile.feedAuthor && item.author && !contains(item.author, profile.feedAuthor)) {
        s.filtered++;
        continue;
      }
      offer(item.url, feed);
      if (discoveryCut) break;
    }
  }
  const sitemapQueue = [...profile.sitemaps];
  if (profile.robotsSitemaps && !discoveryCut) {
    const first = profile.listings[0]?.url ?? profile.feeds[0] ?? profile.sitemaps[0];
    if (first) sitemapQueue.push(...(await fetcher.robotsSitemaps(first)));
  }
  const sitemapsSeen = new Set<string>();
  while (sitemapQueue.length && sitemapsSeen.size < MAX_SITEMAPS && !discoveryCut) {
    const sm = sitemapQueue.shift() as string;
    if (sitemapsSeen.has(sm)) continue;
    sitemapsSeen.add(sm);
    const res = await discoveryFetch(sm, 'application/xml, text/xml;q=0.9, */*;q=0.5');
    if (!res) continue;
    const parsed = parseSitemap(res.text, res.finalUrl);
    sitemapQueue.push(...parsed.sitemaps);
    for (const u of parsed.urls) {
      offer(u.url, sm, u.lastmod);
      if (discoveryCut) break;
    }
  }
  s.discovered = found.size;
  if (discoveryCut) setKv(store, cutKey, new Date().toISOString());
  else deleteKv(store, cutKey);

  // --- decide what to fetch ---
  for (const row of retryableUrls(store, profile.name, MAX_ATTEMPTS)) {
    if (!found.has(row.url)) found.set(row.url, { url: row.url, foundOn: row.found_on ?? '', lastmod: row.lastmod });
  }
  // Every target is in the frontier before the first fetch, so URLs a cap leaves unfetched are
  // still pending for the next run. One transaction: a big sitemap means thousands of rows.
  const targets = store.transaction(() => {
    const chosen: Target[] = [];
    for (const t of found.values()) {
      const known = crawlUrl(store, t.url);
      addFoundUrl(store, { url: t.url, source: profile.name, foundOn: t.foundOn, lastmod: t.lastmod });
      const fetchedAt = known && isSettled(known) ? pageValidators(store, t.url)?.fetched_at : undefined;
      if (needsFetch(t, known, Boolean(opts.full), fetchedAt)) chosen.push(t);
    }
    return chosen;
  })();

  // --- fetch articles ---
  let done = 0;
  const total = targets.length;
  const work = async (t: Target) => {
    throwIfCancelled(opts.signal);
    if (budget.takeFetch()) return; // capped: the rest stays pending
    opts.onProgress?.({ phase: 'fetch', done, total, url: t.url });
    await fetchArticle(store, profile, t, fetcher, s, warn);
    done++;
    opts.onProgress?.({ phase: 'fetch', done, total, url: t.url });
  };
  await pool(targets, opts.concurrency ?? 4, work);
}

async function fetchArticle(
  store: Store,
  profile: SourceProfile,
  t: Target,
  fetcher: Fetcher,
  s: CrawlSummary,
  warn: (k: string) => void,
): Promise<void> {
  const mark = (status: Parameters<typeof markUrl>[2], reason: string | null) => markUrl(store, t.url, status, reason);
  const prev = pageValidators(store, t.url);
  let res: FetchResult;
  try {
    res = await fetcher.get(t.url, { validators: prev ? { etag: prev.etag, lastModified: prev.last_modified } : undefined });
  } catch (e) {
    if (isCode(e, 'ROBOTS_DISALLOWED')) {
      mark('robots', 'disallowed by robots.txt');
      s.skippedRobots++;
    } else if (isCode(e, 'OFF_HOST')) {
      // Settled, not failed: retrying cannot make another host ours. Nothing of it is stored.
      mark('skipped', `off-host: ${reasonOf(e)}`);
      s.offHost++;
      if (s.offHostUrls.length < MAX_OFF_HOST_LISTED) s.offHostUrls.push({ url: t.url, reason: reasonOf(e) });
    } else {
      mark('failed', reasonOf(e));
      s.failed.push({ url: t.url, reason: reasonOf(e) });
    }
    return;
  }
  s.fetched++;
  if (res.notModified) {
    store.transaction(() => {
      savePage(store, res);
      mark('done', null);
    })();
    s.unchanged++;
    return;
  }
  if (res.status >= 400) {
    const reason = `HTTP ${res.status}`;
    store.transaction(() => {
      savePage(store, res);
      mark('failed', reason);
    })();
    s.failed.push({ url: t.url, reason });
    return;
  }
  if (res.truncated) warn('capped at size limit');

  let reason: string | null = null;
  let art: Article = { title: null, author: null, published: null, body: '' };
  if (res.binary) reason = `binary content (${res.contentType ?? 'unknown type'})`;
  else {
    // Checked on the whole page first: heavy damage makes the extractor see no article at all,
    // which would hide the real cause behind "no article found".
    reason = encodingProblem(res.text, res.charset);
    if (!reason) {
      art = extractArticle(res.text, res.finalUrl, profile.selectors ?? {});
      if (art.published === null && hasInvalidDate(res.text)) warn('invalid date dropped');
      reason = encodingProblem(`${art.title ?? ''}\n${art.body}`, res.charset) ?? articleProblem(art, profile, res);
    }
    if (reason?.startsWith('bad-encoding')) {
      s.badEncoding++;
      art = { title: null, author: null, published: null, body: '' };
    }
  }
  const canonical = (!res.binary && sameSite(pageCanonical(res.text, res.finalUrl), res.finalUrl)) || canonicalUrl(res.finalUrl, undefined, profile.stripParams) || t.url;
  const author = Array.isArray(art.author) ? art.author.join(', ') : art.author;
  const body = art.body.trim();
  const hash = body ? createHash('sha256').update(body.replace(/\s+/g, ' ')).digest('hex') : null;

  // The outcome is counted only once the transaction has committed: a commit that fails (a full
  // disk) must not leave an article counted as new that is not in the store.
  const outcome = store.transaction((): (() => void) => {
    savePage(store, res);
    const existing = articleByUrl(store, canonical);
    if (reason) {
      mark('skipped', reason);
      // Never replace a stored article with a non-article; remember the skip only for new URLs.
      if (!existing) saveSkippedArticle(store, { source: profile.name, url: canonical, title: art.title, reason });
      const why = existing?.status === 'ok' ? `${reason} (kept the stored version)` : reason;
      return () => s.skipped.push({ url: t.url, reason: why });
    }
    mark('done', null);
    const article = { source: profile.name, url: canonical, title: art.title, author, published: art.published, body, contentHash: hash };
    if (!existing || existing.status === 'skipped') {
      saveArticle(store, article);
      return () => s.new++;
    }
    if (existing.content_hash === hash) return () => s.unchanged++;
    saveArticle(store, article);
    return () => s.updated++;
  })();
  outcome();
}

/** Why an extracted page is not an article we keep, or null when it is. */
function articleProblem(a: Article, p: SourceProfile, res: FetchResult): string | null {
  const body = a.body.trim();
  const capped = res.truncated ? ` (page cut at ${res.bytes} bytes)` : '';
  if (!body) return `no article found: empty body${capped}`;
  if (body.length < p.minBodyChars) return `no article found: body only ${body.length} chars${capped}`;
  if (!a.title?.trim()) return 'no title';
  if (p.author) {
    const names = Array.isArray(a.author) ? a.author.join(', ') : (a.author ?? '');
    if (!contains(names, p.author)) return `other author (${names || 'none'})`;
  }
  return null;
}

/** A declared publication date the extractor had to drop because it does not parse. */
function hasInvalidDate(html: string): boolean {
  const m =
    html.match(/"datePublished"\s*:\s*"([^"]*)"/) ??
    html.match(/property=["']article:published_time["'][^>]*content=["']([^"']*)["']/i);
  return Boolean(m && Number.isNaN(Date.parse(m[1])));
}

function sameSite(canonical: string | null, pageUrl: string): string | null {
  if (!canonical) return null;
  return new URL(canonical).host === new URL(pageUrl).host ? canonical : null;
}

const contains = (hay: string, needle: string) => hay.toLowerCase().includes(needle.toLowerCase());

function throwIfCancelled(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new MorrisError('CANCELLED', 'Scrape cancelled; everything fetched so far is stored.');
}

function isCode(e: unknown, code: string): boolean {
  return e instanceof MorrisError && e.code === code;
}

function reasonOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function isKnown(store: Store, url: string): boolean {
  const row = crawlUrl(store, url);
  return Boolean(row && isSettled(row)) || Boolean(articleByUrl(store, url));
}

/** Fetched with an outcome that stands (done, skipped, robots): not waiting for a first or next try. */
function isSettled(row: CrawlUrlRow): boolean {
  return row.status !== 'pending' && row.status !== 'failed';
}

/** Whether a found URL is fetched this run, given its frontier row from before the run. */
function needsFetch(t: Target, known: CrawlUrlRow | undefined, full: boolean, fetchedAt: string | undefined): boolean {
  if (full || !known) return true;
  // Robots rules may have changed; checking again costs no request (robots.txt is cached per run).
  if (known.status === 'robots' || known.status === 'pending') return true;
  if (known.status === 'failed') return known.attempts < MAX_ATTEMPTS;
  // Known and settled: refetch only when the sitemap says it changed since we last fetched it.
  return Boolean(t.lastmod && fetchedAt && t.lastmod > fetchedAt);
}

/**
 * Runs `fn` over `items`, `size` at a time. The first error stops new items from starting and is
 * thrown once the ones in flight have settled, so the counts a caller reports are final.
 */
async function pool<T>(items: T[], size: number, fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | null = null;
  const worker = async () => {
    while (!failure && next < items.length) {
      try {
        await fn(items[next++]);
      } catch (e) {
        failure ??= { error: e };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(size, items.length)) }, worker));
  if (failure) throw (failure as { error: unknown }).error;
}
