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
import type { Store } from '../../store/db.ts';
import { pendingUrlCount } from '../../store/crawl-urls.ts';
import { closeScrapeRun, openScrapeRun, recoverCrashedScrapes, type ScrapeRunStatus } from '../../store/scrape-runs.ts';
import { wrapFsError } from '../../errors.ts';
import { childLog } from '../../log.ts';
import type { Fetcher } from './fetch.ts';
import type { SourceProfile } from './profile.ts';
import { CrawlBudget, type CapHit, type CrawlLimits } from './budget.ts';
import { discoverUrls } from './discovery-walk.ts';
import { chooseTargets, type Target } from './targets.ts';
import { fetchArticle } from './fetch-article.ts';
import { isCode, reasonOf, throwIfCancelled } from './outcomes.ts';

const log = childLog('crawl');

const NO_LIMITS: CrawlLimits = { urls: Infinity, fetches: Infinity, bytes: Infinity, seconds: Infinity };

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
  /** The voice whose articles these are (default: the default columnist). */
  columnist?: string;
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

/** The steps of one run: discover URLs, choose the targets, fetch them. */
async function crawlInto(store: Store, profile: SourceProfile, opts: CrawlOptions, s: CrawlSummary, budget: CrawlBudget): Promise<void> {
  const found = await discoverUrls(store, profile, opts, s, budget);
  const targets = chooseTargets(store, profile.name, found, Boolean(opts.full), opts.columnist);
  await fetchTargets(store, profile, opts, s, budget, targets);
}

/** Fetches the targets, `concurrency` at a time, until they are done or a cap is reached. */
async function fetchTargets(store: Store, profile: SourceProfile, opts: CrawlOptions, s: CrawlSummary, budget: CrawlBudget, targets: Target[]): Promise<void> {
  const warn = (k: string) => (s.warnings[k] = (s.warnings[k] ?? 0) + 1);
  let done = 0;
  const total = targets.length;
  const work = async (t: Target) => {
    throwIfCancelled(opts.signal);
    if (budget.takeFetch()) return; // capped: the rest stays pending
    opts.onProgress?.({ phase: 'fetch', done, total, url: t.url });
    await fetchArticle(store, profile, t, opts.fetcher, s, warn, opts.columnist);
    done++;
    opts.onProgress?.({ phase: 'fetch', done, total, url: t.url });
  };
  await pool(targets, opts.concurrency ?? 4, work);
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
