/**
 * The retrain job passes on only what the trainer's judge accepts: an adapter that nothing can
 * judge (no validation split) fails the run with the reason and how to get a split, and the chain
 * stops before the gate. And the store can hold the 'failed' status (migration 45) without losing
 * adapters or their promotion history.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setConfigForTests } from '../../src/config.ts';
import { buildJobSystem } from '../../src/jobs/system.ts';
import { getLogs } from '../../src/store/job-runs.ts';
import { runChain } from '../../src/jobs/chain.ts';
import { importDataset } from '../../src/pipeline/dataset/import.ts';
import { latestSchemaVersion, migrate, openStore, type Store } from '../../src/store/db.ts';
import { migrations } from '../../src/store/migrations.ts';
import { prepareTinyRoot, QUICK_TRAIN, SHORT_STYLE, tempStore, tinyEnv } from './helpers.ts';

let root: string;
let store: Store;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-retrain-verdict-'));
  await prepareTinyRoot(root);
}, 60_000);
afterAll(() => {
  store?.close();
  fs.rmSync(root, { recursive: true, force: true });
});

describe('retrain job and the judge', () => {
  it('a dataset with no validation split: the run fails saying so and how to get one; nothing reaches the gate', async () => {
    const config = setConfigForTests(tinyEnv(root));
    store = openStore(config.dbPath);
    const file = path.join(root, 'one.jsonl');
    fs.writeFileSync(file, JSON.stringify({ messages: [{ role: 'user', content: 'Write about 6G.' }, { role: 'assistant', content: 'Another G, another white paper.' }] }));
    const ds = importDataset(store, file);
    expect(ds.validation).toBe(0);
    const sys = buildJobSystem({ config, store, sources: [], trainOverrides: QUICK_TRAIN, style: SHORT_STYLE });
    try {
      const runs = await runChain(sys.runner, 'retrain', { trigger: 'test', chain: true, minNewExamples: 1, input: { datasetId: ds.id } });
      expect(runs.map((r) => `${r.job}:${r.status}`)).toEqual(['retrain:failed']);
      expect(runs[0]!.error).toMatch(/^adapter lora-\S+ saved in \S+ but not registered: dataset ds-\w+ has no usable validation example/);
      expect(runs[0]!.error).toMatch(/"split": "validation"/);
      expect(getLogs(store, runs[0]!.id).at(-1)!.line).toMatch(/^failed: adapter lora-/);
      expect(store.prepare('SELECT COUNT(*) AS n FROM adapters').get()).toEqual({ n: 0 });
    } finally {
      await sys.runner.shutdown(1000);
    }
  }, 120_000);

  it("migration 45: 'failed' is a status, adapters and their history survive the table rebuild", () => {
    const t = tempStore();
    try {
      // A database exactly at version 44 (later migrations undone by starting from scratch).
      for (const table of t.store.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").all() as { name: string }[]) {
        t.store.pragma('foreign_keys = OFF');
        t.store.exec(`DROP TABLE IF EXISTS "${table.name}"`);
      }
      t.store.pragma('foreign_keys = ON');
      for (const m of migrations.filter((m) => m.version <= 44)) t.store.exec(m.sql);
      t.store.prepare("INSERT INTO adapters (id, base_model, path, status) VALUES ('a1', 'b', 'p1', 'retired'), ('a2', 'b', 'p2', 'active')").run();
      t.store.prepare("INSERT INTO adapter_events (action, adapter_id, previous_id, actor) VALUES ('promote', 'a2', 'a1', 'test')").run();
      t.store.pragma('user_version = 44');
      expect(migrate(t.store)).toBe(latestSchemaVersion());
      expect(t.store.prepare('SELECT id, status FROM adapters ORDER BY id').all()).toEqual([{ id: 'a1', status: 'retired' }, { id: 'a2', status: 'active' }]);
      expect(t.store.prepare('SELECT action, adapter_id, previous_id FROM adapter_events').all()).toEqual([{ action: 'promote', adapter_id: 'a2', previous_id: 'a1' }]);
      t.store.prepare("INSERT INTO adapters (id, base_model, path, status, reason) VALUES ('a3', 'b', 'p3', 'failed', 'collapsed')").run();
      expect(() => t.store.prepare("INSERT INTO adapters (id, base_model, path, status) VALUES ('a4', 'b', 'p4', 'active')").run()).toThrow(/UNIQUE/);
      expect(() => t.store.prepare("INSERT INTO adapter_events (action, adapter_id, actor) VALUES ('promote', 'nope', 'x')").run()).toThrow(/FOREIGN KEY/);
      expect(t.store.pragma('foreign_key_check')).toEqual([]);
    } finally {
      t.cleanup();
    }
  });
});
