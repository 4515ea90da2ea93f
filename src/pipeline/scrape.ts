/**
 * `scrapeSource`: the one entry to scraping that the CLI, the demo and the scheduled rescrape job
 * all call. Settings arrive as an options object; `fetcherOptionsFromConfig` is the edge helper
 * that reads them from config.
 */
import type { Config } from '../config.ts';
import type { Store } from '../store/db.ts';
import { crawlSource, type CrawlProgress, type CrawlSummary } from './crawl.ts';
import { buildUserAgent, Fetcher, type FetcherOptions } from './fetch.ts';
import type { SourceProfile } from './profile.ts';

export interface ScrapeOptions {
  fetch: FetcherOptions;
  full?: boolean;
  maxPages?: number;
  onProgress?: (p: CrawlProgress) => void;
  signal?: AbortSignal;
}

export function fetcherOptionsFromConfig(c: Config): FetcherOptions {
  return {
    userAgent: buildUserAgent(c.MORRIS_CONTACT_URL),
    rateLimitRps: c.MORRIS_RATE_LIMIT_RPS,
    hostConcurrency: c.MORRIS_HOST_CONCURRENCY,
    timeoutMs: c.MORRIS_FETCH_TIMEOUT_MS,
    retries: c.MORRIS_FETCH_RETRIES,
    maxBytes: c.MORRIS_MAX_PAGE_BYTES,
  };
}

export async function scrapeSource(store: Store, profile: SourceProfile, opts: ScrapeOptions): Promise<CrawlSummary> {
  const fetcher = new Fetcher(opts.fetch);
  return crawlSource(store, profile, {
    fetcher,
    full: opts.full,
    maxPages: opts.maxPages,
    concurrency: opts.fetch.hostConcurrency * 2,
    onProgress: opts.onProgress,
    signal: opts.signal,
  });
}
