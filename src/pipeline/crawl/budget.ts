/**
 * Per-run caps of a scrape, so one hostile or enormous site cannot make a run that never ends: new
 * URLs discovered, pages fetched, bytes downloaded and wall time. A cap ends the run cleanly: what
 * was fetched is stored, URLs not yet fetched stay pending in the frontier (crawl_urls), and the
 * next run continues from there. The budget only counts and says when to stop; the crawl decides
 * what stopping means.
 */

export type CapName = 'urls' | 'fetches' | 'bytes' | 'seconds';

export interface CrawlLimits {
  /** New URLs discovery may add to the frontier in one run. */
  urls: number;
  /** Pages fetched in one run (listing pages, feeds, sitemaps, articles; not robots.txt). */
  fetches: number;
  /** Response body bytes downloaded in one run. */
  bytes: number;
  /** Wall time of one run. */
  seconds: number;
}

export interface CapHit {
  cap: CapName;
  limit: number;
  message: string;
}

const WHAT: Record<CapName, (n: number) => string> = {
  urls: (n) => `${n} new URLs discovered`,
  fetches: (n) => `${n} pages fetched`,
  bytes: (n) => `${n} bytes downloaded`,
  seconds: (n) => `${n} s of wall time`,
};

export class CrawlBudget {
  /** Caps reached so far, in the order they were reached (each at most once). */
  readonly hits: CapHit[] = [];
  private newUrls = 0;
  private fetches = 0;
  private readonly t0: number;

  constructor(
    readonly limits: CrawlLimits,
    /** Bytes downloaded so far in this run. */
    private readonly bytes: () => number,
    private readonly now: () => number = Date.now,
  ) {
    this.t0 = now();
  }

  /** Counts one newly discovered URL; false (and the cap recorded) when the run may take no more. */
  takeUrl(): boolean {
    if (this.newUrls >= this.limits.urls) {
      this.hit('urls');
      return false;
    }
    this.newUrls++;
    return true;
  }

  /**
   * Called before each fetch: null to go ahead (the fetch is counted), or the cap that ends the
   * run's fetching. Once a cap is reached it stays reached. In-flight fetches finish, so bytes and
   * time can overshoot by what was already under way.
   */
  takeFetch(): CapHit | null {
    const over =
      this.fetchStop() ??
      (this.fetches >= this.limits.fetches
        ? 'fetches'
        : this.bytes() >= this.limits.bytes
          ? 'bytes'
          : (this.now() - this.t0) / 1000 >= this.limits.seconds
            ? 'seconds'
            : null);
    if (over) return this.hit(over);
    this.fetches++;
    return null;
  }

  /** The cap that stopped fetching, if one did. */
  fetchStop(): CapName | null {
    return this.hits.find((h) => h.cap !== 'urls')?.cap ?? null;
  }

  private hit(cap: CapName): CapHit {
    let h = this.hits.find((x) => x.cap === cap);
    if (!h) {
      const limit = this.limits[cap];
      h = { cap, limit, message: `stopped at the ${cap} cap (${WHAT[cap](limit)})` };
      this.hits.push(h);
    }
    return h;
  }
}
