/**
 * Each columnist's chain on its own schedule: a voice's ticks run its chain (every step for that
 * voice), a voice whose folder is broken is skipped with the reason logged while the others run,
 * and training is one at a time on the host: a second voice reaching retrain waits its turn
 * (queued, not skipped) and runs when the first is done.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { JobRunner, type JobHandler } from '../../src/jobs/runner.ts';
import { runChain } from '../../src/jobs/chain.ts';
import { startScheduler } from '../../src/jobs/scheduler.ts';
import { TrainingQueue } from '../../src/jobs/training-queue.ts';
import { voiceSchedules, withDefaultVoice } from '../../src/jobs/voice-schedules.ts';
import { scheduleFromConfig } from '../../src/jobs/scheduler.ts';
import { listRuns } from '../../src/store/job-runs.ts';
import { createAdminActions } from '../../src/jobs/admin-actions.ts';
import { JobControl } from '../../src/jobs/control.ts';
import { AdapterRegistry } from '../../src/jobs/registry.ts';
import { MorrisError } from '../../src/errors.ts';
import { loadConfig } from '../../src/config.ts';
import { addColumnist } from '../../src/columnists/folder.ts';
import { COLUMNISTS_DIR } from '../../src/paths.ts';
import { tempStore, waitFor } from './helpers.ts';

let t: ReturnType<typeof tempStore>;
beforeEach(() => (t = tempStore()));
afterEach(() => t.cleanup());

type Input = { columnist?: string; datasetId?: string; adapterId?: string };

/** Chain jobs that record `job:columnist`; retrain for a voice in `hold` waits until released. */
function handlers(calls: string[], hold: Map<string, Promise<void>> = new Map()): Record<string, JobHandler> {
  const who = (i: Input) => i.columnist ?? 'morris';
  return {
    rescrape: async (_c, i: Input) => (calls.push(`rescrape:${who(i)}`), { changed: true, summary: 's' }),
    rebuild: async (_c, i: Input) => (calls.push(`rebuild:${who(i)}`), { datasetId: `d-${who(i)}`, changed: true, newExamples: 5, summary: 'b' }),
    retrain: async (_c, i: Input) => {
      calls.push(`retrain:${who(i)}:start`);
      await hold.get(who(i));
      calls.push(`retrain:${who(i)}:end`);
      return { adapterId: `a-${who(i)}`, summary: 't' };
    },
    evaluate: async (_c, i: Input) => (calls.push(`evaluate:${who(i)}:${i.adapterId}`), { summary: 'e' }),
  };
}

