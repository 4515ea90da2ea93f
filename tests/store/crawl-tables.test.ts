/**
 * The crawl's table owners on a real SQLite file: articles (saved, skipped, marked duplicate,
 * counted), the crawl frontier (found, marked, retried, pending), page validators, scrape runs.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/store/db.ts';
import { articleByUrl, articleCounts, articleTexts, markDuplicates, okArticleCount, saveArticle, saveSkippedArticle } from '../../src/store/articles.ts';
import { addFoundUrl, crawlUrl, markUrl, pendingUrlCount, retryableUrls } from '../../src/store/crawl-urls.ts';
import { pageValidators, savePage, type FetchedPage } from '../../src/store/crawl-pages.ts';
import { closeScrapeRun, openScrapeRun, scrapesBySource } from '../../src/store/scrape-runs.ts';

let dir: string;
let store: Store;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-crawl-tables-'));
  store = openStore(path.join(dir, 'morris.db'));
});
afterEach(() => {
  store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const article = (url: string, body = 'body', source = 'a') => ({ source, url, title: 'T', author: null, published: null, body, contentHash: `h-${body}` });

describe('store/articles', () => {
  it('saves, replaces and reads articles; a skip never replaces an article', () => {
    saveArticle(store, article('https://a/1'));
    saveSkippedArticle(store, { source: 'a', url: 'https://a/1', title: null, reason: 'no title' });
    expect(articleByUrl(store, 'https://a/1')).toMatchObject({ status: 'ok', content_hash: 'h-body' });
    saveArticle(store, article('https://a/1', 'new body'));
    expect(articleByUrl(store, 'https://a/1')?.content_hash).toBe('h-new body');
    expect(articleByUrl(store, 'https://a/none')).toBeUndefined();
  });

  it('a skipped URL becomes an article when it is saved as one', () => {
    saveSkippedArticle(store, { source: 'a', url: 'https://a/2', title: null, reason: 'no title' });
    expect(articleByUrl(store, 'https://a/2')?.status).toBe('skipped');
    saveArticle(store, article('https://a/2'));
    expect(articleByUrl(store, 'https://a/2')?.status).toBe('ok');
  });

  it('reads build inputs by source, marks duplicates, and counts', () => {
    saveArticle(store, article('https://a/1'));
    saveArticle(store, article('https://a/2'));
    saveArticle(store, article('https://b/1', 'body', 'b'));
    saveSkippedArticle(store, { source: 'a', url: 'https://a/3', title: null, reason: 'no title' });
    const [first, second] = articleTexts(store, 'a');
    expect(articleTexts(store, 'a').map((a) => a.url)).toEqual(['https://a/1', 'https://a/2']);
    markDuplicates(store, [
      { id: first!.id, duplicateOf: null },
      { id: second!.id, duplicateOf: first!.id },
    ]);
    expect(articleByUrl(store, 'https://a/2')?.status).toBe('duplicate');
    // Duplicates stay build inputs: the next build decides afresh.
    expect(articleTexts(store).map((a) => a.url)).toEqual(['https://a/1', 'https://a/2', 'https://b/1']);
    expect(okArticleCount(store)).toBe(2);
    expect(articleCounts(store).map(({ source, status, n }) => [source, status, n])).toEqual([
      ['a', 'duplicate', 1],
      ['a', 'ok', 1],
      ['a', 'skipped', 1],
      ['b', 'ok', 1],
    ]);
  });
});

describe('store/crawl-urls', () => {
  it('adds found URLs as pending, keeps the newest lastmod, and counts failures in a row', () => {
    addFoundUrl(store, { url: 'https://a/1', source: 'a', foundOn: 'https://a/', lastmod: '2024-01-01' });
    addFoundUrl(store, { url: 'https://a/1', source: 'a', foundOn: 'https://a/', lastmod: null });
    expect(crawlUrl(store, 'https://a/1')).toEqual({ url: 'https://a/1', status: 'pending', attempts: 0, found_on: 'https://a/', lastmod: '2024-01-01' });
    expect(pendingUrlCount(store, 'a')).toBe(1);
    markUrl(store, 'https://a/1', 'failed', 'HTTP 500');
    markUrl(store, 'https://a/1', 'failed', 'HTTP 500');
    expect(crawlUrl(store, 'https://a/1')).toMatchObject({ status: 'failed', attempts: 2 });
    expect(retryableUrls(store, 'a', 3).map((r) => r.url)).toEqual(['https://a/1']);
    expect(retryableUrls(store, 'a', 2)).toEqual([]);
    markUrl(store, 'https://a/1', 'done', null);
    expect(crawlUrl(store, 'https://a/1')).toMatchObject({ status: 'done', attempts: 0 });
    expect(pendingUrlCount(store, 'a')).toBe(0);
    expect(retryableUrls(store, 'a', 3)).toEqual([]);
  });
});

describe('store/crawl-pages', () => {
  const page = (o: Partial<FetchedPage> = {}): FetchedPage => ({
    url: 'https://a/1', finalUrl: 'https://a/1', status: 200, etag: '"e1"', lastModified: 'Mon, 01 Jan 2024 00:00:00 GMT', truncated: false, bodyHash: 'h', redirects: [], ...o,
  });

  it('keeps validators across a 304 without them and an error page, and drops those of a capped body', () => {
    savePage(store, page());
    savePage(store, page({ status: 304, etag: null, lastModified: null, bodyHash: null }));
    expect(pageValidators(store, 'https://a/1')).toMatchObject({ etag: '"e1"', last_modified: 'Mon, 01 Jan 2024 00:00:00 GMT' });
    savePage(store, page({ status: 500, etag: '"err"' }));
    expect(pageValidators(store, 'https://a/1')?.etag).toBe('"e1"');
    savePage(store, page({ url: 'https://a/2', truncated: true }));
    expect(pageValidators(store, 'https://a/2')).toMatchObject({ etag: null, last_modified: null });
    expect(pageValidators(store, 'https://a/none')).toBeUndefined();
  });
});

describe('store/scrape-runs', () => {
  it('summarises runs per source', () => {
    const r1 = openScrapeRun(store, 'a');
    closeScrapeRun(store, r1, { status: 'finished', stopReason: null, summary: {} });
    openScrapeRun(store, 'a');
    openScrapeRun(store, 'b');
    const bySource = scrapesBySource(store);
    expect(bySource.map((s) => [s.source, s.runs, s.ended_at !== null])).toEqual([
      ['a', 2, true],
      ['b', 1, false],
    ]);
  });
});
