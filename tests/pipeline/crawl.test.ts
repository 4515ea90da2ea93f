import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/store/db.ts';
import { parseProfile, loadProfile, listProfiles, type SourceProfile } from '../../src/pipeline/crawl/profile.ts';
import { scrapeSource } from '../../src/pipeline/crawl/scrape.ts';
import { cleanArticles, type ArticleInput } from '../../src/pipeline/dataset/clean-text.ts';
import { dedupeArticles } from '../../src/pipeline/dataset/dedupe.ts';
import { canonicalUrl } from '../../src/pipeline/crawl/discover.ts';
import type { CrawlSummary } from '../../src/pipeline/crawl/crawl.ts';
import type { FetcherOptions } from '../../src/pipeline/crawl/fetch.ts';
import { articlePage, html, prose, startFixture, withEtag, type Fixture, type Handler } from './fixture-server.ts';

const FETCH: FetcherOptions = {
  userAgent: 'MorrisBot/test (+https://example.org)',
  rateLimitRps: 500,
  hostConcurrency: 4,
  timeoutMs: 3000,
  retries: 2,
  maxBytes: 300_000,
  backoffBaseMs: 10,
};

/** What the fixture site serves; tests change it between crawls. */
const state = {
  fresh: false,
  good1Broken: false,
  cp1252Down: false,
  good2Body: prose('Second column'),
  good2Lastmod: '2024-01-01T00:00:00.000Z',
};

const good1Body = prose('First column');
const CP1252_PARA = Buffer.from([0x93, 0x57, 0x68, 0x61, 0x74, 0x20, 0x63, 0x6f, 0x75, 0x6c, 0x64, 0x20, 0x67, 0x6f, 0x20, 0x77, 0x72, 0x6f, 0x6e, 0x67, 0x3f, 0x94, 0x20, 0x96, 0x20, 0x80, 0x35, 0x62, 0x6e]); // “What could go wrong?” – €5bn

const listingHtml = (links: string[], next?: string) =>
  `<html><body><nav><a href="/about">About</a><a href="https://elsewhere.example/x">Elsewhere</a></nav>
${links.map((l) => `<div class="post"><a class="headline" href="${l}">${l}</a></div>`).join('\n')}
${next ? `<a class="next" href="${next}">Older</a>` : ''}</body></html>`;

