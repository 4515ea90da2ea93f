/**
 * Pure parsers for the pages a crawl reads to find articles: listing pages, RSS/Atom feeds,
 * sitemaps and sitemap indexes; plus URL canonicalisation so one article is one URL however it was
 * linked (tracking parameters, fragments, rel=canonical).
 */
import * as cheerio from 'cheerio';

/** Query parameters that identify a campaign or a click, never the page. */
const TRACKING_PARAMS = [
  /^utm_/i, /^fbclid$/i, /^gclid$/i, /^dclid$/i, /^msclkid$/i, /^mc_(cid|eid)$/i, /^_ga$/i, /^_gl$/i,
  /^igshid$/i, /^mkt_tok$/i, /^cmpid$/i, /^ref$/i, /^ref_src$/i, /^spm$/i, /^yclid$/i, /^oly_(anon|enc)_id$/i,
  /^__s$/i, /^vero_(conv|id)$/i, /^wt\.mc_id$/i, /^icid$/i,
];

/**
 * Absolute, comparable form of a link: resolved against `base`, fragment and tracking parameters
 * removed, host lower-cased, default port dropped, remaining parameters sorted. Returns null for
 * links that are not http(s) pages (mailto:, javascript:, malformed).
 */
export function canonicalUrl(href: string, base?: string, stripParams: string[] = []): string | null {
  let u: URL;
  try {
    u = new URL(href.trim(), base);
  } catch {
    return null;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return null;
  u.hash = '';
  const extra = new Set(stripParams.map((p) => p.toLowerCase()));
  const kept = [...u.searchParams].filter(
    ([k]) => !TRACKING_PARAMS.some((re) => re.test(k)) && !extra.has(k.toLowerCase()),
  );
  kept.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  u.search = kept.length ? new URLSearchParams(kept).toString() : '';
  return u.toString();
}

/** The page's own `<link rel="canonical">`, when it names an http(s) URL. */
export function pageCanonical(html: string, pageUrl: string): string | null {
  const m = html.match(/<link\b[^>]*\brel\s*=\s*["']?canonical["']?[^>]*>/i);
  if (!m) return null;
  const href = m[0].match(/\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))/i);
  const value = href?.[1] ?? href?.[2] ?? href?.[3];
  return value ? canonicalUrl(decodeEntities(value), pageUrl) : null;
}

function decodeEntities(s: string): string {
  return s.replace(/&amp;/g, '&').replace(/&#38;/g, '&');
}

export interface ListingPage {
  links: string[];
  next: string | null;
}

/** Article links and the next-page link of one listing page. */
export function parseListing(html: string, pageUrl: string, sel: { links?: string; next?: string } = {}): ListingPage {
  const $ = cheerio.load(html);
  const links: string[] = [];
  $(sel.links ?? 'a[href]').each((_, el) => {
    const node = $(el);
    const href = node.is('a') ? node.attr('href') : node.find('a[href]').first().attr('href');
    if (href) links.push(href);
  });
  let next: string | null = null;
  if (sel.next) {
    const href = $(sel.next).first().attr('href');
    next = href ? canonicalUrl(href, pageUrl) : null;
  }
  return { links: links.map((h) => canonicalUrl(h, pageUrl)).filter((x): x is string => x !== null), next };
}

export interface FeedItem {
  url: string;
  author: string | null;
  published: string | null;
}

/** Items of an RSS 2.0 / RSS 1.0 / Atom feed. */
export function parseFeed(xml: string, feedUrl: string): FeedItem[] {
  const $ = cheerio.load(xml, { xml: true });
  const items: FeedItem[] = [];
  $('item').each((_, el) => {
    const it = $(el);
    const guid = it.children('guid');
    const href =
      it.children('link').first().text().trim() ||
      (guid.attr('isPermaLink') !== 'false' ? guid.text().trim() : '') ||
      it.attr('rdf:about') ||
      '';
    const url = href ? canonicalUrl(href, feedUrl) : null;
    if (!url) return;
    const author = it.children('dc\\:creator, author').first().text().trim() || null;
    const published = it.children('pubDate, dc\\:date').first().text().trim() || null;
    items.push({ url, author, published });
  });
  $('entry').each((_, el) => {
    const it = $(el);
    const link = it.children('link[rel="alternate"], link:not([rel])').first().attr('href');
    const url = link ? canonicalUrl(link, feedUrl) : null;
    if (!url) return;
    const author = it.find('author > name').map((__, n) => $(n).text().trim()).get().join(', ') || null;
    const published = it.children('published, updated').first().text().trim() || null;
    items.push({ url, author, published });
  });
  return items;
}

export interface SitemapContent {
  /** Child sitemaps of a sitemap index. */
  sitemaps: string[];
  urls: { url: string; lastmod: string | null }[];
}

export function parseSitemap(xml: string, sitemapUrl: string): SitemapContent {
  const $ = cheerio.load(xml, { xml: true });
  const sitemaps = $('sitemapindex > sitemap > loc')
    .map((_, el) => canonicalUrl($(el).text(), sitemapUrl))
    .get()
    .filter((x): x is string => Boolean(x));
  const urls: SitemapContent['urls'] = [];
  $('urlset > url').each((_, el) => {
    const u = $(el);
    const url = canonicalUrl(u.children('loc').text(), sitemapUrl);
    if (!url) return;
    const lastmod = u.children('lastmod').text().trim();
    urls.push({ url, lastmod: lastmod && !Number.isNaN(Date.parse(lastmod)) ? new Date(lastmod).toISOString() : null });
  });
  return { sitemaps, urls };
}

/**
 * Why the profile does not want a URL (another host, no keep pattern matched, a drop pattern
 * matched), or null when it does.
 */
export function unwantedReason(url: string, rules: { hosts: Set<string>; keep: RegExp[]; drop: RegExp[] }): string | null {
  const u = new URL(url);
  if (!rules.hosts.has(u.host)) return 'other host';
  const target = u.pathname + u.search;
  if (!rules.keep.some((re) => re.test(target))) return 'no keep pattern matched';
  if (rules.drop.some((re) => re.test(target))) return 'drop pattern matched';
  return null;
}
