import { spawn } from 'node:child_process';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JobRunner, requestCancel } from '../../src/jobs/runner.ts';
import { getLogs, getRun, isPidAlive, listRuns, recoverCrashedRuns, startRun, waitForPidExit } from '../../src/store/job-runs.ts';
import { MorrisError } from '../../src/errors.ts';
import { deferred, tempStore, waitFor } from './helpers.ts';

let t: ReturnType<typeof tempStore>;
beforeEach(() => (t = tempStore()));
afterEach(() => t.cleanup());

describe('JobRunner', () => {
  it('two overlapping triggers run one job; the second is recorded as skipped', async () => {
    const gate = deferred();
    let calls = 0;
    const runner = new JobRunner(t.store, {
      slow: async (ctx) => {
        calls++;
        ctx.progress(0.5, 'half way');
        await gate.promise;
        return { summary: 'done' };
      },
    });
    const a = runner.trigger('slow', { trigger: 'cron' });
    const b = runner.trigger('slow', { trigger: 'manual' });
    expect(a.started).toBe(true);
    expect(b.started).toBe(false);
    expect(getRun(t.store, b.run.id).status).toBe('skipped');
    expect(getRun(t.store, b.run.id).message).toContain(`#${a.run.id}`);
    await waitFor(() => getRun(t.store, a.run.id).progress === 0.5);
    gate.resolve();
    const done = await a.done;
    expect(done.status).toBe('succeeded');
    expect(done.progress).toBe(1);
    expect(done.message).toBe('done');
    expect(calls).toBe(1);
    // Once finished, the job can run again.
    const gate2 = deferred();
    const c = runner.trigger('slow');
    expect(c.started).toBe(true);
    gate.resolve();
    gate2.resolve();
    await c.done;
  });

  it('a run owned by another live process blocks; one whose process died is marked crashed', async () => {
    const other = spawn('sleep', ['30']);
    try {
      const foreign = startRun(t.store, { job: 'x', trigger: 'cron', pid: other.pid });
      expect(foreign.started).toBe(true);
      const runner = new JobRunner(t.store, { x: async () => 'ok' });
      const blocked = runner.trigger('x');
      expect(blocked.started).toBe(false);
      other.kill('SIGKILL');
      await new Promise((r) => other.once('exit', r));
      const next = runner.trigger('x');
      expect(next.started).toBe(true);
      expect(getRun(t.store, foreign.run.id).status).toBe('crashed');
      expect((await next.done).status).toBe('succeeded');
    } finally {
      other.kill('SIGKILL');
    }
  });

  it('records failures with the error and log lines', async () => {
    const runner = new JobRunner(t.store, {
      bad: async (ctx) => {
        ctx.log('about to fail');
        throw new MorrisError('DATASET_EMPTY', 'nothing to train on', { hint: 'build one' });
      },
    });
    const r = await runner.run('bad');
    expect(r.status).toBe('failed');
    expect(r.error).toContain('nothing to train on');
    const lines = getLogs(t.store, r.id).map((l) => l.line);
    expect(lines).toContain('about to fail');
    expect(lines.some((l) => l.startsWith('failed: nothing to train on'))).toBe(true);
  });

  it('cancels through a request left in the store (as `morris jobs cancel` does from another process)', async () => {
    const runner = new JobRunner(t.store, {
      loop: (ctx) =>
        new Promise((_, reject) => {
          ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason));
        }),
    });
    const a = runner.trigger('loop');
    requestCancel(t.store, a.run.id);
    const r = await a.done;
    expect(r.status).toBe('cancelled');
    expect(() => requestCancel(t.store, a.run.id)).toThrow(/not running/);
  });

  it('unknown job names are refused with the list of jobs', () => {
    const runner = new JobRunner(t.store, { a: async () => 1 });
    expect(() => runner.trigger('nope')).toThrow(/Unknown job "nope".*|Jobs: a/);
  });

  it('recoverCrashedRuns marks runs of dead processes and leaves live ones', async () => {
    const dead = spawn('true');
    await new Promise((r) => dead.once('exit', r));
    startRun(t.store, { job: 'retrain', trigger: 'cron', pid: dead.pid });
    startRun(t.store, { job: 'rebuild', trigger: 'cron', pid: process.pid });
    const crashed = recoverCrashedRuns(t.store);
    expect(crashed.map((r) => r.job)).toEqual(['retrain']);
    expect(listRuns(t.store, { status: 'running' }).map((r) => r.job)).toEqual(['rebuild']);
  });

  it('waitForPidExit waits for a worker still checkpointing, and gives up on timeout or abort', async () => {
    // Stands in for an orphaned training worker: alive until its stdin closes.
    const worker = spawn(process.execPath, ['-e', 'process.stdin.resume(); process.stdin.on("end", () => process.exit(0))'], { stdio: ['pipe', 'ignore', 'ignore'] });
    const exited = new Promise((r) => worker.once('exit', r));
    try {
      expect(await waitForPidExit(worker.pid, 300, undefined, 20)).toBe(false);
      const ac = new AbortController();
      ac.abort();
      expect(await waitForPidExit(worker.pid, 60_000, ac.signal, 20)).toBe(false);
      expect(isPidAlive(worker.pid)).toBe(true);
      const waiting = waitForPidExit(worker.pid, 60_000, undefined, 20);
      worker.stdin!.end();
      await exited;
      expect(await waiting).toBe(true);
      expect(await waitForPidExit(null, 10)).toBe(true);
    } finally {
      worker.kill('SIGKILL');
    }
  });
});
