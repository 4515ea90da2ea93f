/**
 * robots.txt (RFC 9309), read once per host through that host's limiter: each redirect hop passes
 * the host policy, an unreachable file or a server error means "disallow everything", a 4xx means
 * no rules, and a Crawl-delay is honoured by slowing the host's limiter (clamped to a maximum
 * rather than stalling the run).
 */
import type Bottleneck from 'bottleneck';
import robotsParserCjs from 'robots-parser';
import { childLog } from '../../log.ts';
import { decode } from './charset.ts';
import { networkReason, readCapped, REDIRECT_STATUSES } from './response.ts';

// The fetch layer's log: robots.txt is read as part of fetching.
const log = childLog('fetch');

// robots-parser is CommonJS (`module.exports = fn`) while its types declare an ES default export.
const robotsParser = robotsParserCjs as unknown as (typeof robotsParserCjs)['default'];

/** Product token robots.txt groups are matched against. */
export const ROBOTS_AGENT = 'MorrisBot';
/** RFC 9309 §2.3.1.2: follow at least five consecutive redirects for robots.txt. */
const MAX_ROBOTS_REDIRECTS = 5;
/** RFC 9309: crawlers may ignore robots.txt content past 500 KiB. */
const MAX_ROBOTS_BYTES = 500 * 1024;

export interface RobotsRules {
  isAllowed(url: string): boolean;
  /** Why robots.txt could not be read (network error or 5xx); everything is then disallowed. */
  unreachable?: string;
  crawlDelayS?: number;
  sitemaps: string[];
}

/** A robots.txt Crawl-delay longer than the maximum, and what was used instead. */
export interface ClampedDelay {
  host: string;
  askedS: number;
  usedS: number;
}

/** The fetcher's settings and tallies that reading robots.txt uses and adds to. */
export interface RobotsContext {
  userAgent: string;
  timeoutMs: number;
  rateLimitRps: number;
  maxCrawlDelayMs: number;
  hostPolicy: { refusal(url: string): Promise<string | null> } | null;
  counters: { requests: number; robotsFetches: number };
  clampedDelays: ClampedDelay[];
}

/** Reads and parses the robots.txt of `u`'s origin; never throws (a failure disallows the host). */
export async function loadRobots(u: URL, limiter: Bottleneck, ctx: RobotsContext): Promise<RobotsRules> {
  const robotsUrl = `${u.origin}/robots.txt`;
  ctx.counters.robotsFetches++;
  let status: number;
  let text = '';
  try {
    const res = await limiter.schedule(async () => {
      // Redirects followed by hand so each hop passes the host policy like any other request.
      let at = robotsUrl;
      for (let hop = 0; ; hop++) {
        ctx.counters.requests++;
        const r = await fetch(at, {
          headers: { 'user-agent': ctx.userAgent, accept: 'text/plain' },
          redirect: 'manual',
          signal: AbortSignal.timeout(ctx.timeoutMs),
        });
        const location = r.headers.get('location');
        if (REDIRECT_STATUSES.has(r.status) && location && hop < MAX_ROBOTS_REDIRECTS) {
          await r.body?.cancel();
          at = new URL(location, at).toString();
          const refused = await ctx.hostPolicy?.refusal(at);
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
  if (crawlDelayS && crawlDelayS * 1000 > ctx.maxCrawlDelayMs) {
    // A delay of hours would stall the run silently; the disallow rules are still obeyed.
    const usedS = ctx.maxCrawlDelayMs / 1000;
    log.warn({ host: u.host, crawlDelayS, usedS }, `robots.txt Crawl-delay of ${crawlDelayS} s is above the maximum; using ${usedS} s`);
    ctx.clampedDelays.push({ host: u.host, askedS: crawlDelayS, usedS });
    crawlDelayS = usedS;
  }
  if (crawlDelayS && crawlDelayS * 1000 > Math.ceil(1000 / ctx.rateLimitRps)) {
    limiter.updateSettings({ minTime: Math.ceil(crawlDelayS * 1000) });
    log.info({ host: u.host, crawlDelayS }, 'honouring Crawl-delay');
  }
  return {
    isAllowed: (url) => parsed.isAllowed(url, ROBOTS_AGENT) !== false,
    crawlDelayS,
    sitemaps: parsed.getSitemaps(),
  };
}
