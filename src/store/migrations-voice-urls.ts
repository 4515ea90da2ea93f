/**
 * Migration 49, in a file of its own for length: an article URL is unique per columnist, not
 * across them; and DPO runs from before columnists are the default voice's (listed in
 * migrations.ts with the others; never edit it once shipped).
 */
import type { Migration } from './migrations.ts';

export const voiceUrls: Migration = {
  version: 49,
  name: 'columnists: an article URL is unique per voice, not across voices',
  sql: `
    -- Two voices may learn from the same public page (a house style reading the columnist's own
    -- articles), so articles, the crawl frontier and the HTTP validators are keyed by
    -- (columnist, url). SQLite cannot change a UNIQUE in place: each table is rebuilt with every
    -- row and id kept. examples references articles: it is set aside and restored around the
    -- rebuild, and articles_new refers to itself (renamed with it), so foreign keys hold at
    -- every statement.
    CREATE TEMP TABLE examples_saved AS SELECT * FROM examples;
    DROP TABLE examples;
    CREATE TABLE articles_new (
      id INTEGER PRIMARY KEY,
      source TEXT NOT NULL,
      url TEXT NOT NULL,
      title TEXT,
      author TEXT,
      published TEXT,
      body TEXT NOT NULL DEFAULT '',
      content_hash TEXT,
      simhash TEXT,
      status TEXT NOT NULL DEFAULT 'ok' CHECK (status IN ('ok', 'skipped', 'duplicate')),
      skip_reason TEXT,
      duplicate_of INTEGER REFERENCES articles_new(id),
      first_seen_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
      updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
      columnist TEXT NOT NULL DEFAULT 'morris',
      UNIQUE (columnist, url)
    );
    INSERT INTO articles_new (id, source, url, title, author, published, body, content_hash, simhash, status, skip_reason, duplicate_of, first_seen_at, updated_at, columnist)
      SELECT id, source, url, title, author, published, body, content_hash, simhash, status, skip_reason, duplicate_of, first_seen_at, updated_at, columnist FROM articles ORDER BY id;
    DROP TABLE articles;
    ALTER TABLE articles_new RENAME TO articles;
    CREATE INDEX articles_source ON articles(source, status);
    CREATE INDEX articles_hash ON articles(content_hash);
    CREATE INDEX articles_columnist ON articles(columnist, status);
    CREATE TABLE examples (
      id INTEGER PRIMARY KEY,
      dataset_id TEXT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
      split TEXT NOT NULL CHECK (split IN ('train', 'validation')),
      article_id INTEGER REFERENCES articles(id),
      kind TEXT NOT NULL DEFAULT 'article' CHECK (kind IN ('article', 'extra', 'import')),
      messages TEXT NOT NULL,
      n_tokens INTEGER,
      ordinal INTEGER NOT NULL
    );
    INSERT INTO examples (id, dataset_id, split, article_id, kind, messages, n_tokens, ordinal)
      SELECT id, dataset_id, split, article_id, kind, messages, n_tokens, ordinal FROM examples_saved;
    DROP TABLE examples_saved;
    CREATE INDEX examples_dataset ON examples(dataset_id, split, ordinal);

    -- The frontier's rows name their voice in the source already (scrape.ts sourceKey:
    -- '<columnist>/<profile>' for all but the default columnist); now in a column of its own.
    CREATE TABLE crawl_urls_new (
      columnist TEXT NOT NULL DEFAULT 'morris',
      url TEXT NOT NULL,
      source TEXT NOT NULL,
      found_on TEXT,
      lastmod TEXT,
      status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'done', 'skipped', 'robots', 'failed')),
      reason TEXT,
      attempts INTEGER NOT NULL DEFAULT 0,
      last_attempt_at TEXT,
      first_seen_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
      PRIMARY KEY (columnist, url)
    );
    INSERT INTO crawl_urls_new (columnist, url, source, found_on, lastmod, status, reason, attempts, last_attempt_at, first_seen_at)
      SELECT CASE WHEN instr(source, '/') > 0 THEN substr(source, 1, instr(source, '/') - 1) ELSE 'morris' END,
             url, source, found_on, lastmod, status, reason, attempts, last_attempt_at, first_seen_at FROM crawl_urls;
    DROP TABLE crawl_urls;
    ALTER TABLE crawl_urls_new RENAME TO crawl_urls;
    CREATE INDEX crawl_urls_source ON crawl_urls(source, status);

    -- A page's validators belong to the voice that fetched it (another voice's 304 would hide the
    -- body from a voice that never read it). A page known as a voice's article or frontier URL
    -- goes to each such voice; any other (listings, feeds) to the default columnist.
    CREATE TABLE pages_new (
      columnist TEXT NOT NULL DEFAULT 'morris',
      url TEXT NOT NULL,
      final_url TEXT,
      etag TEXT,
      last_modified TEXT,
      http_status INTEGER,
      body_hash TEXT,
      redirects TEXT,
      fetched_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
      PRIMARY KEY (columnist, url)
    );
    INSERT INTO pages_new (columnist, url, final_url, etag, last_modified, http_status, body_hash, redirects, fetched_at)
      SELECT v.columnist, p.url, p.final_url, p.etag, p.last_modified, p.http_status, p.body_hash, p.redirects, p.fetched_at
      FROM pages p JOIN (
        SELECT url, columnist FROM crawl_urls UNION SELECT url, columnist FROM articles
      ) v ON v.url = p.url;
    INSERT INTO pages_new (columnist, url, final_url, etag, last_modified, http_status, body_hash, redirects, fetched_at)
      SELECT 'morris', url, final_url, etag, last_modified, http_status, body_hash, redirects, fetched_at FROM pages
      WHERE url NOT IN (SELECT url FROM crawl_urls UNION SELECT url FROM articles);
    DROP TABLE pages;
    ALTER TABLE pages_new RENAME TO pages;

    -- DPO runs are about a voice too (each voice's new pairs count from its own last DPO run);
    -- migration 47 left the ones from before it to no one, and they were the default voice's.
    UPDATE job_runs SET columnist = 'morris' WHERE job = 'dpo' AND columnist IS NULL;
  `,
};
