/**
 * `morris jobs`, `morris adapters` and `morris status` as a person runs them. The commands run
 * in this process through the same commander wiring the CLI uses (each `morris` process costs
 * seconds of TypeScript start-up on a shared machine); one real `bin/morris.mjs` process checks
 * the entry point: its exit code and error message.
 */
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { setConfigForTests } from '../../src/config.ts';
import { createCliContext } from '../../src/cli/context.ts';
import { register as registerJobs } from '../../src/cli/jobs.ts';
import { register as registerAdapters } from '../../src/cli/adapters.ts';
import { register as registerStatus } from '../../src/cli/status.ts';
import { startRun } from '../../src/store/job-runs.ts';
import { cancelKey } from '../../src/jobs/runner.ts';
import { getKv, openStore } from '../../src/store/db.ts';
import { tempStore } from './helpers.ts';
import { runMorris } from '../morris-cli.ts';

let t: ReturnType<typeof tempStore>;
let env: Record<string, string>;

/** A real `morris` process. */
async function morrisProcess(...args: string[]) {
  const r = await runMorris(args, { env: { PATH: process.env.PATH, ...env } });
  return { code: r.code, out: r.stdout, err: r.stderr };
}

/** The same command in this process: what it prints to stdout. */
async function morris(...args: string[]): Promise<string> {
  const program = new Command('morris').exitOverride();
  const ctx = createCliContext();
  registerJobs(program, ctx);
  registerAdapters(program, ctx);
  registerStatus(program, ctx);
  const out: string[] = [];
  const spy = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
  try {
    await program.parseAsync(['node', 'morris', ...args]);
  } finally {
    spy.mockRestore();
    ctx.close();
  }
  return out.map((l) => l + '\n').join('');
}

beforeAll(() => {
  t = tempStore();
  env = { MORRIS_DATA_DIR: t.dir, LOG_LEVEL: 'warn', MORRIS_BASE_MODEL: 'models/none' };
  setConfigForTests(env);
  for (const id of ['lora-a', 'lora-b']) {
    t.store.prepare(`INSERT INTO adapters (id, base_model, path, metrics) VALUES (?, 'tiny', ?, '{"eval_loss": 2.5}')`).run(id, `/x/${id}`);
  }
  startRun(t.store, { job: 'rebuild', trigger: 'cron' });
  t.store.close();
});
afterAll(() => t.cleanup());

describe('CLI', () => {
  it('adapters promote / list / rollback', async () => {
    expect(await morris('adapters', 'promote', 'lora-a')).toContain('Active: lora-a (was the base model)');
    expect(await morris('adapters', 'promote', 'lora-b')).toContain('Active: lora-b (was lora-a)');
    const list = await morris('adapters', 'list');
    expect(list).toMatch(/^\* lora-b\s+active\s+val loss 2\.5000/m); // the trainer's eval_loss until the gate measures
    expect(list).toMatch(/^ {2}lora-a\s+retired/m);
    expect(await morris('adapters', 'rollback')).toContain('now lora-a answers');
  });

  it('status, jobs history / cancel', async () => {
    const st = JSON.parse(await morris('status', '--json'));
    expect(st.activeAdapter).toBe('lora-a');
    expect(st.running.map((r: { job: string }) => r.job)).toEqual(['rebuild']);
    expect(await morris('jobs', 'history')).toMatch(/#1\s+rebuild\s+running/);
    // The run belongs to no runner of this command: cancel leaves a request for its owner.
    expect(await morris('jobs', 'cancel', '1')).toContain('Cancel requested for #1 (rebuild)');
    const store = openStore(t.dbPath);
    try {
      expect(getKv(store, cancelKey(1))).toBeTruthy();
    } finally {
      store.close();
    }
  });

  it('the morris process: an unknown job exits 1 with the error', async () => {
    const unknown = await morrisProcess('jobs', 'run', 'nope');
    expect(unknown.code).toBe(1);
    expect(unknown.err).toContain('Unknown job "nope"');
    // The state the in-process commands left is what the process reads.
    expect((await morrisProcess('adapters', 'list')).out).toMatch(/^\* lora-a\s+active/m);
  }, 60_000);
});
