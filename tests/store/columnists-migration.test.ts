/**
 * Migration 47 (columnists are data): a database written before it opens with today's code, and
 * every row in it belongs to the default columnist; nothing is lost, and the adapter that was
 * active stays the default columnist's active one while another voice may now have its own.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { latestSchemaVersion, openStore, schemaVersion, type Store } from '../../src/store/db.ts';
import { migrations } from '../../src/store/migrations.ts';
import { DEFAULT_COLUMNIST_NAME } from '../../src/paths.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

/** A database file exactly as the code before migration 47 left it, with a row in every table a voice owns. */
function databaseAt46(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-mig47-'));
  dirs.push(dir);
  const file = path.join(dir, 'morris.db');
  const db = new Database(file);
  db.pragma('foreign_keys = ON');
  for (const m of migrations.filter((m) => m.version <= 46)) db.exec(m.sql);
  db.pragma('user_version = 46');
  db.exec(`
    INSERT INTO articles (id, source, url, title, body, status) VALUES
      (1, 'sample-archive', 'https://x.test/a', 'A', 'body a', 'ok'),
      (2, 'sample-archive', 'https://x.test/b', 'B', 'body b', 'duplicate'),
      (3, 'sample-archive', 'https://x.test/c', NULL, '', 'skipped');
    INSERT INTO datasets (id, origin, train_count, val_count) VALUES ('ds-old', 'build', 1, 1), ('ds-imp', 'import', 2, 0);
    INSERT INTO examples (dataset_id, split, article_id, kind, messages, ordinal) VALUES ('ds-old', 'train', 1, 'article', '[]', 0);
    INSERT INTO adapters (id, base_model, dataset_id, path, status) VALUES
      ('lora-1', 'tiny', 'ds-old', 'models/adapters/lora-1', 'retired'),
      ('lora-2', 'tiny', 'ds-old', 'models/adapters/lora-2', 'active'),
      ('lora-3', 'tiny', 'ds-imp', 'models/adapters/lora-3', 'candidate');
    INSERT INTO adapter_events (action, adapter_id, previous_id, actor, reason) VALUES ('promote', 'lora-2', 'lora-1', 'evaluate', 'better');
    INSERT INTO generations (id, platform, user_id, channel_id, topic, adapter_id, dataset_id, outcome, article) VALUES
      ('g1', 'slack', 'U1', 'C1', 'late trains', 'lora-2', 'ds-old', 'ok', 'text');
    INSERT INTO feedback (generation_id, kind, value, platform, user_id, adapter_id) VALUES ('g1', 'rating', 1, 'slack', 'U2', 'lora-2');
    INSERT INTO job_runs (job, trigger, status) VALUES ('retrain', 'cron', 'succeeded'), ('backup', 'cron', 'succeeded');
    INSERT INTO kv (key, value) VALUES ('dataset:current', 'ds-old');
  `);
  db.close();
  return file;
}

function count(store: Store, table: string): number {
  return (store.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n;
}

describe('migration 47: columnists', () => {
  it('opens a database from before columnists, everything attributed to the default columnist, nothing lost', () => {
    const file = databaseAt46();
    const store = openStore(file);
    try {
      expect(schemaVersion(store)).toBe(latestSchemaVersion());
      expect(DEFAULT_COLUMNIST_NAME).toBe('morris'); // the literal migration 47 writes
      // Nothing lost: the same rows, with their own values.
      expect(count(store, 'articles')).toBe(3);
      expect(count(store, 'examples')).toBe(1);
      expect(count(store, 'feedback')).toBe(1);
      expect(store.prepare('SELECT id, status FROM adapters ORDER BY id').all()).toEqual([
        { id: 'lora-1', status: 'retired' },
        { id: 'lora-2', status: 'active' },
        { id: 'lora-3', status: 'candidate' },
      ]);
      expect(store.prepare('SELECT adapter_id, previous_id FROM adapter_events').all()).toEqual([{ adapter_id: 'lora-2', previous_id: 'lora-1' }]);
      // Everything belongs to the default columnist.
      for (const table of ['articles', 'datasets', 'adapters', 'adapter_events', 'generations']) {
        expect(store.prepare(`SELECT DISTINCT columnist FROM ${table}`).all(), table).toEqual([{ columnist: 'morris' }]);
      }
      // Chain jobs are the default voice's; a backup is nobody's.
      expect(store.prepare('SELECT job, columnist FROM job_runs ORDER BY id').all()).toEqual([
        { job: 'retrain', columnist: 'morris' },
        { job: 'backup', columnist: null },
      ]);
      expect(store.prepare("SELECT value FROM kv WHERE key = 'dataset:current'").get()).toEqual({ value: 'ds-old' });
      // One active adapter per columnist now: the default keeps its one, another voice gets its own.
      expect(() => store.prepare("UPDATE adapters SET status = 'active' WHERE id = 'lora-3'").run()).toThrow(/UNIQUE/);
      store.prepare("INSERT INTO adapters (id, base_model, path, status, columnist) VALUES ('lora-9', 'tiny', 'p9', 'active', 'house-style')").run();
      expect(store.prepare("SELECT id, columnist FROM adapters WHERE status = 'active' ORDER BY id").all()).toEqual([
        { id: 'lora-2', columnist: 'morris' },
        { id: 'lora-9', columnist: 'house-style' },
      ]);
      expect(store.pragma('foreign_key_check')).toEqual([]);
    } finally {
      store.close();
    }
  });

  it('backs the old database up, as it was, before changing it', () => {
    const file = databaseAt46();
    openStore(file).close();
    const backups = fs
      .readdirSync(path.dirname(file), { recursive: true })
      .map(String)
      .filter((f) => f.includes(`before-v${latestSchemaVersion()}`) && f.endsWith('.db'));
    expect(backups).toHaveLength(1);
    const old = new Database(path.join(path.dirname(file), backups[0]!), { readonly: true });
    try {
      expect(old.pragma('user_version', { simple: true })).toBe(46);
      expect((old.prepare('PRAGMA table_info(articles)').all() as { name: string }[]).map((c) => c.name)).not.toContain('columnist');
      expect(old.prepare('SELECT COUNT(*) AS n FROM articles').get()).toEqual({ n: 3 });
    } finally {
      old.close();
    }
  });
});