const routes: Record<string, Handler> = {
  '/robots.txt': html('User-agent: *\nDisallow: /private/\n', 'text/plain'),
  '/list': (req, res, n) => {
    const page = new URL(req.url ?? '/', 'http://x').searchParams.get('page') ?? '1';
    const pages: Record<string, [string[], string?]> = {
      '1': [[...(state.fresh ? ['/a/fresh'] : []), '/a/good-1#comments', '/a/good-2', '/a/redirect-me', '/a/limited', '/a/flaky'], '/list?page=2'],
      '2': [['/a/cp1252', '/a/truncated', '/a/huge', '/private/hidden', '/a/no-article'], '/list?page=3'],
      '3': [['/a/empty-body', '/a/binary', '/a/bad-date', '/a/dup', '/a/near-dup']],
    };
    const p = pages[page];
    if (!p) return void res.writeHead(404).end();
    return withEtag(() => listingHtml(...p))(req, res, n);
  },
  '/feed.xml': withEtag(
    () => `<?xml version="1.0"?><rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>Feed</title>
<item><title>Feed only</title><link>/a/feed-only</link><dc:creator>Iain Morris</dc:creator></item>
<item><title>First</title><link>/a/good-1?utm_source=rss&amp;utm_medium=feed</link><dc:creator>Iain Morris</dc:creator></item>
<item><title>Not his</title><link>/a/someone-else</link><dc:creator>Somebody Else</dc:creator></item>
</channel></rss>`,
    'application/rss+xml',
  ),
  '/sitemap.xml': withEtag(
    () => `<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
<sitemap><loc>/sitemap-1.xml</loc><lastmod>${state.good2Lastmod}</lastmod></sitemap></sitemapindex>`,
    'application/xml',
  ),
  '/sitemap-1.xml': withEtag(
    () => `<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
<url><loc>/a/sitemap-only</loc><lastmod>2024-01-01</lastmod></url>
<url><loc>/a/good-2</loc><lastmod>${state.good2Lastmod}</lastmod></url>
<url><loc>/a/gone</loc></url>
<url><loc>/about</loc></url></urlset>`,
    'application/xml',
  ),
  '/a/good-1': (req, res, n) =>
    (state.good1Broken
      ? html(articlePage({ title: 'First column', body: '' }))
      : withEtag(() => articlePage({ title: 'First column', body: good1Body, date: '2024-01-01T08:00:00Z' })))(req, res, n),
  '/a/good-2': withEtag(() => articlePage({ title: 'Second column', body: state.good2Body, date: '2024-01-02T08:00:00Z' })),
  '/a/fresh': html(articlePage({ title: 'Fresh column', body: prose('Fresh column') })),
  '/a/feed-only': html(articlePage({ title: 'Feed-only column', body: prose('Feed column') })),
  '/a/sitemap-only': html(articlePage({ title: 'Sitemap-only column', body: prose('Sitemap column') })),
  '/a/someone-else': html(articlePage({ title: 'Other', body: prose('Other'), author: 'Somebody Else' })),
  '/a/redirect-me': (_req, res) => void res.writeHead(301, { location: '/a/moved?utm_campaign=x' }).end(),
  '/a/moved': html(articlePage({ title: 'Moved column', body: prose('Moved column'), canonical: '/a/moved' })),
  '/a/limited': (_req, res, n) =>
    n === 1
      ? void res.writeHead(429, { 'retry-after': '1' }).end()
      : void res.writeHead(200, { 'content-type': 'text/html' }).end(articlePage({ title: 'Patience column', body: prose('Patience column') })),
  '/a/flaky': (_req, res, n) =>
    n === 1
      ? void res.writeHead(500).end('oops')
      : void res.writeHead(200, { 'content-type': 'text/html' }).end(articlePage({ title: 'Flaky column', body: prose('Flaky column') })),
  '/a/cp1252': (_req, res) => {
    if (state.cp1252Down) return void res.writeHead(500).end();
    const page = articlePage({ title: 'Windows column', body: `${prose('Windows column')}\n\nQUOTE_HERE` });
    const [before, after] = page.split('QUOTE_HERE');
    res.writeHead(200, { 'content-type': 'text/html; charset=windows-1252' });
    res.end(Buffer.concat([Buffer.from(before.replace('charset="utf-8"', 'charset="windows-1252"'), 'latin1'), CP1252_PARA, Buffer.from(after, 'latin1')]));
  },
  // Cut off mid-paragraph, no closing tags.
  '/a/truncated': html(articlePage({ title: 'Truncated column', body: prose('Truncated column', 8) }).slice(0, -700)),
  '/a/huge': (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.write(articlePage({ title: 'Huge column', body: prose('Huge column') }).replace('</body></html>', '<!-- '));
    const chunk = Buffer.alloc(64 * 1024, 'x');
    let sent = 0;
    const pump = () => {
      while (sent < 20 * 1024 * 1024) {
        sent += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
      res.end(' --></body></html>');
    };
    res.on('close', () => (sent = Infinity));
    pump();
  },
  '/private/hidden': html(articlePage({ title: 'Hidden', body: prose('Hidden') })),
  '/a/no-article': html('<html><head><title>Index</title></head><body><nav><a href="/">Home</a> <a href="/list">List</a></nav><p>Nothing to see.</p></body></html>'),
  '/a/empty-body': html(articlePage({ title: 'Empty column', body: '' })),
  '/a/binary': (_req, res) => void res.writeHead(200, { 'content-type': 'image/jpeg' }).end(Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 0x4a, 0x46])),
  '/a/bad-date': html(articlePage({ title: 'Undated column', body: prose('Undated column'), date: 'the thirty-second of Smarch' })),
  '/a/dup': html(articlePage({ title: 'First column (syndicated)', body: good1Body, date: '2024-02-01T08:00:00Z' })),
  '/a/near-dup': html(
    articlePage({
      title: 'Second column, again',
      body: `${state.good2Body.split('\n\n').slice(0, -1).join('\n\n')}\n\nA new closing paragraph written for the syndicated version of the column.`,
      date: '2024-02-02T08:00:00Z',
    }),
  ),
};

let f: Fixture;
let dir: string;
let store: Store;
let profile: SourceProfile;
const runs: CrawlSummary[] = [];
const reasons = (l: { url: string; reason: string }[]) => Object.fromEntries(l.map((x) => [new URL(x.url).pathname, x.reason]));
const articlePaths = (from: number) =>
  f.log.slice(from).map((l) => l.path).filter((p) => p.startsWith('/a/') || p.startsWith('/private/')).sort();
const stored = () =>
  store.prepare<[], ArticleInput & { status: string; skip_reason: string | null }>('SELECT * FROM articles ORDER BY id').all();

