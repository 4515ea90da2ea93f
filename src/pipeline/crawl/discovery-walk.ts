/**
 * Discovery, the first step of a crawl: walks a profile's listing pages (with pagination), feeds
 * and sitemaps (robots.txt's too), offering every link to the run's set of article URLs. The
 * parsing of each kind of page is discover.ts; this is the I/O and the rules of the walk.
 *
 * Incremental: a listing walk stops at the first page that brings only known articles, and pages
 * are fetched with their stored validators. A cap cuts discovery short; the next run then re-reads
 * every listing and sitemap without validators (a 304 cannot hide what it never read) until
 * discovery completes.
 */
import { deleteKv, getKv, setKv, type Store } from '../../store/db.ts';
import { pageValidators, savePage } from '../../store/crawl-pages.ts';
import { crawlUrl } from '../../store/crawl-urls.ts';
import { isDiskFull } from '../../errors.ts';
import type { FetchResult } from './fetch.ts';
import { allowedHosts, type SourceProfile } from './profile.ts';
import { canonicalUrl, parseFeed, parseListing, parseSitemap, unwantedReason } from './discover.ts';
import type { CrawlBudget } from './budget.ts';
import type { CrawlOptions, CrawlSummary } from './crawl.ts';
import { contains, isCode, MAX_OFF_HOST_LISTED, reasonOf, throwIfCancelled } from './outcomes.ts';
import { isKnown, type Target } from './targets.ts';

const MAX_SITEMAPS = 50;

/** kv key set while a source's discovery was cut short by a cap: the next run re-reads it all. */
const discoveryCutKey = (source: string) => `crawl:discovery-cut:${source}`;

type Verdict = 'new' | 'known' | 'dropped' | 'capped';

/** The article URLs discovery found, by canonical URL; fills the summary's discovery counts. */
export async function discoverUrls(store: Store, profile: SourceProfile, opts: CrawlOptions, s: CrawlSummary, budget: CrawlBudget): Promise<Map<string, Target>> {
  const walk = new DiscoveryWalk(store, profile, opts, s, budget);
  await walk.listings();
  await walk.feeds();
  await walk.sitemaps();
  s.discovered = walk.found.size;
  if (walk.cut) setKv(store, walk.cutKey, new Date().toISOString());
  else deleteKv(store, walk.cutKey);
  return walk.found;
}

class DiscoveryWalk {
  readonly found = new Map<string, Target>();
  /** A cap was reached: discovery stops, and the next run re-reads everything. */
  cut = false;
  readonly cutKey: string;
  /** A previous run's discovery was cut by a cap: walk and read everything again (known URLs
   * cost nothing against the URL cap), so this run reaches the ones that run never saw. */
  private readonly resuming: boolean;
  private readonly rules: { hosts: Set<string>; keep: RegExp[]; drop: RegExp[] };
  private readonly offHostSeen = new Set<string>();

  constructor(
    private readonly store: Store,
    private readonly profile: SourceProfile,
    private readonly opts: CrawlOptions,
    private readonly s: CrawlSummary,
    private readonly budget: CrawlBudget,
  ) {
    this.cutKey = discoveryCutKey(profile.name);
    this.resuming = !opts.full && getKv(store, this.cutKey) !== undefined;
    this.rules = {
      hosts: new Set(allowedHosts(profile)),
      keep: profile.keep.map((r) => new RegExp(r)),
      drop: profile.drop.map((r) => new RegExp(r)),
    };
  }

  async listings(): Promise<void> {
    const { profile, opts, s } = this;
    for (const listing of profile.listings) {
      const maxPages = opts.maxPages ?? listing.maxPages ?? profile.maxPages;
      const seen = new Set<string>();
      let url: string | null = listing.url;
      for (let page = 1; url && page <= maxPages && !seen.has(url) && !this.cut; page++) {
        seen.add(url);
        const res = await this.fetch(url);
        if (this.cut) break;
        s.listingPages++;
        if (!res) break; // 304 (nothing new on the first page means nothing new), error, or robots
        const parsed = parseListing(res.text, res.finalUrl, { links: listing.links, next: listing.next?.selector });
        const verdicts: Verdict[] = [];
        for (const l of parsed.links) {
          verdicts.push(this.offer(l, url));
          if (this.cut) break;
        }
        if (this.cut) break;
        const kept = verdicts.filter((v) => v !== 'dropped');
        if (kept.length === 0) break; // past the last page
        if (!opts.full && !this.resuming && kept.every((v) => v === 'known')) break; // incremental: the rest is known
        url =
          parsed.next ??
          (listing.next?.template ? listing.next.template.replace('{page}', String(listing.next.start + page - 1)) : null);
      }
    }
  }

