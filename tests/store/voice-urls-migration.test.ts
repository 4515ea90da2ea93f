/**
 * Migration 49: an article URL is unique per columnist, not across them. A database at version 48
 * opens with every row of articles, examples, crawl_urls and pages kept (ids and foreign references
 * included); then two voices can store the same URL, and two voices scraping the same public site
 * each get every article as their own (neither sees the other's frontier or HTTP validators).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { latestSchemaVersion, openStore, schemaVersion, type Store } from '../../src/store/db.ts';
import { migrations } from '../../src/store/migrations.ts';
import { articleByUrl, okArticleCount, saveArticle } from '../../src/store/articles.ts';
import { addFoundUrl, crawlUrl, markUrl } from '../../src/store/crawl-urls.ts';
import { pageValidators, savePage } from '../../src/store/crawl-pages.ts';
import { loadProfile } from '../../src/pipeline/crawl/profile.ts';
import { scrapeSource } from '../../src/pipeline/crawl/scrape.ts';
import { startSampleSite } from '../../src/pipeline/crawl/sample-site.ts';
import { COLUMNISTS_DIR } from '../../src/paths.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-mig49-'));
  dirs.push(dir);
  return dir;
}

/** A database exactly as the code before migration 49 left it, with rows in every rebuilt table. */
function databaseAt48(): string {
  const file = path.join(tempDir(), 'morris.db');
  const db = new Database(file);
  db.pragma('foreign_keys = ON');
  for (const m of migrations.filter((m) => m.version <= 48)) db.exec(m.sql);
  db.pragma('user_version = 48');
  db.exec(`
    INSERT INTO articles (id, source, url, title, body, content_hash, status, duplicate_of, columnist) VALUES
      (1, 'sample-archive', 'https://x.test/a', 'A', 'body a', 'h1', 'ok', NULL, 'morris'),
      (2, 'sample-archive', 'https://x.test/b', 'B', 'body a', 'h1', 'duplicate', 1, 'morris'),
      (7, 'rival/archive', 'https://y.test/c', 'C', 'body c', 'h3', 'ok', NULL, 'rival'),
      (9, 'sample-archive', 'https://x.test/skip', NULL, '', NULL, 'skipped', NULL, 'morris');
    INSERT INTO datasets (id, origin, train_count, val_count, columnist) VALUES ('ds-m', 'build', 2, 0, 'morris'), ('ds-r', 'build', 1, 0, 'rival');
    INSERT INTO examples (id, dataset_id, split, article_id, kind, messages, n_tokens, ordinal) VALUES
      (5, 'ds-m', 'train', 1, 'article', '[1]', 10, 0),
      (6, 'ds-m', 'train', NULL, 'extra', '[2]', 11, 1),
      (8, 'ds-r', 'train', 7, 'article', '[3]', 12, 0);
    INSERT INTO crawl_urls (url, source, found_on, lastmod, status, reason, attempts) VALUES
      ('https://x.test/a', 'sample-archive', 'https://x.test/', '2024-01-01', 'done', NULL, 0),
      ('https://x.test/gone', 'sample-archive', 'https://x.test/', NULL, 'failed', 'HTTP 500', 2),
      ('https://y.test/c', 'rival/archive', 'https://y.test/', NULL, 'done', NULL, 0);
    INSERT INTO pages (url, final_url, etag, last_modified, http_status, body_hash) VALUES
      ('https://x.test/a', 'https://x.test/a', '"e-a"', NULL, 200, 'b-a'),
      ('https://y.test/c', 'https://y.test/c', '"e-c"', NULL, 200, 'b-c'),
      ('https://x.test/', 'https://x.test/', '"e-list"', 'Mon, 01 Jan 2024 00:00:00 GMT', 200, 'b-l');
    -- A DPO run from before columnists (migration 47 named no voice for it) and one for a voice.
    INSERT INTO job_runs (job, trigger, status, result, columnist) VALUES
      ('dpo', 'new-pairs', 'succeeded', '{"pairs": 12}', NULL),
      ('dpo', 'new-pairs', 'succeeded', '{"pairs": 3}', 'rival'),
      ('backup', 'cron', 'succeeded', NULL, NULL);
  `);
  db.close();
  return file;
}