beforeAll(async () => {
  f = await startFixture(routes);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-crawl-'));
  store = openStore(path.join(dir, 'morris.db'));
  profile = parseProfile({
    name: 'fixture',
    listings: [{ url: '{{baseUrl}}/list', links: '.post a.headline', next: { selector: 'a.next' } }],
    feeds: ['{{baseUrl}}/feed.xml'],
    feedAuthor: 'Iain Morris',
    sitemaps: ['{{baseUrl}}/sitemap.xml'],
    keep: ['^/a/', '^/private/'],
    minBodyChars: 400,
  }, { baseUrl: f.url });
});
afterAll(async () => {
  store.close();
  await f.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('crawl of the fixture site', () => {
  it('first run: discovers through pagination, feed and sitemap index, and counts every outcome', async () => {
    const s = await scrapeSource(store, profile, { fetch: FETCH });
    runs.push(s);
    expect(s.listingPages).toBe(3);
    expect(s.new).toBe(13);
    expect(s.updated).toBe(0);
    expect(s.skippedRobots).toBe(1);
    expect(f.hits('/private/hidden')).toBe(0);
    expect(reasons(s.skipped)).toEqual({
      '/a/no-article': expect.stringMatching(/^no article found/),
      '/a/empty-body': expect.stringMatching(/^no article found: empty body/),
      '/a/binary': 'binary content (image/jpeg)',
    });
    expect(reasons(s.failed)).toEqual({ '/a/gone': 'HTTP 404' });
    expect(s.warnings).toEqual({ 'capped at size limit': 1, 'invalid date dropped': 1 });
    // Feed items by someone else are never fetched.
    expect(f.hits('/a/someone-else')).toBe(0);
    // The 429 and the 500 were retried to success.
    expect(f.hits('/a/limited')).toBe(2);
    expect(f.hits('/a/flaky')).toBe(2);
  });

  it('stores articles under canonical URLs, decoded correctly, with skips remembered', () => {
    const rows = stored();
    const byPath = new Map(rows.map((r) => [new URL(r.url).pathname + new URL(r.url).search, r]));
    // Tracking parameters and fragments never create a second copy.
    expect(rows.filter((r) => r.url.includes('good-1'))).toHaveLength(1);
    expect(byPath.has('/a/moved')).toBe(true);
    expect(byPath.has('/a/redirect-me')).toBe(false);
    expect(byPath.get('/a/cp1252')?.body).toContain('“What could go wrong?” – €5bn');
    expect(byPath.get('/a/truncated')?.status).toBe('ok');
    expect(byPath.get('/a/huge')?.body).toContain('Huge column paragraph 6');
    expect(byPath.get('/a/bad-date')?.published).toBeNull();
    expect(byPath.get('/a/good-1')?.published).toBe('2024-01-01T08:00:00Z');
    expect(byPath.get('/a/binary')?.status).toBe('skipped');
    expect(rows.filter((r) => r.status === 'ok')).toHaveLength(13);
    const redirects = store.prepare<[string], { redirects: string }>('SELECT redirects FROM pages WHERE url = ?').get(`${f.url}/a/redirect-me`);
    expect(JSON.parse(redirects!.redirects)).toEqual([{ from: `${f.url}/a/redirect-me`, to: `${f.url}/a/moved?utm_campaign=x`, status: 301 }]);
  });

  it('the stored duplicate and near-duplicate are caught by clean + dedupe', () => {
    const ok = stored().filter((r) => r.status === 'ok');
    const cleaned = cleanArticles(ok, { minWords: 50 });
    const d = dedupeArticles(cleaned.articles, { nearDupThreshold: 0.7 });
    const dupPaths = d.duplicates.map((x) => [new URL(x.url).pathname, x.kind]);
    expect(dupPaths).toEqual(expect.arrayContaining([['/a/dup', 'exact'], ['/a/near-dup', 'near']]));
    expect(d.duplicates.map((x) => new URL(x.url).pathname).sort()).toEqual(['/a/dup', '/a/near-dup']);
  });

  it('second run fetches only what changed: the new article, the updated one, and the failure', async () => {
    state.fresh = true;
    state.good2Body = prose('Second column, revised');
    state.good2Lastmod = new Date(Date.now() + 60_000).toISOString();
    const from = f.log.length;
    const s = await scrapeSource(store, profile, { fetch: FETCH });
    runs.push(s);
    expect(articlePaths(from)).toEqual(['/a/fresh', '/a/gone', '/a/good-2']);
    expect(s).toMatchObject({ new: 1, updated: 1, unchanged: 0 });
    expect(reasons(s.failed)).toEqual({ '/a/gone': 'HTTP 404' });
    // Page 1 changed (new link); page 2 was unchanged (304), so the walk stopped there.
    expect(s.listingPages).toBe(2);
    expect(f.log.slice(from).filter((l) => l.path.startsWith('/list')).map((l) => l.status)).toEqual([200, 304]);
    // The unchanged feed cost a 304.
    const feed = f.log.slice(from).filter((l) => l.path === '/feed.xml');
    expect(feed.map((l) => l.status)).toEqual([304]);
    expect(feed[0].headers['if-none-match']).toBeTruthy();
  });

  it('a third run with nothing changed costs only 304s', async () => {
    const from = f.log.length;
    const s = await scrapeSource(store, profile, { fetch: FETCH });
    expect(articlePaths(from)).toEqual(['/a/gone']); // failures are retried, up to a limit
    expect(s.new + s.updated).toBe(0);
    const statuses = f.log.slice(from).filter((l) => !l.path.startsWith('/a/') && l.path !== '/robots.txt').map((l) => l.status);
    expect(statuses.every((x) => x === 304)).toBe(true);
  });

  it('--full re-walks everything; unchanged pages answer 304 and failures lose nothing stored', async () => {
    const before = new Map(stored().map((r) => [r.url, r.body]));
    state.good1Broken = true; // now serves an empty article
    state.cp1252Down = true; // now answers 500
    const from = f.log.length;
    const s = await scrapeSource(store, profile, { fetch: FETCH, full: true });
    expect(s.listingPages).toBe(3);
    expect(s.new).toBe(0);
    expect(s.notModified).toBeGreaterThanOrEqual(1);
    expect(f.log.slice(from).find((l) => l.path === '/a/good-2')?.status).toBe(304);
    expect(reasons(s.failed)['/a/cp1252']).toBe('HTTP 500');
    expect(reasons(s.skipped)['/a/good-1']).toMatch(/kept the stored version/);
    const after = new Map(stored().map((r) => [r.url, r.body]));
    for (const [url, body] of before) expect(after.get(url)).toBe(body);
    state.good1Broken = false;
    state.cp1252Down = false;
  });

  it('records each run with its summary', () => {
    const rows = store.prepare<[], { summary: string; ended_at: string }>('SELECT summary, ended_at FROM scrape_runs ORDER BY id').all();
    expect(rows).toHaveLength(4);
    expect(JSON.parse(rows[0].summary).new).toBe(runs[0].new);
    expect(rows.every((r) => r.ended_at)).toBe(true);
  });
});

describe('cancellation', () => {
  it('stops at once when the signal is aborted, and records why', async () => {
    const ctl = new AbortController();
    ctl.abort();
    const err = await scrapeSource(store, profile, { fetch: FETCH, signal: ctl.signal }).catch((e) => e);
    expect(err.code).toBe('CANCELLED');
    const last = store.prepare<[], { summary: string; ended_at: string }>('SELECT summary, ended_at FROM scrape_runs ORDER BY id DESC LIMIT 1').get()!;
    expect(JSON.parse(last.summary).error).toMatch(/cancelled/);
    expect(last.ended_at).toBeTruthy();
    expect(stored().filter((r) => r.status === 'ok').length).toBeGreaterThanOrEqual(13);
  });
});

describe('source profiles', () => {
  it('ships valid profiles, and one that needs a base URL says so', () => {
    expect(listProfiles()).toEqual(expect.arrayContaining(['lightreading-iain-morris', 'sample-archive']));
    const lr = loadProfile('lightreading-iain-morris');
    expect(lr.listings[0].url).toBe('https://www.lightreading.com/author/iain-morris');
    const keep = lr.keep.map((r) => new RegExp(r));
    const drop = lr.drop.map((r) => new RegExp(r));
    const wanted = (p: string) => keep.some((r) => r.test(p)) && !drop.some((r) => r.test(p));
    expect(wanted('/5g/vodafone-s-5g-standalone-woes-deepen')).toBe(true);
    expect(wanted('/author/iain-morris')).toBe(false);
    expect(wanted('/events/big-5g-event-2024')).toBe(false);
    expect(() => loadProfile('sample-archive')).toThrow(/needs a base URL/);
    expect(loadProfile('sample-archive', { baseUrl: 'http://127.0.0.1:9/' }).feeds).toEqual(['http://127.0.0.1:9/feed.xml']);
    expect(() => loadProfile('no-such-source')).toThrow(/No source profile/);
  });

  it('rejects invalid profiles with the field named', () => {
    expect(() => parseProfile({ name: 'x', listings: [], keep: ['('] })).toThrow(/keep\.0.*regular expression/s);
    expect(() => parseProfile({ name: 'x' })).toThrow(/at least one listing, feed or sitemap/);
    expect(() => parseProfile({ name: 'x', feeds: ['http://a/f'], surprise: 1 })).toThrow(/surprise|Unrecognized/);
  });

  it('canonicalises URLs', () => {
    expect(canonicalUrl('/a/b?utm_source=x&b=2&a=1#top', 'http://Example.COM:80/')).toBe('http://example.com/a/b?a=1&b=2');
    expect(canonicalUrl('mailto:x@y')).toBeNull();
    expect(canonicalUrl('/p?fbclid=1&gclid=2&id=7', 'https://x.org')).toBe('https://x.org/p?id=7');
  });
});
