/**
 * The one HTTP layer every scrape goes through. Polite by construction: robots.txt is honoured
 * (including Crawl-delay), the User-Agent says who we are and where to complain, each host gets its
 * own rate limit and concurrency limit, and unchanged pages cost a 304 thanks to stored validators.
 * Robust by construction: timeouts, retries with exponential backoff and jitter (honouring
 * Retry-After), manual redirects that are recorded, a byte cap enforced while streaming, and charset
 * decoding that follows the HTML spec's order (BOM, header, <meta>). Contained by construction:
 * with a host policy, every URL and every redirect hop (robots.txt's included) is checked before it
 * is requested, and a Crawl-delay over the maximum is clamped rather than stalling the run.
 */
import { createHash } from 'node:crypto';
import Bottleneck from 'bottleneck';
import { MorrisError } from '../../errors.ts';
import { childLog } from '../../log.ts';
import pkg from '../../../package.json' with { type: 'json' };
import { decode, detectCharset, isBinary } from './charset.ts';
import { networkReason, readCapped, REDIRECT_STATUSES } from './response.ts';
import { loadRobots, ROBOTS_AGENT, type ClampedDelay, type RobotsRules } from './robots.ts';

const log = childLog('fetch');

const MAX_REDIRECTS = 10;
const RETRY_STATUSES = new Set([408, 425, 429, 500, 502, 503, 504]);

export function buildUserAgent(contactUrl: string, version: string = pkg.version): string {
  return `${ROBOTS_AGENT}/${version} (+${contactUrl})`;
}

export interface FetcherOptions {
  userAgent: string;
  /** Requests per second per host (default 1). */
  rateLimitRps: number;
  /** Requests in flight per host. */
  hostConcurrency: number;
  timeoutMs: number;
  /** Retries after the first attempt. */
  retries: number;
  maxBytes: number;
  /** First backoff step; doubles each retry, with jitter. */
  backoffBaseMs?: number;
  /** A Retry-After longer than this fails the request instead of stalling the crawl. */
  maxRetryAfterMs?: number;
  /** Tests turn this off only where robots.txt is not the point. */
  respectRobots?: boolean;
  /** Longest Crawl-delay honoured; a longer one is clamped to this, with a warning (default 30 s). */
  maxCrawlDelayMs?: number;
  /** Where requests may go; a URL or redirect it refuses fails with OFF_HOST before any request. */
  hostPolicy?: { refusal(url: string): Promise<string | null> } | null;
}

export interface Validators {
  etag?: string | null;
  lastModified?: string | null;
}

export interface Redirect {
  from: string;
  to: string;
  status: number;
}

export interface FetchResult {
  url: string;
  finalUrl: string;
  status: number;
  notModified: boolean;
  /** Decoded text; '' for 304s and binary bodies. */
  text: string;
  bytes: number;
  contentType: string | null;
  charset: string | null;
  /** Body is neither text nor markup (images, PDFs, archives): never decoded. */
  binary: boolean;
  /** The body was cut at maxBytes. */
  truncated: boolean;
  etag: string | null;
  lastModified: string | null;
  redirects: Redirect[];
  attempts: number;
  /** sha256 of the raw body bytes. */
  bodyHash: string | null;
}

export interface FetchCounters {
  requests: number;
  notModified: number;
  retries: number;
  bytes: number;
  robotsFetches: number;
}

