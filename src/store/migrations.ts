/**
 * Versioned schema migrations, applied in order at start-up inside one transaction each.
 * Never edit a migration that has shipped: append a new one, numbered above every existing one
 * (a database records only its highest version, so a lower number added later would never run
 * on a database that already passed it).
 */
import { voiceUrls } from './migrations-voice-urls.ts';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const migrations: Migration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
      CREATE TABLE kv (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
      );

      -- One row per article URL (canonical). Pages that were fetched but are not articles are kept
      -- too (status 'skipped' with a reason) so the next crawl does not refetch them blindly.
      CREATE TABLE articles (
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        url TEXT NOT NULL UNIQUE,
        title TEXT,
        author TEXT,
        published TEXT,
        body TEXT NOT NULL DEFAULT '',
        content_hash TEXT,
        simhash TEXT,
        status TEXT NOT NULL DEFAULT 'ok' CHECK (status IN ('ok', 'skipped', 'duplicate')),
        skip_reason TEXT,
        duplicate_of INTEGER REFERENCES articles(id),
        first_seen_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
      );
      CREATE INDEX articles_source ON articles(source, status);
      CREATE INDEX articles_hash ON articles(content_hash);

      -- HTTP cache validators and history per fetched URL (listing pages, feeds, articles).
      CREATE TABLE pages (
        url TEXT PRIMARY KEY,
        final_url TEXT,
        etag TEXT,
        last_modified TEXT,
        http_status INTEGER,
        body_hash TEXT,
        redirects TEXT,
        fetched_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
      );

      CREATE TABLE scrape_runs (
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        started_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        ended_at TEXT,
        summary TEXT
      );

      -- Immutable dataset versions; id is the content hash of inputs + settings.
      CREATE TABLE datasets (
        id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        origin TEXT NOT NULL DEFAULT 'build' CHECK (origin IN ('build', 'import')),
        settings TEXT NOT NULL DEFAULT '{}',
        stats TEXT NOT NULL DEFAULT '{}',
        train_count INTEGER NOT NULL DEFAULT 0,
        val_count INTEGER NOT NULL DEFAULT 0,
        jsonl_path TEXT
      );

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
      CREATE INDEX examples_dataset ON examples(dataset_id, split, ordinal);

      -- Adapters: candidates until the evaluation gate promotes one; exactly one may be active.
      CREATE TABLE adapters (
        id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        base_model TEXT NOT NULL,
        dataset_id TEXT REFERENCES datasets(id),
        path TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'candidate'
          CHECK (status IN ('candidate', 'active', 'retired', 'rejected')),
        metrics TEXT NOT NULL DEFAULT '{}',
        eval TEXT,
        reason TEXT,
        promoted_at TEXT
      );
      CREATE UNIQUE INDEX adapters_one_active ON adapters(status) WHERE status = 'active';

      CREATE TABLE train_metrics (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL,
        step INTEGER NOT NULL,
        kind TEXT NOT NULL DEFAULT 'train' CHECK (kind IN ('train', 'eval')),
        loss REAL,
        lr REAL,
        grad_norm REAL,
        tokens_per_s REAL,
        at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
      );
      CREATE INDEX train_metrics_run ON train_metrics(run_id, step);

      CREATE TABLE job_runs (
        id INTEGER PRIMARY KEY,
        job TEXT NOT NULL,
        trigger TEXT NOT NULL DEFAULT 'manual',
        status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled', 'skipped', 'crashed')),
        started_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        ended_at TEXT,
        progress REAL NOT NULL DEFAULT 0,
        message TEXT,
        error TEXT,
        result TEXT,
        pid INTEGER,
        parent_id INTEGER REFERENCES job_runs(id)
      );
      CREATE INDEX job_runs_job ON job_runs(job, status);

      CREATE TABLE job_logs (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES job_runs(id) ON DELETE CASCADE,
        at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        level TEXT NOT NULL DEFAULT 'info',
        line TEXT NOT NULL
      );

      CREATE TABLE generations (
        id TEXT PRIMARY KEY,
        platform TEXT NOT NULL,
        user_id TEXT,
        channel_id TEXT,
        topic TEXT NOT NULL,
        base_model TEXT,
        adapter_id TEXT,
        dataset_id TEXT,
        started_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        duration_ms INTEGER,
        ttft_ms INTEGER,
        n_chars INTEGER,
        outcome TEXT NOT NULL DEFAULT 'running'
          CHECK (outcome IN ('running', 'ok', 'cut', 'cancelled', 'failed', 'refused', 'rate_limited')),
        error TEXT
      );
      CREATE INDEX generations_user ON generations(platform, user_id, started_at);

      CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        platform TEXT NOT NULL,
        user_id TEXT,
        command TEXT NOT NULL,
        args TEXT,
        allowed INTEGER NOT NULL,
        outcome TEXT
      );
    `,
  },
  {
    version: 10,
    name: 'pipeline: crawl frontier',
    sql: `
      -- Every article URL a crawl discovered, with what became of it. A listing or feed that answers
      -- 304 on the next run yields no links, so URLs that failed last time are retried from here.
      CREATE TABLE crawl_urls (
        url TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        found_on TEXT,
        lastmod TEXT,
        status TEXT NOT NULL DEFAULT 'pending'
          CHECK (status IN ('pending', 'done', 'skipped', 'robots', 'failed')),
        reason TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_attempt_at TEXT,
        first_seen_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
      );
      CREATE INDEX crawl_urls_source ON crawl_urls(source, status);
    `,
  },
  {
    version: 40,
    name: 'jobs: run input and training child pid',
    sql: `
      -- What a run was asked to do (JSON), so a crashed retrain can resume with the same settings.
      ALTER TABLE job_runs ADD COLUMN input TEXT;
      -- The training child's pid, besides the owning process's pid in job_runs.pid.
      ALTER TABLE job_runs ADD COLUMN child_pid INTEGER;
      CREATE INDEX job_runs_started ON job_runs(started_at);
      CREATE INDEX job_logs_run ON job_logs(run_id, id);
    `,
  },
  {
    version: 41,
    name: 'jobs: adapter promotion history',
    sql: `
      -- Every change of the active adapter, so rollback knows what was active before.
      -- adapter_id NULL means "base model, no adapter".
      CREATE TABLE adapter_events (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        action TEXT NOT NULL CHECK (action IN ('promote', 'rollback')),
        adapter_id TEXT REFERENCES adapters(id),
        previous_id TEXT REFERENCES adapters(id),
        actor TEXT NOT NULL,
        reason TEXT
      );
      CREATE INDEX adapter_events_adapter ON adapter_events(adapter_id, id);
    `,
  },
  {
    version: 42,
    name: 'bots: Slack request signatures seen',
    sql: `
      -- Signed Slack requests already handled, so a replay within the signature window (same
      -- signature and timestamp) is acknowledged and ignored, across restarts too.
      CREATE TABLE slack_requests_seen (
        signature TEXT PRIMARY KEY,
        request_ts INTEGER NOT NULL,
        seen_at INTEGER NOT NULL
      );
      CREATE INDEX slack_requests_seen_at ON slack_requests_seen(seen_at);
    `,
  },
  {
    version: 43,
    name: 'pipeline: scrape run status',
    sql: `
      -- How each scrape ended: finished, capped (a per-run cap was reached; stop_reason says which),
      -- failed, cancelled, or crashed (its process died; closed by the next scrape or serve start).
      -- pid is the owning process, so a row left open by a dead process can be told from a live one.
      ALTER TABLE scrape_runs ADD COLUMN status TEXT NOT NULL DEFAULT 'running'
        CHECK (status IN ('running', 'finished', 'capped', 'failed', 'cancelled', 'crashed'));
      ALTER TABLE scrape_runs ADD COLUMN pid INTEGER;
      ALTER TABLE scrape_runs ADD COLUMN stop_reason TEXT;
      UPDATE scrape_runs SET status = CASE WHEN json_extract(summary, '$.error') IS NOT NULL THEN 'failed' ELSE 'finished' END
        WHERE ended_at IS NOT NULL;
    `,
  },
  {
    version: 45,
    name: 'jobs: adapters can be failed',
    sql: `
      -- A training that collapsed or did not improve on the untrained model is kept on disk and
      -- listed as 'failed' with the reason, never offered to the gate as a candidate. SQLite cannot
      -- change a CHECK in place: the table is rebuilt, and adapter_events (which references it) is
      -- set aside and restored around the rebuild, so foreign keys hold at every statement.
      CREATE TEMP TABLE adapter_events_saved AS SELECT * FROM adapter_events;
      DROP TABLE adapter_events;
      CREATE TABLE adapters_new (
        id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        base_model TEXT NOT NULL,
        dataset_id TEXT REFERENCES datasets(id),
        path TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'candidate'
          CHECK (status IN ('candidate', 'active', 'retired', 'rejected', 'failed')),
        metrics TEXT NOT NULL DEFAULT '{}',
        eval TEXT,
        reason TEXT,
        promoted_at TEXT
      );
      INSERT INTO adapters_new (id, created_at, base_model, dataset_id, path, status, metrics, eval, reason, promoted_at)
        SELECT id, created_at, base_model, dataset_id, path, status, metrics, eval, reason, promoted_at FROM adapters;
      DROP TABLE adapters;
      ALTER TABLE adapters_new RENAME TO adapters;
      CREATE UNIQUE INDEX adapters_one_active ON adapters(status) WHERE status = 'active';
      CREATE TABLE adapter_events (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        action TEXT NOT NULL CHECK (action IN ('promote', 'rollback')),
        adapter_id TEXT REFERENCES adapters(id),
        previous_id TEXT REFERENCES adapters(id),
        actor TEXT NOT NULL,
        reason TEXT
      );
      INSERT INTO adapter_events (id, at, action, adapter_id, previous_id, actor, reason)
        SELECT id, at, action, adapter_id, previous_id, actor, reason FROM adapter_events_saved;
      DROP TABLE adapter_events_saved;
      CREATE INDEX adapter_events_adapter ON adapter_events(adapter_id, id);
    `,
  },
  {
    version: 46,
    name: 'feedback: ratings, edits, regenerations and article lineage',
    sql: `
      -- What readers said about an article is only useful next to the article itself: the final
      -- text (the body, without the attribution trailer) is kept, with the options it was asked
      -- with (so Regenerate can ask again) and the article it regenerates (parent_id).
      ALTER TABLE generations ADD COLUMN article TEXT;
      ALTER TABLE generations ADD COLUMN options TEXT;
      ALTER TABLE generations ADD COLUMN parent_id TEXT REFERENCES generations(id);
      CREATE INDEX generations_parent ON generations(parent_id);

      -- One row per reader signal. user_id is whoever clicked, who may not be the requester.
      -- adapter_id / dataset_id are copied from the article, so a signal stays attributable to
      -- the model that earned it after the generations table is pruned.
      CREATE TABLE feedback (
        id INTEGER PRIMARY KEY,
        generation_id TEXT NOT NULL REFERENCES generations(id),
        kind TEXT NOT NULL CHECK (kind IN ('rating', 'regenerate', 'pick', 'edit')),
        value INTEGER CHECK (value IS NULL OR value IN (-1, 1)),
        edited_text TEXT,
        platform TEXT NOT NULL,
        user_id TEXT NOT NULL,
        adapter_id TEXT,
        dataset_id TEXT,
        at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
      );
      CREATE INDEX feedback_generation ON feedback(generation_id, kind);

      -- Which platform message shows which article, so a reaction on any part of it counts.
      CREATE TABLE feedback_messages (
        platform TEXT NOT NULL,
        message_id TEXT NOT NULL,
        generation_id TEXT NOT NULL REFERENCES generations(id),
        PRIMARY KEY (platform, message_id)
      );
    `,
  },
  {
    version: 47,
    name: 'columnists: every row belongs to one voice',
    sql: `
      -- Columnists are data (data/columnists/<name>/); every row downstream names its voice.
      -- Rows from before belong to the one voice there was, the default columnist 'morris'
      -- (paths.ts DEFAULT_COLUMNIST_NAME), which is also what a writer that names none gets.
      ALTER TABLE articles ADD COLUMN columnist TEXT NOT NULL DEFAULT 'morris';
      CREATE INDEX articles_columnist ON articles(columnist, status);
      ALTER TABLE datasets ADD COLUMN columnist TEXT NOT NULL DEFAULT 'morris';
      CREATE INDEX datasets_columnist ON datasets(columnist, created_at);
      ALTER TABLE adapters ADD COLUMN columnist TEXT NOT NULL DEFAULT 'morris';
      -- One active adapter per columnist, no longer one in all.
      DROP INDEX adapters_one_active;
      CREATE UNIQUE INDEX adapters_one_active ON adapters(columnist) WHERE status = 'active';
      ALTER TABLE adapter_events ADD COLUMN columnist TEXT NOT NULL DEFAULT 'morris';
      ALTER TABLE generations ADD COLUMN columnist TEXT NOT NULL DEFAULT 'morris';
      -- Jobs about a voice (the chain) name it; others (backups) stay NULL.
      ALTER TABLE job_runs ADD COLUMN columnist TEXT;
      UPDATE job_runs SET columnist = 'morris' WHERE job IN ('rescrape', 'rebuild', 'retrain', 'evaluate');
    `,
  },
  {
    version: 48,
    name: 'generations: how an article came to be (a first ask, a regeneration, a revision)',
    sql: `
      -- A regeneration asks the same again and a revision asks for a change: only the first are
      -- alternatives to one another (a preference pair needs one prompt), so the link says which.
      -- Before this, parent_id was set by Regenerate only.
      ALTER TABLE generations ADD COLUMN kind TEXT NOT NULL DEFAULT 'ask' CHECK (kind IN ('ask', 'regenerate', 'revise'));
      ALTER TABLE generations ADD COLUMN instruction TEXT;
      UPDATE generations SET kind = 'regenerate' WHERE parent_id IS NOT NULL;
    `,
  },
  voiceUrls,
];
