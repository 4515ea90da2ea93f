/**
 * Scraping a hostile site on 127.0.0.1: redirects and links to another port (another service),
 * a 100,000-URL sitemap, an hour-long Crawl-delay, pages whose bytes are not in their charset, and
 * a scrape killed mid-run. Each site is a fixture server the test starts itself.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/store/db.ts';
import { parseProfile } from '../../src/pipeline/crawl/profile.ts';
import { buildDataset } from '../../src/pipeline/dataset/build.ts';
import { scrapeSource } from '../../src/pipeline/crawl/scrape.ts';
import type { FetcherOptions } from '../../src/pipeline/crawl/fetch.ts';
import type { TokenCounter } from '../../src/pipeline/dataset/token-count.ts';
import { articlePage, html, prose, startFixture, withEtag, type Fixture } from './fixture-server.ts';

const FETCH: FetcherOptions = {
  userAgent: 'MorrisBot/test (+https://example.org)',
  rateLimitRps: 1000,
  hostConcurrency: 4,
  timeoutMs: 5000,
  retries: 0,
  maxBytes: 10_000_000,
  backoffBaseMs: 10,
};

let tmp: string;
const stores: Store[] = [];
const fixtures: Fixture[] = [];

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-hostile-'));
});
afterAll(async () => {
  for (const s of stores) s.close();
  for (const f of fixtures) await f.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function newStore(name: string): Store {
  const s = openStore(path.join(tmp, `${name}.db`));
  stores.push(s);
  return s;
}

async function site(routes: Parameters<typeof startFixture>[0]): Promise<Fixture> {
  const f = await startFixture(routes);
  fixtures.push(f);
  return f;
}

const articles = (store: Store) =>
  store.prepare<[], { url: string; status: string; body: string; skip_reason: string | null }>('SELECT url, status, body, skip_reason FROM articles ORDER BY id').all();
const crawlUrl = (store: Store, url: string) =>
  store.prepare<[string], { status: string; reason: string | null }>('SELECT status, reason FROM crawl_urls WHERE url = ?').get(url);
const lastRun = (store: Store) =>
  store.prepare<[], { status: string; stop_reason: string | null; ended_at: string | null; summary: string }>('SELECT * FROM scrape_runs ORDER BY id DESC LIMIT 1').get()!;
const articlePaths = (f: Fixture, from: number, prefix: string) => f.log.slice(from).map((l) => l.path).filter((p) => p.startsWith(prefix));

/** Words as tokens: enough for a dataset build without loading a tokenizer. */
const WORDS: TokenCounter = {
  id: 'words',
  countText: (t) => t.split(/\s+/).filter(Boolean).length,
  countChat: (ms) => ms.reduce((n, m) => n + m.content.split(/\s+/).filter(Boolean).length + 4, 0),
};

