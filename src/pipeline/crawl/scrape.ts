/**
 * `scrapeSource`: the one entry to scraping that the CLI, the demo and the scheduled rescrape job
 * all call. Settings arrive as an options object; `scrapeSettingsFromConfig` is the edge helper
 * that reads them from config.
 */
import type { Config } from '../../config.ts';
import type { Store } from '../../store/db.ts';
import { DEFAULT_COLUMNIST_NAME } from '../../paths.ts';
import { crawlSource, type CrawlProgress, type CrawlSummary } from './crawl.ts';
import type { CrawlLimits } from './budget.ts';
import { buildUserAgent, Fetcher, type FetcherOptions } from './fetch.ts';
import { HostPolicy } from './host-policy.ts';
import { allowedHosts, ownUrl, type SourceProfile } from './profile.ts';

export interface ScrapeOptions {
  fetch: FetcherOptions;
  /** Per-run caps; the profile's `limits` override each. Default: none besides the profile's. */
  limits?: Partial<CrawlLimits>;
  full?: boolean;
  maxPages?: number;
  onProgress?: (p: CrawlProgress) => void;
  signal?: AbortSignal;
  /** The voice this source belongs to (default: the default columnist). */
  columnist?: string;
}

/**
 * The name a source is stored under (articles.source, the crawl frontier, scrape runs): the
 * profile's own name for the default columnist, as before columnists, and `<columnist>/<profile>`
 * for the others, so two voices may each have a profile called, say, "blog" without sharing a
 * frontier. Profile names cannot contain "/", so the two kinds never collide.
 */
export function sourceKey(columnist: string | undefined, profileName: string): string {
  return !columnist || columnist === DEFAULT_COLUMNIST_NAME ? profileName : `${columnist}/${profileName}`;
}

export function fetcherOptionsFromConfig(c: Config): FetcherOptions {
  return {
    userAgent: buildUserAgent(c.MORRIS_CONTACT_URL),
    rateLimitRps: c.MORRIS_RATE_LIMIT_RPS,
    hostConcurrency: c.MORRIS_HOST_CONCURRENCY,
    timeoutMs: c.MORRIS_FETCH_TIMEOUT_MS,
    retries: c.MORRIS_FETCH_RETRIES,
    maxBytes: c.MORRIS_MAX_PAGE_BYTES,
    maxCrawlDelayMs: c.MORRIS_MAX_CRAWL_DELAY_S * 1000,
  };
}

export function crawlLimitsFromConfig(c: Config): CrawlLimits {
  return {
    urls: c.MORRIS_CRAWL_MAX_URLS,
    fetches: c.MORRIS_CRAWL_MAX_FETCHES,
    bytes: c.MORRIS_CRAWL_MAX_BYTES,
    seconds: c.MORRIS_CRAWL_MAX_SECONDS,
  };
}

/** The fetcher settings and per-run caps a scrape takes from config. */
export function scrapeSettingsFromConfig(c: Config): Pick<ScrapeOptions, 'fetch' | 'limits'> {
  return { fetch: fetcherOptionsFromConfig(c), limits: crawlLimitsFromConfig(c) };
}

export async function scrapeSource(store: Store, profile: SourceProfile, opts: ScrapeOptions): Promise<CrawlSummary> {
  const hostPolicy = new HostPolicy(allowedHosts(profile), ownUrl(profile));
  const fetcher = new Fetcher({ ...opts.fetch, hostPolicy });
  return crawlSource(store, { ...profile, name: sourceKey(opts.columnist, profile.name) }, {
    columnist: opts.columnist,
    fetcher,
    full: opts.full,
    maxPages: opts.maxPages,
    concurrency: opts.fetch.hostConcurrency * 2,
    onProgress: opts.onProgress,
    signal: opts.signal,
    limits: { ...UNCAPPED, ...opts.limits, ...profile.limits },
  });
}

const UNCAPPED: CrawlLimits = { urls: Infinity, fetches: Infinity, bytes: Infinity, seconds: Infinity };