describe('per-columnist chains', () => {
  it("a voice's chain carries the voice through every step", async () => {
    const calls: string[] = [];
    const runner = new JobRunner(t.store, handlers(calls));
    const runs = await runChain(runner, 'rescrape', { trigger: 'cron', chain: true, minNewExamples: 1, columnist: 'rival' });
    expect(calls).toEqual(['rescrape:rival', 'rebuild:rival', 'retrain:rival:start', 'retrain:rival:end', 'evaluate:rival:a-rival']);
    expect(runs.map((r) => r.columnist)).toEqual(['rival', 'rival', 'rival', 'rival']);
  });

  it('training is one at a time: the second voice waits its turn instead of being skipped', async () => {
    const calls: string[] = [];
    let release!: () => void;
    const morrisTraining = new Promise<void>((r) => (release = r));
    const runner = new JobRunner(t.store, handlers(calls, new Map([['morris', morrisTraining]])));
    const queue = new TrainingQueue();
    const first = runChain(runner, 'rescrape', { trigger: 'cron', chain: true, minNewExamples: 1, trainingQueue: queue });
    await waitFor(() => calls.includes('retrain:morris:start'));
    const second = runChain(runner, 'rescrape', { trigger: 'cron', chain: true, minNewExamples: 1, columnist: 'rival', trainingQueue: queue });
    await waitFor(() => queue.waiting().includes('rival'));
    expect(calls).not.toContain('retrain:rival:start');
    release();
    const [a, b] = await Promise.all([first, second]);
    expect(calls.indexOf('retrain:rival:start')).toBeGreaterThan(calls.indexOf('evaluate:morris:a-morris'));
    expect([...a, ...b].map((r) => r.status)).not.toContain('skipped');
    expect(b.map((r) => r.job)).toEqual(['rescrape', 'rebuild', 'retrain', 'evaluate']);
    expect(queue.waiting()).toEqual([]);
  });

  it('the scheduler runs each voice on its schedule and skips a broken one with the reason, the others unaffected', async () => {
    const calls: string[] = [];
    const runner = new JobRunner(t.store, handlers(calls));
    let brokenWhy: string | null = 'profile x.json: keep.0: expected a valid regular expression';
    const s = startScheduler(runner, {
      crons: { rescrape: 'off', rebuild: 'off', retrain: 'off' },
      timezone: 'UTC',
      chain: false,
      minNewExamples: 1,
      voices: [
        { columnist: 'rival', crons: { rescrape: '0 5 * * *', rebuild: 'off', retrain: 'off' }, minNewExamples: 1, problem: () => null },
        { columnist: 'broken', crons: { rescrape: '0 6 * * *', rebuild: 'off', retrain: 'off' }, minNewExamples: 1, problem: () => brokenWhy },
      ],
    });
    try {
      expect(s.jobs().map((j) => `${j.columnist}:${j.job}:${j.expression}`)).toEqual(['rival:rescrape:0 5 * * *', 'broken:rescrape:0 6 * * *']);
      // The logger writes JSON lines to fd 2 synchronously: the skip must say which voice and why.
      const logged: string[] = [];
      const write = vi.spyOn(fs, 'writeSync').mockImplementation(((fd: number, data: unknown) => {
        if (fd === 2) logged.push(String(data));
        return typeof data === 'string' ? Buffer.byteLength(data) : 0;
      }) as typeof fs.writeSync);
      try {
        await s.tick('rescrape', 'broken');
      } finally {
        write.mockRestore();
      }
      const skip = logged.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l['msg'] === 'scheduled chain skipped: the columnist folder does not load');
      expect(skip, logged.join('')).toMatchObject({ columnist: 'broken', job: 'rescrape', reason: brokenWhy });
      await s.tick('rescrape', 'rival');
      expect(calls).toEqual(['rescrape:rival']);
      expect(listRuns(t.store, { columnist: 'broken' })).toEqual([]);
      brokenWhy = null; // fixed: the next tick runs it
      await s.tick('rescrape', 'broken');
      expect(calls).toEqual(['rescrape:rival', 'rescrape:broken']);
      await expect(s.tick('rescrape', 'nobody')).rejects.toThrow(/No schedule for columnist "nobody"/);
    } finally {
      await s.stop();
      await s.settled();
    }
  });

  it('admin commands run a named voice\'s chain and registry; an unknown voice is refused', async () => {
    const calls: string[] = [];
    const runner = new JobRunner(t.store, handlers(calls));
    const admin = createAdminActions({
      control: new JobControl(runner, { chain: false, minNewExamples: 1 }),
      registry: new AdapterRegistry(t.store),
      generator: { generate: () => (async function* () {})(), info: async () => ({ backend: 'test', baseModel: null, adapterId: null, datasetId: null }) },
      voice: (name) => {
        if (name !== 'rival') throw new MorrisError('UNKNOWN_COLUMNIST', `No columnist named "${name}". Known columnists: morris, rival.`);
        return { name, minNewExamples: 3 };
      },
    });
    const actor = { platform: 'slack' as const, userId: 'UADMIN' };
    expect(await admin.rescrape(actor, 'rival')).toMatch(/^Started rescrape for rival: job #\d+\.$/);
    await waitFor(() => calls.includes('rescrape:rival'));
    expect(listRuns(t.store, { job: 'rescrape' })[0]!.columnist).toBe('rival');
    expect(await admin.adapters(actor, 'rival')).toBe('No adapters yet for rival; the base model answers.');
    await expect(admin.rollback(actor, 'rival')).rejects.toThrow('No adapter is active for rival');
    await expect(admin.retrain(actor, 'nobody')).rejects.toMatchObject({ code: 'UNKNOWN_COLUMNIST' });
  });

  it("voice schedules come from the folders: each voice's own crons; a broken profile is the tick's reason to skip", () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-voice-sched-'));
    try {
      fs.cpSync(path.join(COLUMNISTS_DIR, 'morris'), path.join(root, 'morris'), { recursive: true });
      const config = loadConfig({ MORRIS_COLUMNISTS_DIR: root, MORRIS_CRON_REBUILD: '0 1 * * *' });
      for (const name of ['rival', 'house']) {
        addColumnist(name, config);
        fs.writeFileSync(path.join(root, name, 'system-prompt.md'), `You are ${name}.\n`);
      }
      fs.writeFileSync(path.join(root, 'rival', 'columnist.json'), JSON.stringify({ displayName: 'R', attribution: 'r', schedule: { rescrape: '0 5 * * 2' }, retrain: { minNewExamples: 7 } }));
      const profile = path.join(root, 'house', 'sources', 'site.json');
      fs.writeFileSync(profile, JSON.stringify({ name: 'site', feeds: [] }));
      fs.mkdirSync(path.join(root, 'half-made'));
      const v = voiceSchedules(config);
      expect(v.map((x) => x.columnist)).toEqual(['house', 'rival']);
      expect(v[1]).toMatchObject({ crons: { rescrape: '0 5 * * 2', rebuild: '0 1 * * *', retrain: 'off' }, minNewExamples: 7 });
      expect(v[1]!.problem()).toBeNull();
      expect(v[0]!.problem()).toContain(`Invalid source profile ${profile}`);
      expect(v[0]!.problem()).toContain('a profile needs at least one listing, feed or sitemap');
      // The default voice: its file over MORRIS_CRON_* (same as config until the file sets them).
      expect(withDefaultVoice(scheduleFromConfig(config), config).crons).toEqual({ rescrape: '0 3 * * 1', rebuild: '0 1 * * *', retrain: 'off' });
      fs.writeFileSync(path.join(root, 'morris', 'columnist.json'), JSON.stringify({ displayName: 'M', attribution: 'm', schedule: { retrain: '0 4 * * 0' }, retrain: { minNewExamples: 2 } }));
      expect(withDefaultVoice(scheduleFromConfig(config), config)).toMatchObject({ crons: { rescrape: '0 3 * * 1', rebuild: '0 1 * * *', retrain: '0 4 * * 0' }, minNewExamples: 2 });
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
