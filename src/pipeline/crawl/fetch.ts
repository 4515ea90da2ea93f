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
import robotsParserCjs from 'robots-parser';
import { MorrisError } from '../../errors.ts';
import { childLog } from '../../log.ts';
import pkg from '../../../package.json' with { type: 'json' };

const log = childLog('fetch');

// robots-parser is CommonJS (`module.exports = fn`) while its types declare an ES default export.
const robotsParser = robotsParserCjs as unknown as (typeof robotsParserCjs)['default'];

/** Product token robots.txt groups are matched against. */
export const ROBOTS_AGENT = 'MorrisBot';
const MAX_REDIRECTS = 10;
/** RFC 9309 §2.3.1.2: follow at least five consecutive redirects for robots.txt. */
const MAX_ROBOTS_REDIRECTS = 5;
/** RFC 9309: crawlers may ignore robots.txt content past 500 KiB. */
const MAX_ROBOTS_BYTES = 500 * 1024;
const RETRY_STATUSES = new Set([408, 425, 429, 500, 502, 503, 504]);
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

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

/** A robots.txt Crawl-delay longer than the maximum, and what was used instead. */
export interface ClampedDelay {
  host: string;
  askedS: number;
  usedS: number;
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

interface RobotsRules {
  isAllowed(url: string): boolean;
  /** Why robots.txt could not be read (network error or 5xx); everything is then disallowed. */
  unreachable?: string;
  crawlDelayS?: number;
  sitemaps: string[];
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
    h.robots ??= this.loadRobots(u, h);
    return h.robots;
  }

  private async loadRobots(u: URL, h: HostState): Promise<RobotsRules> {
    const robotsUrl = `${u.origin}/robots.txt`;
    this.counters.robotsFetches++;
    let status: number;
    let text = '';
    try {
      const res = await h.limiter.schedule(async () => {
        // Redirects followed by hand so each hop passes the host policy like any other request.
        let at = robotsUrl;
        for (let hop = 0; ; hop++) {
          this.counters.requests++;
          const r = await fetch(at, {
            headers: { 'user-agent': this.opts.userAgent, accept: 'text/plain' },
            redirect: 'manual',
            signal: AbortSignal.timeout(this.opts.timeoutMs),
          });
          const location = r.headers.get('location');
          if (REDIRECT_STATUSES.has(r.status) && location && hop < MAX_ROBOTS_REDIRECTS) {
            await r.body?.cancel();
            at = new URL(location, at).toString();
            const refused = await this.opts.hostPolicy?.refusal(at);
            if (refused) throw new Error(`redirects to ${at}, refused: ${refused}`);
            continue;
          }
          const body = r.ok ? await readCapped(r, MAX_ROBOTS_BYTES) : (await r.body?.cancel(), null);
          return { status: r.status, body };
        }
      });
      status = res.status;
      if (res.body) text = decode(res.body.bytes, 'utf-8');
    } catch (e) {
      // RFC 9309 §2.3.1.4: an unreachable robots.txt means assume complete disallow.
      const reason = networkReason(e);
      log.warn({ robotsUrl, err: reason }, 'robots.txt unreachable; treating host as disallowed');
      return { isAllowed: () => false, unreachable: reason, sitemaps: [] };
    }
    if (status >= 500) {
      log.warn({ robotsUrl, status }, 'robots.txt server error; treating host as disallowed');
      return { isAllowed: () => false, unreachable: `HTTP ${status}`, sitemaps: [] };
    }
    // 4xx (usually 404): no rules, everything allowed (RFC 9309 §2.3.1.3).
    const parsed = robotsParser(robotsUrl, status >= 200 && status < 300 ? text : '');
    let crawlDelayS = parsed.getCrawlDelay(ROBOTS_AGENT);
    if (crawlDelayS && crawlDelayS * 1000 > this.opts.maxCrawlDelayMs) {
      // A delay of hours would stall the run silently; the disallow rules are still obeyed.
      const usedS = this.opts.maxCrawlDelayMs / 1000;
      log.warn({ host: u.host, crawlDelayS, usedS }, `robots.txt Crawl-delay of ${crawlDelayS} s is above the maximum; using ${usedS} s`);
      this.clampedDelays.push({ host: u.host, askedS: crawlDelayS, usedS });
      crawlDelayS = usedS;
    }
    if (crawlDelayS && crawlDelayS * 1000 > Math.ceil(1000 / this.opts.rateLimitRps)) {
      h.limiter.updateSettings({ minTime: Math.ceil(crawlDelayS * 1000) });
      log.info({ host: u.host, crawlDelayS }, 'honouring Crawl-delay');
    }
    return {
      isAllowed: (url) => parsed.isAllowed(url, ROBOTS_AGENT) !== false,
      crawlDelayS,
      sitemaps: parsed.getSitemaps(),
    };
  }
}