interface HostState {
  limiter: Bottleneck;
  /** Set by a 429/503 Retry-After: nobody talks to this host before then. */
  pausedUntil: number;
  robots?: Promise<RobotsRules>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class Fetcher {
  readonly counters: FetchCounters = { requests: 0, notModified: 0, retries: 0, bytes: 0, robotsFetches: 0 };
  /** Crawl-delays clamped so far (one per host). */
  readonly clampedDelays: ClampedDelay[] = [];
  private readonly hosts = new Map<string, HostState>();
  private readonly opts: Required<FetcherOptions>;

  constructor(opts: FetcherOptions) {
    this.opts = {
      backoffBaseMs: 500,
      maxRetryAfterMs: 10 * 60_000,
      respectRobots: true,
      maxCrawlDelayMs: 30_000,
      hostPolicy: null,
      ...opts,
    };
  }

  /** Whether robots.txt lets us fetch this URL (fetches and caches robots.txt once per host). */
  async allowed(url: string): Promise<boolean> {
    if (!this.opts.respectRobots) return true;
    return (await this.robots(new URL(url))).isAllowed(url);
  }

  /** Sitemaps the host advertises in robots.txt. */
  async robotsSitemaps(url: string): Promise<string[]> {
    return (await this.robots(new URL(url))).sitemaps;
  }

  /**
   * GET a URL politely. Returns the final response for any HTTP status (callers decide what a 404
   * means); throws OFF_HOST when the host policy refuses the URL or a redirect target,
   * ROBOTS_DISALLOWED when robots.txt forbids either, and FETCH_FAILED when the network or the
   * server kept failing after every retry.
   */
  async get(url: string, req: { validators?: Validators; accept?: string } = {}): Promise<FetchResult> {
    const redirects: Redirect[] = [];
    let current = url;
    let attempts = 0;
    for (;;) {
      const refused = await this.opts.hostPolicy?.refusal(current);
      if (refused) {
        const via = redirects.length ? ` (redirected from ${url})` : '';
        throw new MorrisError('OFF_HOST', `Refused ${current}${via}: ${refused}`);
      }
      if (this.opts.respectRobots) {
        const rules = await this.robots(new URL(current));
        // RFC 9309: an unreachable robots.txt means "assume complete disallow"; say why, since
        // the usual cause is a network problem rather than the site's wishes.
        if (rules.unreachable) throw new MorrisError('FETCH_FAILED', `robots.txt unreachable (${rules.unreachable}), host not crawled: ${current}`);
        if (!rules.isAllowed(current)) throw new MorrisError('ROBOTS_DISALLOWED', `robots.txt disallows ${current}`);
      }
      const res = await this.withRetries(current, req, (n) => (attempts += n));
      if (REDIRECT_STATUSES.has(res.status) && res.location) {
        const to = new URL(res.location, current).toString();
        redirects.push({ from: current, to, status: res.status });
        if (redirects.length > MAX_REDIRECTS) {
          throw new MorrisError('FETCH_FAILED', `Too many redirects from ${url}`);
        }
        current = to;
        continue;
      }
      return { ...res.result, url, finalUrl: current, redirects, attempts };
    }
  }

  private host(u: URL): HostState {
    let h = this.hosts.get(u.host);
    if (!h) {
      h = {
        limiter: new Bottleneck({
          maxConcurrent: this.opts.hostConcurrency,
          minTime: Math.ceil(1000 / this.opts.rateLimitRps),
        }),
        pausedUntil: 0,
      };
      this.hosts.set(u.host, h);
    }
    return h;
  }

  private async withRetries(
    url: string,
    req: { validators?: Validators; accept?: string },
    countAttempts: (n: number) => void,
  ): Promise<{ status: number; location: string | null; result: Omit<FetchResult, 'url' | 'finalUrl' | 'redirects' | 'attempts'> }> {
    const h = this.host(new URL(url));
    let lastError: unknown;
    for (let attempt = 0; attempt <= this.opts.retries; attempt++) {
      countAttempts(1);
      if (attempt > 0) this.counters.retries++;
      const wait = h.pausedUntil - Date.now();
      if (wait > 0) await sleep(wait);
      let delayMs: number;
      try {
        const res = await h.limiter.schedule(() => this.once(url, req));
        if (!RETRY_STATUSES.has(res.status) || attempt === this.opts.retries) return res;
        const retryAfter = parseRetryAfter(res.retryAfter, Date.now());
        if (retryAfter !== null && retryAfter > this.opts.maxRetryAfterMs) {
          throw new MorrisError('FETCH_FAILED', `HTTP ${res.status} with Retry-After ${Math.round(retryAfter / 1000)} s (over the limit) for ${url}`);
        }
        delayMs = retryAfter ?? this.backoff(attempt);
        // The host asked everyone to back off, not just this request.
        if (retryAfter !== null) h.pausedUntil = Math.max(h.pausedUntil, Date.now() + retryAfter);
        log.debug({ url, status: res.status, delayMs }, 'retrying');
      } catch (e) {
        if (e instanceof MorrisError) throw e;
        lastError = e;
        if (attempt === this.opts.retries) break;
        delayMs = this.backoff(attempt);
        log.debug({ url, err: (e as Error).message, delayMs }, 'retrying after network error');
      }
      await sleep(delayMs);
    }
    throw new MorrisError('FETCH_FAILED', `${networkReason(lastError)} after ${this.opts.retries + 1} attempts: ${url}`, {
      cause: lastError,
    });
  }

  /** Exponential backoff with "equal jitter": half fixed, half random, so retries spread out. */
  private backoff(attempt: number): number {
    const step = this.opts.backoffBaseMs * 2 ** attempt;
    return step / 2 + Math.random() * (step / 2);
  }

  /** One HTTP exchange, body streamed up to the cap, all within one timeout. */
  private async once(url: string, req: { validators?: Validators; accept?: string }) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(new Error(`timed out after ${this.opts.timeoutMs} ms`)), this.opts.timeoutMs);
    try {
      const headers: Record<string, string> = {
        'user-agent': this.opts.userAgent,
        accept: req.accept ?? 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
      };
      if (req.validators?.etag) headers['if-none-match'] = req.validators.etag;
      if (req.validators?.lastModified) headers['if-modified-since'] = req.validators.lastModified;
      this.counters.requests++;
      const res = await fetch(url, { headers, redirect: 'manual', signal: ctl.signal });
      const contentType = res.headers.get('content-type');
      const base = {
        status: res.status,
        location: res.headers.get('location'),
        retryAfter: res.headers.get('retry-after'),
      };
      const etag = res.headers.get('etag');
      const lastModified = res.headers.get('last-modified');
      if (res.status === 304 || REDIRECT_STATUSES.has(res.status) || RETRY_STATUSES.has(res.status)) {
        await res.body?.cancel().catch(() => undefined);
        if (res.status === 304) this.counters.notModified++;
        return {
          ...base,
          result: {
            status: res.status, notModified: res.status === 304, text: '', bytes: 0, contentType, charset: null,
            binary: false, truncated: false, etag, lastModified, bodyHash: null,
          },
        };
      }
      const { bytes, truncated } = await readCapped(res, this.opts.maxBytes);
      this.counters.bytes += bytes.length;
      const binary = isBinary(contentType, bytes);
      const charset = binary ? null : detectCharset(bytes, contentType);
      return {
        ...base,
        result: {
          status: res.status,
          notModified: false,
          text: binary ? '' : decode(bytes, charset ?? 'utf-8'),
          bytes: bytes.length,
          contentType,
          charset,
          binary,
          truncated,
          etag,
          lastModified,
          bodyHash: createHash('sha256').update(bytes).digest('hex'),
        },
      };
    } finally {
      clearTimeout(timer);
    }
  }

  private robots(u: URL): Promise<RobotsRules> {
    const h = this.host(u);
    h.robots ??= loadRobots(u, h.limiter, { ...this.opts, counters: this.counters, clampedDelays: this.clampedDelays });
    return h.robots;
  }

}

/** Milliseconds to wait from a Retry-After header (delta-seconds or an HTTP date), or null. */
export function parseRetryAfter(value: string | null, now: number): number | null {
  if (!value) return null;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}