describe('off-host redirects and links', () => {
  it('a listed page that 302-redirects to another port is refused, counted off-host, not stored, not in the next dataset', async () => {
    const secret = prose('Internal service secret');
    const other = await site({
      '/robots.txt': html('', 'text/plain'),
      '/secret/': html(articlePage({ title: 'Internal secret', body: secret })),
    });
    const hostile = await site({
      '/robots.txt': html('User-agent: *\nAllow: /\n', 'text/plain'),
      '/a/honest': html(articlePage({ title: 'Honest column', body: prose('Honest column') })),
      '/a/sneaky': (_req, res) => void res.writeHead(302, { location: `${other.url}/secret/` }).end(),
    });
    // The listing names the site's own port, so it is added once the server is up.
    hostile.routes.set(
      '/list',
      html(`<html><body>
        <a href="/a/honest">Honest</a>
        <a href="/a/sneaky">Sneaky</a>
        <a href="${other.url}/secret/">Direct link to the other port</a>
        <a href="http://localhost:${new URL(hostile.url).port}/a/honest">Same port, other host name</a>
      </body></html>`),
    );

    const store = newStore('off-host');
    const profile = parseProfile({ name: 'hostile', listings: [{ url: '{{baseUrl}}/list' }], keep: ['^/a/', '^/secret/'], minBodyChars: 200 }, { baseUrl: hostile.url });
    const s = await scrapeSource(store, profile, { fetch: FETCH });

    expect(s.new).toBe(1);
    // The redirect, the direct link and the other host name: three refusals, each with its reason.
    expect(s.offHost).toBe(3);
    const why = Object.fromEntries(s.offHostUrls.map((x) => [x.url, x.reason]));
    expect(why[`${hostile.url}/a/sneaky`]).toMatch(new RegExp(`Refused ${other.url}/secret/ \\(redirected from ${hostile.url}/a/sneaky\\): host 127\\.0\\.0\\.1:\\d+ is not one of this source's hosts \\(127\\.0\\.0\\.1:\\d+\\)`));
    expect(why[`${other.url}/secret/`]).toMatch(/not one of this source's hosts/);
    expect(why[`http://localhost:${new URL(hostile.url).port}/a/honest`]).toBe(`link on ${hostile.url}/list refused: host localhost:${new URL(hostile.url).port} is not one of this source's hosts (${new URL(hostile.url).host})`);
    // Nothing was requested from the other service, not even its robots.txt.
    expect(other.log).toEqual([]);
    expect(articles(store).map((a) => a.url)).toEqual([`${hostile.url}/a/honest`]);
    expect(crawlUrl(store, `${hostile.url}/a/sneaky`)).toMatchObject({ status: 'skipped', reason: expect.stringMatching(/^off-host: /) });
    expect(JSON.parse(lastRun(store).summary).offHost).toBe(3);

    const dir = path.join(tmp, 'datasets');
    const built = await buildDataset(store, {
      tokenCounter: WORDS,
      settings: { maxTokens: 4096, policy: 'split', valFraction: 0, extraRatio: 0, nearDupThreshold: 0.85, minWords: 50 },
      outDir: dir,
      style: { systemPrompt: 'You are Morris.', extras: [] },
    });
    expect(built.examples).toBeGreaterThanOrEqual(1);
    const all = fs.readFileSync(built.files.all, 'utf8');
    expect(all).toContain('Honest column');
    expect(all).not.toContain('Internal service secret');

    // A refusal is settled: the next run does not knock on the other port again.
    const from = hostile.log.length;
    const again = await scrapeSource(store, profile, { fetch: FETCH });
    expect(articlePaths(hostile, from, '/a/')).toEqual([]);
    expect(again.new).toBe(0);
    expect(other.log).toEqual([]);
  });

  it('a robots.txt that redirects off-host is not followed: the host is not crawled, and the summary says why', async () => {
    const other = await site({ '/robots.txt': html('User-agent: *\nAllow: /\n', 'text/plain') });
    const hostile = await site({
      '/robots.txt': (_req, res) => void res.writeHead(301, { location: `${other.url}/robots.txt` }).end(),
      '/list': html('<a href="/a/x">x</a>'),
    });
    const store = newStore('robots-off-host');
    const profile = parseProfile({ name: 'robots-hop', listings: [{ url: '{{baseUrl}}/list' }] }, { baseUrl: hostile.url });
    const s = await scrapeSource(store, profile, { fetch: FETCH });
    expect(other.log).toEqual([]);
    expect(hostile.hits('/list')).toBe(0);
    expect(s.failed[0].reason).toMatch(/robots\.txt unreachable \(redirects to http:\/\/127\.0\.0\.1:\d+\/robots\.txt, refused: host .* is not one of this source's hosts/);
  });
});

describe('per-run caps', () => {
  const N = 100_000;
  let big: Fixture;
  let sitemapBody: string;

  beforeAll(async () => {
    sitemapBody = `<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n${Array.from({ length: N }, (_, i) => `<url><loc>/big/${i + 1}</loc></url>`).join('\n')}\n</urlset>`;
    big = await site({
      '/robots.txt': html('User-agent: *\nAllow: /\n', 'text/plain'),
      // With an ETag, as real sites have: a run that resumes must not be fooled by a 304.
      '/sitemap.xml': withEtag(() => sitemapBody, 'application/xml'),
      '/small-sitemap.xml': html(
        `<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">${Array.from({ length: 30 }, (_, i) => `<url><loc>/big/${i + 1}</loc></url>`).join('')}</urlset>`,
        'application/xml',
      ),
      '/slow-sitemap.xml': html(
        `<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">${Array.from({ length: 30 }, (_, i) => `<url><loc>/slow/${i + 1}</loc></url>`).join('')}</urlset>`,
        'application/xml',
      ),
      '*': async (req, res) => {
        const p = req.url ?? '/';
        if (p.startsWith('/slow/')) await new Promise((r) => setTimeout(r, 250));
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(articlePage({ title: `Column ${p}`, body: prose(`Column ${p}`, 2) }));
      },
    });
  });

  it('a 100,000-URL sitemap stops at the cap, says which, and the next run resumes with the next URLs', async () => {
    const store = newStore('caps');
    const profile = parseProfile(
      { name: 'endless', sitemaps: ['{{baseUrl}}/sitemap.xml'], keep: ['^/big/'], minBodyChars: 100, limits: { urls: 40, fetches: 25 } },
      { baseUrl: big.url },
    );
    const frontier = () => (store.prepare(`SELECT count(*) AS n FROM crawl_urls`).get() as { n: number }).n;

    let from = big.log.length;
    const s1 = await scrapeSource(store, profile, { fetch: FETCH, limits: { urls: 1_000_000, fetches: 1_000_000 } });
    const first = articlePaths(big, from, '/big/');
    expect(s1.status).toBe('capped');
    expect(s1.caps.map((c) => c.cap)).toEqual(['urls', 'fetches']);
    expect(s1.caps[0].message).toBe('stopped at the urls cap (40 new URLs discovered)');
    expect(s1.discovered).toBe(40);
    expect(frontier()).toBe(40); // not 100,000
    expect(first).toHaveLength(24); // 25 fetches: the sitemap and 24 articles
    expect(s1.new).toBe(24);
    expect(s1.pending).toBe(16);
    const row1 = lastRun(store);
    expect(row1.status).toBe('capped');
    expect(row1.ended_at).toBeTruthy();
    expect(row1.stop_reason).toBe('stopped at the urls cap (40 new URLs discovered); stopped at the fetches cap (25 pages fetched); 16 URLs left pending for the next run');

    from = big.log.length;
    const s2 = await scrapeSource(store, profile, { fetch: FETCH });
    const second = articlePaths(big, from, '/big/');
    // The sitemap was read again in full (200, not 304) because the last run's discovery was cut.
    expect(big.log.slice(from).filter((l) => l.path === '/sitemap.xml').map((l) => l.status)).toEqual([200]);
    expect(second).toHaveLength(24);
    expect(second.filter((p) => first.includes(p))).toEqual([]); // the next ones, not the same
    const nums = (ps: string[]) => ps.map((p) => Number(p.split('/')[2])).sort((a, b) => a - b);
    expect(nums(first)).toEqual(Array.from({ length: 24 }, (_, i) => i + 1));
    expect(nums(second)).toEqual(Array.from({ length: 24 }, (_, i) => i + 25));
    expect(frontier()).toBe(80);
    expect(s2.pending).toBe(80 - 48);
  });

  it('stops at the bytes cap', async () => {
    const store = newStore('bytes');
    const profile = parseProfile({ name: 'heavy', sitemaps: ['{{baseUrl}}/small-sitemap.xml'], keep: ['^/big/'], minBodyChars: 100 }, { baseUrl: big.url });
    const s = await scrapeSource(store, profile, { fetch: { ...FETCH, hostConcurrency: 1 }, limits: { bytes: 12_000 } });
    expect(s.caps.map((c) => c.cap)).toEqual(['bytes']);
    expect(s.bytes).toBeGreaterThanOrEqual(12_000);
    expect(s.new).toBeGreaterThan(0);
    expect(s.new).toBeLessThan(30);
    expect(s.pending).toBe(30 - s.new);
    expect(lastRun(store).stop_reason).toMatch(/^stopped at the bytes cap \(12000 bytes downloaded\)/);
  });

  it('stops at the wall-time cap', async () => {
    const store = newStore('seconds');
    const profile = parseProfile({ name: 'slow', sitemaps: ['{{baseUrl}}/slow-sitemap.xml'], keep: ['^/slow/'], minBodyChars: 100 }, { baseUrl: big.url });
    const t0 = Date.now();
    const s = await scrapeSource(store, profile, { fetch: { ...FETCH, hostConcurrency: 1 }, limits: { seconds: 0.6 } });
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(s.caps.map((c) => c.cap)).toEqual(['seconds']);
    expect(s.new).toBeGreaterThan(0);
    expect(s.pending).toBe(30 - s.new);
  });
});

describe('Crawl-delay', () => {
  it('a 3600 s Crawl-delay is clamped to the maximum with a warning, and the disallow rules still hold', async () => {
    const slowpoke = await site({
      '/robots.txt': html('User-agent: *\nCrawl-delay: 3600\nDisallow: /private/\n', 'text/plain'),
      '/list': html('<a href="/a/1">1</a><a href="/a/2">2</a><a href="/a/3">3</a><a href="/private/x">x</a>'),
      '/a/1': html(articlePage({ title: 'One', body: prose('One') })),
      '/a/2': html(articlePage({ title: 'Two', body: prose('Two') })),
      '/a/3': html(articlePage({ title: 'Three', body: prose('Three') })),
      '/private/x': html(articlePage({ title: 'Private', body: prose('Private') })),
    });
    const store = newStore('crawl-delay');
    const profile = parseProfile({ name: 'slowpoke', listings: [{ url: '{{baseUrl}}/list' }], minBodyChars: 200 }, { baseUrl: slowpoke.url });
    const t0 = Date.now();
    // The maximum is injected small (config default: 30 s) so the test runs in well under a second.
    const s = await scrapeSource(store, profile, { fetch: { ...FETCH, maxCrawlDelayMs: 100 } });
    const took = Date.now() - t0;
    expect(s.warnings).toEqual({ [`Crawl-delay of 3600 s (${new URL(slowpoke.url).host}) clamped to 0.1 s`]: 1 });
    expect(s.new).toBe(3);
    expect(s.skippedRobots).toBe(1);
    expect(slowpoke.hits('/private/x')).toBe(0);
    // Still a delay: listing + 3 articles, spaced by the clamped 100 ms.
    expect(took).toBeGreaterThanOrEqual(300);
    expect(took).toBeLessThan(5000);
  });
});

describe('bad encoding', () => {
  it('pages whose text is mostly U+FFFD are skipped as bad-encoding, counted and not stored', async () => {
    // Declared UTF-8, written in Latin-1: every "ö" is a lone 0xF6 byte, invalid in UTF-8.
    const latin1Page = (title: string) => Buffer.from(articlePage({ title, body: prose(title).replaceAll('o', 'ö') }), 'latin1');
    const oneBadByte = Buffer.concat([
      Buffer.from(articlePage({ title: 'Mostly fine', body: prose('Mostly fine') }).replace('paragraph 2', 'paragraph 2 QQ'), 'utf8'),
    ]);
    const fine = Buffer.from(oneBadByte.toString('latin1').replace('QQ', '\xe9'), 'latin1');
    const garbage = Buffer.concat([Buffer.from('<html><head><meta charset="utf-8"><title>Garbage</title></head><body><p>'), Buffer.alloc(4000, 0xc3), Buffer.from('</p></body></html>')]);
    const mojibake = await site({
      '/robots.txt': html('', 'text/plain'),
      '/list': html('<a href="/a/latin1">1</a><a href="/a/garbage">2</a><a href="/a/fine">3</a>'),
      '/a/latin1': (_req, res) => void res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(latin1Page('Latin one')),
      '/a/garbage': (_req, res) => void res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(garbage),
      '/a/fine': (_req, res) => void res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(fine),
    });
    const store = newStore('encoding');
    const profile = parseProfile({ name: 'mojibake', listings: [{ url: '{{baseUrl}}/list' }], minBodyChars: 200 }, { baseUrl: mojibake.url });
    const s = await scrapeSource(store, profile, { fetch: FETCH });
    expect(s.badEncoding).toBe(2);
    expect(s.new).toBe(1);
    const reasons = Object.fromEntries(s.skipped.map((x) => [new URL(x.url).pathname, x.reason]));
    expect(reasons['/a/latin1']).toMatch(/^bad-encoding: \d+\.\d% of the text is U\+FFFD replacement characters \(decoded as utf-8/);
    expect(reasons['/a/garbage']).toMatch(/^bad-encoding: /);
    const rows = Object.fromEntries(articles(store).map((a) => [new URL(a.url).pathname, a]));
    expect(rows['/a/latin1']).toMatchObject({ status: 'skipped', body: '' });
    expect(rows['/a/garbage']).toMatchObject({ status: 'skipped', body: '' });
    // One stray bad byte in a whole article is under the threshold: kept.
    expect(rows['/a/fine'].status).toBe('ok');
    expect(rows['/a/fine'].body).toContain('\ufffd');
  });
});

describe('a scrape killed mid-run', () => {
  it('leaves its scrape_runs row open until the next scrape closes it as crashed', async () => {
    const hang = await site({ '/robots.txt': html('', 'text/plain'), '/list': () => undefined });
    const dbPath = path.join(tmp, 'killed.db');
    const store = newStore('killed');
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'scrape-child.ts'), dbPath, hang.url], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    // Wait until the child's run is open and it is stuck on the listing.
    const until = Date.now() + 45_000;
    while (hang.hits('/list') === 0) {
      if (Date.now() > until || child.exitCode !== null) throw new Error(`child scrape did not start: ${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const open = store.prepare<[], { id: number; pid: number; ended_at: string | null; status: string }>('SELECT * FROM scrape_runs').get()!;
    expect(open).toMatchObject({ pid: child.pid, ended_at: null, status: 'running' });
    // A run of another live process (the test runner's parent) must be left alone; a row with this
    // process's own pid that it did not open was left by an earlier process with the same pid.
    const live = Number(store.prepare(`INSERT INTO scrape_runs (source, pid) VALUES ('live', ?)`).run(process.ppid).lastInsertRowid);
    const samePid = Number(store.prepare(`INSERT INTO scrape_runs (source, pid) VALUES ('reused-pid', ?)`).run(process.pid).lastInsertRowid);

    child.kill('SIGKILL');
    await exited;
    const ok = await site({ '/robots.txt': html('', 'text/plain'), '/list': html('<p>nothing yet</p>') });
    await scrapeSource(store, parseProfile({ name: 'next', listings: [{ url: '{{baseUrl}}/list' }] }, { baseUrl: ok.url }), { fetch: FETCH });

    const closed = store.prepare<[number], { status: string; ended_at: string | null; stop_reason: string }>('SELECT * FROM scrape_runs WHERE id = ?').get(open.id)!;
    expect(closed.status).toBe('crashed');
    expect(closed.ended_at).toBeTruthy();
    expect(closed.stop_reason).toBe(`process ${child.pid} ended while the scrape was in progress`);
    expect(store.prepare<[number], { status: string; ended_at: string | null }>('SELECT status, ended_at FROM scrape_runs WHERE id = ?').get(live)).toEqual({ status: 'running', ended_at: null });
    expect(store.prepare<[number], { status: string }>('SELECT status FROM scrape_runs WHERE id = ?').get(samePid)?.status).toBe('crashed');
    expect(lastRun(store).status).toBe('finished');
  });
});
