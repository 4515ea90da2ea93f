import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JobRunner, type JobHandler } from '../../src/jobs/runner.ts';
import { runChain } from '../../src/jobs/chain.ts';
import { startScheduler } from '../../src/jobs/scheduler.ts';
import { getLogs, listRuns } from '../../src/store/job-runs.ts';
import { tempStore, waitFor } from './helpers.ts';

let t: ReturnType<typeof tempStore>;
beforeEach(() => (t = tempStore()));
afterEach(() => t.cleanup());

/** Jobs that report what the chain decides on; the real ones are exercised in serve-e2e. */
function handlers(o: { changed: boolean; newExamples: number; calls: string[] }): Record<string, JobHandler> {
  return {
    rescrape: async () => (o.calls.push('rescrape'), { changed: o.changed, summary: 's' }),
    rebuild: async () => (o.calls.push('rebuild'), { datasetId: 'd1', changed: true, newExamples: o.newExamples, summary: 'b' }),
    retrain: async (_ctx, input: { datasetId?: string }) => (o.calls.push(`retrain:${input.datasetId}`), { adapterId: 'a1', summary: 't' }),
    evaluate: async (_ctx, input: { adapterId?: string }) => (o.calls.push(`evaluate:${input.adapterId}`), { summary: 'e' }),
  };
}

describe('chain', () => {
  it('rescrape → rebuild → retrain → evaluate when something changed and enough examples are new', async () => {
    const calls: string[] = [];
    const runner = new JobRunner(t.store, handlers({ changed: true, newExamples: 12, calls }));
    const runs = await runChain(runner, 'rescrape', { trigger: 'cron', chain: true, minNewExamples: 10 });
    expect(calls).toEqual(['rescrape', 'rebuild', 'retrain:d1', 'evaluate:a1']);
    expect(runs.map((r) => r.status)).toEqual(['succeeded', 'succeeded', 'succeeded', 'succeeded']);
    // Each step points at the one before it.
    expect(runs.slice(1).map((r) => r.parent_id)).toEqual(runs.slice(0, -1).map((r) => r.id));
    expect(runs[1]!.trigger).toBe(`chain:rescrape#${runs[0]!.id}`);
  });

  it('stops after rescrape when nothing changed, and says why', async () => {
    const calls: string[] = [];
    const runner = new JobRunner(t.store, handlers({ changed: false, newExamples: 99, calls }));
    const runs = await runChain(runner, 'rescrape', { trigger: 'cron', chain: true, minNewExamples: 1 });
    expect(calls).toEqual(['rescrape']);
    expect(getLogs(t.store, runs[0]!.id).map((l) => l.line).join('\n')).toMatch(/chain stops here: the scrape found nothing new/);
  });

  it('does not retrain when the new dataset has too few new examples', async () => {
    const calls: string[] = [];
    const runner = new JobRunner(t.store, handlers({ changed: true, newExamples: 3, calls }));
    const runs = await runChain(runner, 'rescrape', { trigger: 'cron', chain: true, minNewExamples: 10 });
    expect(calls).toEqual(['rescrape', 'rebuild']);
    expect(getLogs(t.store, runs[1]!.id).map((l) => l.line).join('\n')).toMatch(/3 new examples \(< 10 needed/);
  });

  it('with chaining off, a rescrape runs alone; a retrain is still followed by its evaluation', async () => {
    const calls: string[] = [];
    const runner = new JobRunner(t.store, handlers({ changed: true, newExamples: 99, calls }));
    await runChain(runner, 'rescrape', { trigger: 'cron', chain: false, minNewExamples: 1 });
    await runChain(runner, 'retrain', { trigger: 'manual', chain: false, minNewExamples: 1, input: { datasetId: 'dX' } });
    expect(calls).toEqual(['rescrape', 'retrain:dX', 'evaluate:a1']);
  });
});

describe('scheduler', () => {
  it('a cron tick starts the chain; ticks landing while it runs are skipped and recorded', async () => {
    const calls: string[] = [];
    let release!: () => void;
    const hold = new Promise<void>((r) => (release = r));
    const h = handlers({ changed: false, newExamples: 0, calls });
    const runner = new JobRunner(t.store, {
      ...h,
      rescrape: async (ctx, i) => {
        await hold;
        return h.rescrape!(ctx, i);
      },
    });
    // Every minute, in a named zone; the ticks are fired here exactly as the cron fires them.
    const s = startScheduler(runner, {
      crons: { rescrape: '* * * * *', rebuild: 'off', retrain: 'off' },
      timezone: 'Europe/London',
      chain: true,
      minNewExamples: 1,
    });
    try {
      expect(s.jobs().map((j) => j.job)).toEqual(['rescrape']);
      expect(s.jobs()[0]!.nextRun).not.toBeNull();
      void s.tick('rescrape');
      await waitFor(() => listRuns(t.store, { job: 'rescrape', status: 'running' }).length >= 1, 5000);
      void s.tick('rescrape');
      await waitFor(() => listRuns(t.store, { job: 'rescrape', status: 'skipped' }).length >= 1, 5000);
      release();
      await waitFor(() => listRuns(t.store, { job: 'rescrape', status: 'succeeded' }).length >= 1, 5000);
      const first = listRuns(t.store, { job: 'rescrape' }).at(-1)!;
      expect(first.trigger).toBe('cron');
    } finally {
      await s.stop();
      await s.settled();
    }
  });

  it('rejects a bad cron expression or time zone with a config error', () => {
    const runner = new JobRunner(t.store, {});
    expect(() => startScheduler(runner, { crons: { rescrape: '99 * * * *', rebuild: 'off', retrain: 'off' }, timezone: 'UTC', chain: true, minNewExamples: 1 })).toThrow(/Cron expression for rescrape is invalid/);
    // node-cron's six-field form (seconds first) would fire every second: refused with the fields named.
    expect(() => startScheduler(runner, { crons: { rescrape: '* * * * * *', rebuild: 'off', retrain: 'off' }, timezone: 'UTC', chain: true, minNewExamples: 1 })).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID', hint: expect.stringContaining('five fields: minute hour day-of-month month day-of-week') }),
    );
    expect(() => startScheduler(runner, { crons: { rescrape: 'off', rebuild: 'off', retrain: 'off' }, timezone: 'Mars/Olympus', chain: true, minNewExamples: 1 })).toThrow(/not a time zone/);
  });
});
