/**
 * `morris serve` as a real process: kill -9 in the middle of a training and start again (the
 * training resumes from its checkpoint and completes), and SIGTERM while a generation streams
 * (it finishes, then the process exits cleanly).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setConfigForTests } from '../../src/config.ts';
import { openStore, type Store } from '../../src/store/db.ts';
import { startSampleSite } from '../../src/pipeline/crawl/sample-site.ts';
import { buildJobSystem } from '../../src/jobs/system.ts';
import { isPidAlive, listRuns } from '../../src/store/job-runs.ts';
import { findRetrainToResume, SHUTDOWN_REASON } from '../../src/jobs/resume.ts';
import { prepareTinyRoot, QUICK_TRAIN, SHORT_STYLE, tinyEnv, waitFor } from './helpers.ts';

const TRAIN_STEPS = 20;
let root: string;
let env: Record<string, string>;

interface Serve {
  proc: ChildProcess;
  url: Promise<string>;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function startServeProcess(): Serve {
  const proc = spawn(process.execPath, ['bin/morris.mjs', 'serve', '--port', '0', '--host', '127.0.0.1'], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  const url = new Promise<string>((resolve, reject) => {
    proc.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      const m = /"dashboard":"(http:\/\/[^"]+)"/.exec(err);
      if (m) resolve(m[1]!);
    });
    proc.once('exit', () => reject(new Error(`serve exited early:\n${err}`)));
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => proc.once('exit', (code, signal) => r({ code, signal })));
  return { proc, url, stderr: () => err, exited };
}

const admin = { authorization: 'Bearer test-admin-token', 'content-type': 'application/json' };

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-serve-proc-'));
  await prepareTinyRoot(root);
  const trainConfig = path.join(root, 'train.json');
  // Slow enough to be killed in the middle: many steps, a checkpoint every two.
  fs.writeFileSync(trainConfig, JSON.stringify({ ...QUICK_TRAIN, maxSteps: TRAIN_STEPS, saveEvery: 2, evalEvery: 10 }));
  env = tinyEnv(root, { MORRIS_TRAIN_CONFIG: trainConfig, LOG_LEVEL: 'info' });
  // The data the training needs, made in this process with the same library calls the jobs use.
  const site = await startSampleSite({ port: 0 });
  const config = setConfigForTests(env);
  const store = openStore(config.dbPath);
  try {
    const sys = buildJobSystem({ config, store, sources: [{ name: 'sample-archive', baseUrl: site.url }], style: SHORT_STYLE });
    const s = await sys.control.start('rescrape', { trigger: 'test', chain: false });
    await s.finished;
    const b = await sys.control.start('rebuild', { trigger: 'test', chain: false });
    const [built] = await b.finished;
    expect(built!.status).toBe('succeeded');
    await sys.runner.shutdown(1000);
  } finally {
    store.close();
    await site.close();
  }
}, 120_000);

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function readStore<T>(fn: (s: Store) => T): T {
  const s = openStore(path.join(root, 'data', 'morris.db'));
  try {
    return fn(s);
  } finally {
    s.close();
  }
}

describe('serve process', () => {
  it('kill -9 mid-training, restart: the run is marked crashed and the training resumes from its checkpoint and completes', async () => {
    const first = startServeProcess();
    const url = await first.url;
    const res = await fetch(`${url}/api/jobs/retrain/run`, { method: 'POST', headers: admin, body: JSON.stringify({ chain: false }) });
    expect(res.status).toBe(200);
    const { run } = (await res.json()) as { run: { id: number } };
    // Past the first checkpoints, not at the end.
    const runId = await waitFor(
      () => readStore((s) => (s.prepare(`SELECT MAX(step) AS n, run_id FROM train_metrics WHERE kind = 'train'`).get() as { n: number | null; run_id: string }))?.n! >= 5 && true,
      90_000,
      100,
    ).then(() => readStore((s) => (s.prepare(`SELECT run_id FROM train_metrics LIMIT 1`).get() as { run_id: string }).run_id));
    const childPid = readStore((s) => listRuns(s, { job: 'retrain' })[0]!.child_pid);
    expect(childPid).toBeGreaterThan(0);
    first.proc.kill('SIGKILL');
    await first.exited;
    // The orphaned worker notices its parent is gone, checkpoints and exits.
    await waitFor(() => !isPidAlive(childPid), 30_000, 100);
    const stepAtKill = readStore((s) => (s.prepare(`SELECT MAX(step) AS n FROM train_metrics WHERE run_id = ? AND kind = 'train'`).get(runId) as { n: number }).n);
    expect(stepAtKill).toBeLessThan(TRAIN_STEPS);
    expect(fs.existsSync(path.join(root, 'data', 'runs', runId, 'checkpoint'))).toBe(true);

    const second = startServeProcess();
    try {
      await second.url;
      expect(readStore((s) => listRuns(s, { job: 'retrain', limit: 10 }).find((r) => r.id === run.id)!.status)).toBe('crashed');
      const resumed = await waitFor(
        () => readStore((s) => listRuns(s, { job: 'retrain', limit: 10 }).find((r) => r.trigger === `resume:#${run.id}` && r.status !== 'running')),
        120_000,
        250,
      );
      expect(resumed.status).toBe('succeeded');
      const result = resumed.result as { steps: number; resumedFrom: number | null; adapterId: string };
      if (result.resumedFrom === null) {
        // Tell what the resumed worker saw (it logs why it could not use a checkpoint).
        console.log(second.stderr().split('\n').filter((l) => /resum|checkpoint/i.test(l)).join('\n'));
      }
      expect(result.steps).toBe(TRAIN_STEPS);
      expect(result.resumedFrom).toBeGreaterThan(0);
      expect(result.resumedFrom).toBeLessThanOrEqual(stepAtKill);
      // And the gate ran on what it produced.
      const evaluated = await waitFor(() => readStore((s) => listRuns(s, { job: 'evaluate', limit: 5 }).find((r) => r.parent_id === resumed.id && r.status !== 'running')), 90_000, 250);
      expect(evaluated.status).toBe('succeeded');
    } finally {
      second.proc.kill('SIGTERM');
      await second.exited;
    }
  }, 300_000);

  it('SIGTERM during a generation: the generation finishes, new connections are refused, the process exits 0', async () => {
    const s = startServeProcess();
    const url = await s.url;
    const res = await fetch(`${url}/api/generate`, {
      method: 'POST',
      headers: admin,
      body: JSON.stringify({ topic: 'The last days of the landline', maxNewTokens: 600, temperature: 0.8 }),
    });
    expect(res.status).toBe(200);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    let signalled = false;
    let refusedAfterSignal = false;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      if (!signalled && buf.includes('event: text')) {
        signalled = true;
        s.proc.kill('SIGTERM');
        await waitFor(() => s.stderr().includes('shutting down'), 10_000, 20);
        refusedAfterSignal = await fetch(`${url}/api/status`).then(
          () => false,
          () => true,
        );
      }
    }
    expect(signalled).toBe(true);
    const doneEvent = /event: done\ndata: (.*)\n/.exec(buf);
    expect(doneEvent, buf.slice(-500)).not.toBeNull();
    const done = JSON.parse(doneEvent![1]!) as { cut: boolean; reason: string; text: string };
    expect(done.cut).toBe(false);
    expect(['length', 'stop']).toContain(done.reason);
    expect(refusedAfterSignal).toBe(true);
    // The shutdown saw the generation in flight and waited for it.
    expect(s.stderr()).toMatch(/"inFlight":1[,}].*shutting down/);
    const exit = await s.exited;
    expect(exit.code).toBe(0);
    expect(s.stderr()).toContain('morris serve stopped');
  }, 120_000);
  it('SIGTERM during a training: the worker checkpoints, the run is marked for resuming, the process exits 0', async () => {
    const s = startServeProcess();
    const url = await s.url;
    const res = await fetch(`${url}/api/jobs/retrain/run`, { method: 'POST', headers: admin, body: JSON.stringify({ chain: false }) });
    const { run } = (await res.json()) as { run: { id: number } };
    await waitFor(() => /^step \d+/.test(readStore((st) => listRuns(st, { job: 'retrain', limit: 1 })[0]!.message ?? '')), 90_000, 100);
    s.proc.kill('SIGTERM');
    const exit = await s.exited;
    expect(exit.code).toBe(0);
    const ended = readStore((st) => listRuns(st, { job: 'retrain', limit: 5 }).find((r) => r.id === run.id)!);
    expect(ended.status).toBe('cancelled');
    expect(ended.message).toBe(SHUTDOWN_REASON);
    expect(isPidAlive(ended.child_pid)).toBe(false);
    // The next start would pick it up from its checkpoint.
    expect(readStore((st) => findRetrainToResume(st))?.run.id).toBe(run.id);
  }, 120_000);
});
