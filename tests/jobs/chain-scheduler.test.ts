import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JobRunner, type JobHandler } from '../../src/jobs/runner.ts';
import { runChain } from '../../src/jobs/chain.ts';
import { startScheduler } from '../../src/jobs/scheduler.ts';
import { getLogs, listRuns } from '../../src/store/job-runs.ts';
import { tempStore, waitFor } from './helpers.ts';
import { importPreferenceLines } from '../../src/pipeline/dataset/preferences.ts';

/** n reader pairs in the store (each an imported article and a reader's edit of it), on `columnist`'s articles. */
function addPairs(store: Parameters<typeof importPreferenceLines>[0], n: number, from = 0, columnist?: string): void {
  const line = (i: number) =>
    JSON.stringify({ prompt: [{ role: 'user', content: `Write a column about topic ${i}.` }], chosen: [{ role: 'assistant', content: `good ${i}` }], rejected: [{ role: 'assistant', content: `bad ${i}` }] });
  importPreferenceLines(store, Array.from({ length: n }, (_, i) => line(from + i)).join('\n'), 'test', columnist);
}

let t: ReturnType<typeof tempStore>;
beforeEach(() => (t = tempStore()));
afterEach(() => t.cleanup());

type Voiced = { columnist?: string };
/** `@voice` after a job's name when the chain runs for another columnist than the default one. */
const at = (i: Voiced) => (i.columnist ? `@${i.columnist}` : '');