/** Reads a response body, stopping (and cancelling the transfer) once `max` bytes arrived. */
async function readCapped(res: Response, max: number): Promise<{ bytes: Uint8Array; truncated: boolean }> {
  if (!res.body) return { bytes: new Uint8Array(0), truncated: false };
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  let truncated = false;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (size + value.length > max) {
      chunks.push(value.subarray(0, max - size));
      size = max;
      truncated = true;
      await reader.cancel().catch(() => undefined);
      break;
    }
    chunks.push(value);
    size += value.length;
  }
  return { bytes: Buffer.concat(chunks), truncated };
}

const TEXTUAL_TYPE = /^(text\/|application\/(xhtml\+xml|xml|rss\+xml|atom\+xml|json|ld\+json)|[^;]*\+xml)/i;

/** True for bodies we should not try to read as text: declared non-text types, or NUL bytes. */
export function isBinary(contentType: string | null, bytes: Uint8Array): boolean {
  if (contentType && !TEXTUAL_TYPE.test(contentType.trim())) return true;
  const head = bytes.subarray(0, 1024);
  // UTF-16 text carries NULs legitimately; its BOM says so.
  if ((head[0] === 0xff && head[1] === 0xfe) || (head[0] === 0xfe && head[1] === 0xff)) return false;
  return head.includes(0);
}

/**
 * The body's character encoding, in the HTML spec's order of precedence: byte order mark, then the
 * Content-Type header, then a <meta charset> / http-equiv declaration (or an XML declaration) in
 * the first 1024 bytes. Returns a WHATWG encoding label, or null when nothing declares one.
 */
export function detectCharset(bytes: Uint8Array, contentType: string | null): string | null {
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) return 'utf-8';
  if (bytes[0] === 0xff && bytes[1] === 0xfe) return 'utf-16le';
  if (bytes[0] === 0xfe && bytes[1] === 0xff) return 'utf-16be';
  const fromHeader = contentType?.match(/charset\s*=\s*["']?([\w.:-]+)/i)?.[1];
  if (fromHeader && isKnownEncoding(fromHeader)) return fromHeader.toLowerCase();
  const head = Buffer.from(bytes.subarray(0, 1024)).toString('latin1');
  const meta =
    head.match(/<meta[^>]+charset\s*=\s*["']?\s*([\w.:-]+)/i)?.[1] ??
    head.match(/^<\?xml[^>]+encoding\s*=\s*["']([\w.:-]+)["']/i)?.[1];
  if (meta && isKnownEncoding(meta)) {
    // The spec maps a declared UTF-16 in an ASCII-compatible document to UTF-8.
    return /^utf-16/i.test(meta) ? 'utf-8' : meta.toLowerCase();
  }
  return null;
}

function isKnownEncoding(label: string): boolean {
  try {
    new TextDecoder(label);
    return true;
  } catch {
    return false;
  }
}

/** WHATWG windows-1252 code points for bytes 0x80–0x9F (the rest of the range is Latin-1). */
const CP1252_HIGH = [
  0x20ac, 0x81, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160, 0x2039, 0x0152, 0x8d, 0x017d, 0x8f,
  0x90, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0x9d, 0x017e, 0x0178,
];

/** Decodes with the given label (windows-1252, iso-8859-x, shift_jis … through ICU); BOM removed. */
export function decode(bytes: Uint8Array, label: string): string {
  const decoder = new TextDecoder(label);
  if (decoder.encoding !== 'windows-1252') return decoder.decode(bytes);
  // Node 20's TextDecoder decodes windows-1252 (and so latin1/iso-8859-1, its WHATWG aliases) as
  // plain Latin-1, turning smart quotes, dashes and € into C1 control characters.
  let out = '';
  for (let i = 0; i < bytes.length; i += 8192) {
    const chunk = bytes.subarray(i, i + 8192);
    out += String.fromCharCode(...Array.from(chunk, (b) => (b >= 0x80 && b <= 0x9f ? CP1252_HIGH[b - 0x80] : b)));
  }
  return out;
}

/** Milliseconds to wait from a Retry-After header (delta-seconds or an HTTP date), or null. */
export function parseRetryAfter(value: string | null, now: number): number | null {
  if (!value) return null;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

function networkReason(e: unknown): string {
  if (!e) return 'failed';
  const err = e as Error & { cause?: { code?: string; message?: string } };
  if (err.name === 'AbortError' || err.name === 'TimeoutError' || /timed out/.test(err.message)) return 'timed out';
  return err.cause?.code ?? err.cause?.message ?? err.message;
}
