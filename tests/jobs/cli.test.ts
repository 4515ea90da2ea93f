/** `morris jobs`, `morris adapters` and `morris status` as a person runs them. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRun } from '../../src/jobs/runs.ts';
import { tempStore } from './helpers.ts';

const run = promisify(execFile);
let t: ReturnType<typeof tempStore>;

async function morris(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  try {
    const r = await run(process.execPath, ['bin/morris.mjs', ...args], {
      env: { PATH: process.env.PATH, MORRIS_DATA_DIR: t.dir, LOG_LEVEL: 'warn', MORRIS_BASE_MODEL: 'models/none' },
    });
    return { code: 0, out: r.stdout, err: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, out: x.stdout, err: x.stderr };
  }
}

beforeAll(() => {
  t = tempStore();
  for (const id of ['lora-a', 'lora-b']) {
    t.store.prepare(`INSERT INTO adapters (id, base_model, path, metrics) VALUES (?, 'tiny', ?, '{"eval_loss": 2.5}')`).run(id, `/x/${id}`);
  }
  startRun(t.store, { job: 'rebuild', trigger: 'cron' });
  t.store.close();
});
afterAll(() => t.cleanup());

describe('CLI', () => {
  it('adapters promote / list / rollback', async () => {
    expect((await morris('adapters', 'promote', 'lora-a')).out).toContain('Active: lora-a (was the base model)');
    expect((await morris('adapters', 'promote', 'lora-b')).out).toContain('Active: lora-b (was lora-a)');
    const list = await morris('adapters', 'list');
    expect(list.out).toMatch(/^\* lora-b\s+active/m);
    expect(list.out).toMatch(/^ {2}lora-a\s+retired/m);
    expect((await morris('adapters', 'rollback')).out).toContain('now lora-a answers');
  }, 60_000);

  it('status, jobs history / cancel / run (unknown job)', async () => {
    const st = JSON.parse((await morris('status', '--json')).out);
    expect(st.activeAdapter).toBe('lora-a');
    expect(st.running.map((r: { job: string }) => r.job)).toEqual(['rebuild']);
    expect((await morris('jobs', 'history')).out).toMatch(/#1\s+rebuild\s+running/);
    // The run belongs to this test process (alive): cancel leaves a request for its owner.
    expect((await morris('jobs', 'cancel', '1')).out).toContain('Cancel requested for #1 (rebuild)');
    const unknown = await morris('jobs', 'run', 'nope');
    expect(unknown.code).toBe(1);
    expect(unknown.err).toContain('Unknown job "nope"');
  }, 60_000);
});