/** Jobs that report what the chain decides on; the real ones are exercised in serve-e2e. */
function handlers(o: { changed: boolean; newExamples: number; calls: string[]; pairs?: (columnist?: string) => number }): Record<string, JobHandler> {
  return {
    rescrape: async (_ctx, input: Voiced) => (o.calls.push(`rescrape${at(input)}`), { changed: o.changed, summary: 's' }),
    rebuild: async (_ctx, input: Voiced) => (o.calls.push(`rebuild${at(input)}`), { datasetId: 'd1', changed: true, newExamples: o.newExamples, summary: 'b' }),
    retrain: async (_ctx, input: { datasetId?: string } & Voiced) => (o.calls.push(`retrain${at(input)}:${input.datasetId}`), { adapterId: 'a1', summary: 't' }),
    evaluate: async (_ctx, input: { adapterId?: string } & Voiced) => (o.calls.push(`evaluate${at(input)}:${input.adapterId}`), { summary: 'e' }),
    dpo: async (_ctx, input: { referenceAdapterId?: string | null } & Voiced) => (
      o.calls.push(`dpo${at(input)}:${input.referenceAdapterId ?? 'active'}`),
      { adapterId: 'p1', referenceAdapterId: input.referenceAdapterId ?? null, pairs: o.pairs?.(input.columnist ?? 'morris') ?? 0, summary: 'd' }
    ),
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

describe('chain: the DPO stage', () => {
  it('after a retrain and its evaluation, DPO on top of the new adapter → evaluate, when readers made pairs', async () => {
    const calls: string[] = [];
    const runner = new JobRunner(t.store, handlers({ changed: true, newExamples: 12, calls }));
    const opts = { trigger: 'cron', chain: true, minNewExamples: 10, dpoMinNewPairs: 5 };
    const none = await runChain(runner, 'rescrape', opts);
    expect(calls).toEqual(['rescrape', 'rebuild', 'retrain:d1', 'evaluate:a1']);
    expect(getLogs(t.store, none.at(-1)!.id).map((l) => l.line).join('\n')).toMatch(/readers have made 0 preference pairs on morris's articles \(< 2 needed for a DPO stage\)/);
    addPairs(t.store, 3);
    calls.length = 0;
    const runs = await runChain(runner, 'retrain', { ...opts, input: { datasetId: 'd2' } });
    expect(calls).toEqual(['retrain:d2', 'evaluate:a1', 'dpo:a1', 'evaluate:p1']);
    expect(runs.slice(1).map((r) => r.parent_id)).toEqual(runs.slice(0, -1).map((r) => r.id));
    // MORRIS_DPO_MIN_NEW_PAIRS=0: no DPO stage.
    calls.length = 0;
    await runChain(runner, 'retrain', { ...opts, dpoMinNewPairs: 0, input: { datasetId: 'd3' } });
    expect(calls).toEqual(['retrain:d3', 'evaluate:a1']);
    // The gate rejected the retrained adapter (it copies training text): nothing is built on it.
    t.store.prepare(`INSERT INTO adapters (id, base_model, path, status, metrics) VALUES ('a1', 'tiny', '/nowhere', 'rejected', '{}')`).run();
    calls.length = 0;
    const rejected = await runChain(runner, 'retrain', { ...opts, input: { datasetId: 'd4' } });
    expect(calls).toEqual(['retrain:d4', 'evaluate:a1']);
    expect(getLogs(t.store, rejected.at(-1)!.id).map((l) => l.line).join('\n')).toMatch(/adapter a1 was rejected: no DPO stage on top of it/);
  });

  it('on its own: the watch starts DPO on the active adapter once enough new pairs arrived since the last DPO run', async () => {
    const calls: string[] = [];
    const { preferencePairs } = await import('../../src/store/feedback.ts');
    const runner = new JobRunner(t.store, handlers({ changed: false, newExamples: 0, calls, pairs: () => preferencePairs(t.store).length }));
    const s = startScheduler(runner, { crons: { rescrape: 'off', rebuild: 'off', retrain: 'off' }, timezone: 'UTC', chain: true, minNewExamples: 1, dpoMinNewPairs: 4 });
    try {
      expect(s.jobs().map((j) => j.job)).toEqual(['dpo']);
      addPairs(t.store, 3);
      await s.tick('dpo');
      expect(calls).toEqual([]); // 3 < 4
      addPairs(t.store, 1, 3);
      await s.tick('dpo');
      expect(calls).toEqual(['dpo:active', 'evaluate:p1']);
      expect(listRuns(t.store, { job: 'dpo' }).at(-1)!.trigger).toBe('new-pairs');
      // The next ones count from the last DPO run's 4 pairs.
      addPairs(t.store, 3, 4);
      await s.tick('dpo');
      expect(calls).toHaveLength(2);
      addPairs(t.store, 1, 7);
      await s.tick('dpo');
      expect(calls).toEqual(['dpo:active', 'evaluate:p1', 'dpo:active', 'evaluate:p1']);
    } finally {
      await s.stop();
      await s.settled();
    }
  });

  it("per columnist: each voice's watch counts only pairs on its articles, and its DPO stage is its own", async () => {
    const calls: string[] = [];
    const { preferencePairs } = await import('../../src/store/feedback.ts');
    const runner = new JobRunner(t.store, handlers({ changed: true, newExamples: 12, calls, pairs: (c) => preferencePairs(t.store, c).length }));
    const off = { rescrape: 'off', rebuild: 'off', retrain: 'off' } as const;
    const house = { columnist: 'house', crons: off, minNewExamples: 1, problem: () => null };
    const s = startScheduler(runner, { crons: off, timezone: 'UTC', chain: true, minNewExamples: 1, dpoMinNewPairs: 4, voices: [house] });
    try {
      expect(s.jobs().map((j) => `${j.job}${j.columnist ? `@${j.columnist}` : ''}`)).toEqual(['dpo', 'dpo@house']);
      addPairs(t.store, 4, 0, 'house');
      await s.tick('dpo');
      expect(calls).toEqual([]); // the default voice has no pairs of its own
      await s.tick('dpo', 'house');
      expect(calls).toEqual(['dpo@house:active', 'evaluate@house:p1']);
      expect(listRuns(t.store, { job: 'dpo', columnist: 'house' })).toHaveLength(1);
      // The default voice's pairs start its DPO, not the house's (whose count starts from its own last run).
      addPairs(t.store, 4, 100);
      calls.length = 0;
      await s.tick('dpo', 'house');
      expect(calls).toEqual([]);
      await s.tick('dpo');
      expect(calls).toEqual(['dpo:active', 'evaluate:p1']);
      // A retrain of the house voice gets a DPO stage of its own on top of the new adapter.
      calls.length = 0;
      const runs = await runChain(runner, 'retrain', { trigger: 'cron', chain: true, minNewExamples: 1, dpoMinNewPairs: 4, columnist: 'house', input: { datasetId: 'dh' } });
      expect(calls).toEqual(['retrain@house:dh', 'evaluate@house:a1', 'dpo@house:a1', 'evaluate@house:p1']);
      expect(runs.map((r) => r.columnist)).toEqual(['house', 'house', 'house', 'house']);
      // A voice without pairs stops after its gate, and says whose pairs it counted.
      const lone = await runChain(runner, 'retrain', { trigger: 'cron', chain: true, minNewExamples: 1, dpoMinNewPairs: 4, columnist: 'lone', input: { datasetId: 'dl' } });
      expect(getLogs(t.store, lone.at(-1)!.id).map((l) => l.line).join('\n')).toMatch(/readers have made 0 preference pairs on lone's articles/);
    } finally {
      await s.stop();
      await s.settled();
    }
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