const rows = (store: Store, sql: string) => store.prepare(sql).all();

describe('migration 49: article URLs unique per columnist', () => {
  it('a database at 48 opens with every row, id and reference kept', () => {
    const store = openStore(databaseAt48());
    try {
      expect(schemaVersion(store)).toBe(latestSchemaVersion());
      expect(latestSchemaVersion()).toBe(49);
      expect(rows(store, 'SELECT id, source, url, title, body, content_hash, status, duplicate_of, columnist FROM articles ORDER BY id')).toEqual([
        { id: 1, source: 'sample-archive', url: 'https://x.test/a', title: 'A', body: 'body a', content_hash: 'h1', status: 'ok', duplicate_of: null, columnist: 'morris' },
        { id: 2, source: 'sample-archive', url: 'https://x.test/b', title: 'B', body: 'body a', content_hash: 'h1', status: 'duplicate', duplicate_of: 1, columnist: 'morris' },
        { id: 7, source: 'rival/archive', url: 'https://y.test/c', title: 'C', body: 'body c', content_hash: 'h3', status: 'ok', duplicate_of: null, columnist: 'rival' },
        { id: 9, source: 'sample-archive', url: 'https://x.test/skip', title: null, body: '', content_hash: null, status: 'skipped', duplicate_of: null, columnist: 'morris' },
      ]);
      expect(rows(store, 'SELECT id, dataset_id, split, article_id, kind, messages, n_tokens, ordinal FROM examples ORDER BY id')).toEqual([
        { id: 5, dataset_id: 'ds-m', split: 'train', article_id: 1, kind: 'article', messages: '[1]', n_tokens: 10, ordinal: 0 },
        { id: 6, dataset_id: 'ds-m', split: 'train', article_id: null, kind: 'extra', messages: '[2]', n_tokens: 11, ordinal: 1 },
        { id: 8, dataset_id: 'ds-r', split: 'train', article_id: 7, kind: 'article', messages: '[3]', n_tokens: 12, ordinal: 0 },
      ]);
      // The frontier's voice comes from its source key ('<columnist>/<profile>' for all but the default).
      expect(rows(store, 'SELECT columnist, url, source, status, reason, attempts, lastmod FROM crawl_urls ORDER BY url')).toEqual([
        { columnist: 'morris', url: 'https://x.test/a', source: 'sample-archive', status: 'done', reason: null, attempts: 0, lastmod: '2024-01-01' },
        { columnist: 'morris', url: 'https://x.test/gone', source: 'sample-archive', status: 'failed', reason: 'HTTP 500', attempts: 2, lastmod: null },
        { columnist: 'rival', url: 'https://y.test/c', source: 'rival/archive', status: 'done', reason: null, attempts: 0, lastmod: null },
      ]);
      // Validators go to the voice whose article or frontier URL the page is; listings to the default voice.
      expect(rows(store, 'SELECT columnist, url, etag, last_modified, body_hash FROM pages ORDER BY url')).toEqual([
        { columnist: 'morris', url: 'https://x.test/', etag: '"e-list"', last_modified: 'Mon, 01 Jan 2024 00:00:00 GMT', body_hash: 'b-l' },
        { columnist: 'morris', url: 'https://x.test/a', etag: '"e-a"', last_modified: null, body_hash: 'b-a' },
        { columnist: 'rival', url: 'https://y.test/c', etag: '"e-c"', last_modified: null, body_hash: 'b-c' },
      ]);
      // The old DPO run is the default voice's now, so its new pairs count from its 12, not from 0.
      expect(rows(store, 'SELECT job, columnist FROM job_runs ORDER BY id')).toEqual([
        { job: 'dpo', columnist: 'morris' },
        { job: 'dpo', columnist: 'rival' },
        { job: 'backup', columnist: null },
      ]);
      expect(store.pragma('foreign_key_check')).toEqual([]);
      // The references still bite: an example cannot point at an article that is not there.
      expect(() => store.prepare(`INSERT INTO examples (dataset_id, split, article_id, messages, ordinal) VALUES ('ds-m', 'train', 999, '[]', 2)`).run()).toThrow(/FOREIGN KEY/);
      expect(() => store.prepare('DELETE FROM articles WHERE id = 1').run()).toThrow(/FOREIGN KEY/);
      // The rebuilt tables keep their indexes.
      const indexes = (rows(store, `SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%'`) as { name: string }[]).map((r) => r.name);
      expect(indexes).toEqual(expect.arrayContaining(['articles_source', 'articles_hash', 'articles_columnist', 'examples_dataset', 'crawl_urls_source']));
    } finally {
      store.close();
    }
  });

  it('then two voices can store the same URL, each its own article, frontier row and validators', () => {
    const store = openStore(databaseAt48());
    try {
      const url = 'https://x.test/a';
      saveArticle(store, { source: 'house/archive', url, title: 'A for the house', author: null, published: null, body: 'body a', contentHash: 'h1', columnist: 'house' });
      expect(articleByUrl(store, url)).toMatchObject({ id: 1 });
      expect(articleByUrl(store, url, 'house')).toMatchObject({ status: 'ok' });
      expect(articleByUrl(store, url, 'house')!.id).not.toBe(1);
      // Saving again is an update of the voice's own row, not a second one, and not the other voice's.
      saveArticle(store, { source: 'house/archive', url, title: 'A again', author: null, published: null, body: 'body a2', contentHash: 'h2', columnist: 'house' });
      expect(rows(store, `SELECT columnist, title FROM articles WHERE url = '${url}' ORDER BY columnist`)).toEqual([
        { columnist: 'house', title: 'A again' },
        { columnist: 'morris', title: 'A' },
      ]);
      addFoundUrl(store, { url, source: 'house/archive', foundOn: 'https://x.test/', lastmod: null, columnist: 'house' });
      expect(crawlUrl(store, url)).toMatchObject({ status: 'done' });
      expect(crawlUrl(store, url, 'house')).toMatchObject({ status: 'pending' });
      markUrl(store, url, 'failed', 'HTTP 503', 'house');
      expect(crawlUrl(store, url, 'house')).toMatchObject({ status: 'failed', attempts: 1 });
      expect(crawlUrl(store, url)).toMatchObject({ status: 'done', attempts: 0 });
      expect(pageValidators(store, url, 'house')).toBeUndefined();
      savePage(store, { url, finalUrl: url, status: 200, etag: '"e-house"', lastModified: null, truncated: false, bodyHash: 'bh', redirects: [] }, 'house');
      expect(pageValidators(store, url, 'house')).toMatchObject({ etag: '"e-house"' });
      expect(pageValidators(store, url)).toMatchObject({ etag: '"e-a"' });
    } finally {
      store.close();
    }
  });

  it('two voices scraping the same site each get every article; a rescrape finds them unchanged', async () => {
    const site = await startSampleSite({ port: 0 });
    const store = openStore(path.join(tempDir(), 'morris.db'));
    try {
      const profile = (name: string) => ({ ...loadProfile('sample-archive', { dir: path.join(COLUMNISTS_DIR, 'morris', 'sources'), baseUrl: site.url }), name });
      const fetch = { userAgent: 'MorrisBot/test', rateLimitRps: 500, hostConcurrency: 4, timeoutMs: 3000, retries: 1, maxBytes: 2_000_000 };
      const first = await scrapeSource(store, profile('sample-archive'), { fetch });
      const second = await scrapeSource(store, profile('archive'), { fetch, columnist: 'house' });
      expect(first.new).toBeGreaterThan(20);
      // Before migration 49 the house voice found every URL settled by the first and stored nothing.
      expect(second.new).toBe(first.new);
      expect(okArticleCount(store, 'house')).toBe(okArticleCount(store, 'morris'));
      const again = await scrapeSource(store, profile('archive'), { fetch, columnist: 'house' });
      expect([again.new, again.updated]).toEqual([0, 0]);
    } finally {
      store.close();
      await site.close();
    }
  }, 60_000);
});
