import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseFrontMatter, readArticleFolder, SAMPLE_ARCHIVE_DIR, startSampleSite, type SampleSite } from '../../src/pipeline/crawl/sample-site.ts';
import { parseFeed, parseListing, parseSitemap } from '../../src/pipeline/crawl/discover.ts';
import { extractArticle } from '../../src/pipeline/extract/article.ts';
import { loadProfile } from '../../src/pipeline/crawl/profile.ts';
import { scrapeSource } from '../../src/pipeline/crawl/scrape.ts';
import { openStore } from '../../src/store/db.ts';

let site: SampleSite;
const archive = readArticleFolder(SAMPLE_ARCHIVE_DIR);

beforeAll(async () => {
  site = await startSampleSite({ pageSize: 5 });
});
afterAll(() => site.close());

const get = (p: string, headers: Record<string, string> = {}) => fetch(`${site.url}${p}`, { headers, redirect: 'manual' });

describe('sample site', () => {
  it('serves robots.txt with a sitemap and a disallow rule', async () => {
    const r = await get('/robots.txt');
    const text = await r.text();
    expect(text).toContain('Disallow: /admin/');
    expect(text).toContain(`Sitemap: ${site.url}/sitemap.xml`);
  });

  it('paginates the listing over every article, newest first', async () => {
    const seen: string[] = [];
    let next: string | null = `${site.url}/columns/`;
    let pages = 0;
    while (next) {
      const html = await (await fetch(next)).text();
      const page = parseListing(html, next, { links: 'article.teaser h2 a', next: 'a[rel=next]' });
      seen.push(...page.links);
      next = page.next;
      pages++;
    }
    expect(pages).toBe(Math.ceil(archive.length / 5));
    expect(seen).toHaveLength(archive.length);
    const newest = [...archive].sort((a, b) => b.published.localeCompare(a.published))[0];
    expect(seen[0]).toBe(`${site.url}/columns/${newest.slug}/`);
  });

  it('has an RSS feed and a sitemap index that lead to the articles', async () => {
    const items = parseFeed(await (await get('/feed.xml')).text(), `${site.url}/feed.xml`);
    expect(items.length).toBe(Math.min(10, archive.length));
    expect(items[0].author).toBe(archive[0].author);
    expect(items[0].url).toMatch(/\/columns\/[a-z0-9-]+\/$/); // tracking params canonicalised away
    const index = parseSitemap(await (await get('/sitemap.xml')).text(), `${site.url}/sitemap.xml`);
    expect(index.sitemaps).toEqual([`${site.url}/sitemap-columns.xml`, `${site.url}/sitemap-pages.xml`]);
    const columns = parseSitemap(await (await get('/sitemap-columns.xml')).text(), index.sitemaps[0]);
    expect(columns.urls).toHaveLength(archive.length);
    expect(columns.urls.every((u) => u.lastmod)).toBe(true);
  });

  it('article pages carry metadata and boilerplate, and the extractor recovers the column', async () => {
    const a = archive.find((x) => !x.slug.endsWith('dup')) ?? archive[0];
    const html = await (await get(`/columns/${a.slug}/`)).text();
    expect(html).toContain('"@type":"NewsArticle"');
    expect(html).toContain('property="og:title"');
    expect(html).toContain('Subscribe to our daily newsletter');
    expect(html).toContain('Related columns');
    const ex = extractArticle(html, `${site.url}/columns/${a.slug}/`);
    expect(ex.title).toBe(a.title);
    expect(ex.author === a.author || (Array.isArray(ex.author) && ex.author.includes(a.author))).toBe(true);
    const firstPara = a.body.split(/\n\s*\n/)[0].replace(/[*_]/g, '').slice(0, 60);
    expect(ex.body).toContain(firstPara);
    expect(ex.body).not.toContain('Related columns');
  });

  it('answers 304 to matching validators and 404 to unknown pages', async () => {
    const first = await get(`/columns/${archive[0].slug}/`);
    const etag = first.headers.get('etag')!;
    const lastModified = first.headers.get('last-modified')!;
    expect(etag).toBeTruthy();
    expect((await get(`/columns/${archive[0].slug}/`, { 'if-none-match': etag })).status).toBe(304);
    expect((await get(`/columns/${archive[0].slug}/`, { 'if-modified-since': lastModified })).status).toBe(304);
    expect((await get('/columns/no-such-column/')).status).toBe(404);
    expect((await get('/')).status).toBe(301);
    expect(site.requests.some((r) => r.endsWith(' 304'))).toBe(true);
  });

  it('reads front matter', () => {
    const { meta, body } = parseFrontMatter('---\ntitle: "A \\"quoted\\" title"\nauthor: Ian Morrow\npublished: 2024-01-01\n---\nBody here.\n');
    expect(meta).toEqual({ title: 'A "quoted" title', author: 'Ian Morrow', published: '2024-01-01' });
    expect(body).toBe('Body here.');
  });

  it('is crawled end to end by the sample-archive profile, and picks up an edited file', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-sample-'));
    const articles = path.join(dir, 'articles');
    fs.cpSync(SAMPLE_ARCHIVE_DIR, articles, { recursive: true });
    const own = await startSampleSite({ dir: articles });
    const store = openStore(path.join(dir, 'morris.db'));
    try {
      const fetchOpts = { userAgent: 'MorrisBot/test', rateLimitRps: 500, hostConcurrency: 4, timeoutMs: 3000, retries: 1, maxBytes: 2_000_000 };
      const profile = loadProfile('sample-archive', { baseUrl: own.url });
      const s1 = await scrapeSource(store, profile, { fetch: fetchOpts });
      expect(s1.new).toBe(archive.length);
      expect(s1.failed).toEqual([]);
      const file = path.join(articles, fs.readdirSync(articles).filter((f) => f.endsWith('.md'))[0]);
      fs.appendFileSync(file, '\n\nA postscript: the consultants have been called in. What could possibly go wrong?\n');
      fs.utimesSync(file, new Date(Date.now() + 120_000), new Date(Date.now() + 120_000));
      const s2 = await scrapeSource(store, profile, { fetch: fetchOpts });
      expect(s2).toMatchObject({ new: 0, updated: 1 });
    } finally {
      store.close();
      await own.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