  async feeds(): Promise<void> {
    const { profile, s } = this;
    for (const feed of profile.feeds) {
      if (this.cut) break;
      const res = await this.fetch(feed, 'application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5');
      if (!res) continue;
      for (const item of parseFeed(res.text, res.finalUrl)) {
        if (profile.feedAuthor && item.author && !contains(item.author, profile.feedAuthor)) {
          s.filtered++;
          continue;
        }
        this.offer(item.url, feed);
        if (this.cut) break;
      }
    }
  }

  async sitemaps(): Promise<void> {
    const { profile } = this;
    const queue = [...profile.sitemaps];
    if (profile.robotsSitemaps && !this.cut) {
      const first = profile.listings[0]?.url ?? profile.feeds[0] ?? profile.sitemaps[0];
      if (first) queue.push(...(await this.opts.fetcher.robotsSitemaps(first)));
    }
    const seen = new Set<string>();
    while (queue.length && seen.size < MAX_SITEMAPS && !this.cut) {
      const sm = queue.shift() as string;
      if (seen.has(sm)) continue;
      seen.add(sm);
      const res = await this.fetch(sm, 'application/xml, text/xml;q=0.9, */*;q=0.5');
      if (!res) continue;
      const parsed = parseSitemap(res.text, res.finalUrl);
      queue.push(...parsed.sitemaps);
      for (const u of parsed.urls) {
        this.offer(u.url, sm, u.lastmod);
        if (this.cut) break;
      }
    }
  }

  /** Takes a link into the found set when it is an article URL of this source. */
  private offer(raw: string, foundOn: string, lastmod: string | null = null): Verdict {
    const { s, rules } = this;
    const url = canonicalUrl(raw, undefined, this.profile.stripParams);
    if (!url) {
      s.filtered++;
      return 'dropped';
    }
    const host = new URL(url).host;
    if (!rules.hosts.has(host)) {
      this.offHost(url, `link on ${foundOn} refused: host ${host} is not one of this source's hosts (${[...rules.hosts].join(', ')})`);
      return 'dropped';
    }
    if (unwantedReason(url, rules)) {
      s.filtered++;
      return 'dropped';
    }
    const seen = this.found.get(url);
    if (seen) {
      if (lastmod && (!seen.lastmod || lastmod > seen.lastmod)) seen.lastmod = lastmod;
    } else {
      if (!crawlUrl(this.store, url, this.opts.columnist) && !this.budget.takeUrl()) {
        this.cut = true;
        return 'capped';
      }
      this.found.set(url, { url, foundOn, lastmod });
    }
    return isKnown(this.store, url, this.opts.columnist) ? 'known' : 'new';
  }

  /** A listing, feed or sitemap; null when there is nothing to read (304, error, robots, cap). */
  private async fetch(url: string, accept?: string): Promise<FetchResult | null> {
    const { store, opts, s } = this;
    throwIfCancelled(opts.signal);
    if (this.budget.takeFetch()) {
      this.cut = true;
      return null;
    }
    opts.onProgress?.({ phase: 'discover', done: s.listingPages, total: 0, url });
    try {
      const prev = opts.full || this.resuming ? undefined : pageValidators(store, url, opts.columnist);
      const res = await opts.fetcher.get(url, { validators: prev ? { etag: prev.etag, lastModified: prev.last_modified } : undefined, accept });
      savePage(store, res, opts.columnist);
      if (res.notModified) return null;
      if (res.status >= 400) s.failed.push({ url, reason: `HTTP ${res.status}` });
      else if (res.binary) s.failed.push({ url, reason: `not text (${res.contentType ?? 'unknown type'})` });
      else return res;
    } catch (e) {
      if (isDiskFull(e)) throw e; // not this URL's fault: the run cannot go on
      if (isCode(e, 'ROBOTS_DISALLOWED')) s.skippedRobots++;
      else if (isCode(e, 'OFF_HOST')) this.offHost(url, reasonOf(e));
      else s.failed.push({ url, reason: reasonOf(e) });
    }
    return null;
  }

  /** Counts an off-host URL once per run, listing the first ones with why. */
  private offHost(url: string, reason: string): void {
    if (this.offHostSeen.has(url)) return;
    this.offHostSeen.add(url);
    this.s.offHost++;
    if (this.s.offHostUrls.length < MAX_OFF_HOST_LISTED) this.s.offHostUrls.push({ url, reason });
  }
}
