/**
 * Cron schedules (node-cron) for rescrape, rebuild and retrain. Each tick starts the chain from
 * that job; overlap is refused by the runner (recorded as 'skipped'), not by node-cron, so a tick
 * that lands while a CLI-started run is going is skipped too. The default columnist runs on
 * `crons`; every other columnist on its own schedule (`voices`), its folder checked at each tick
 * so a broken one is skipped with the reason logged while the others keep running. With
 * MORRIS_DPO_MIN_NEW_PAIRS > 0, a check every minute per columnist starts that voice's DPO chain
 * once that many new reader pairs on its articles have arrived.
 */
import cron, { type ScheduledTask } from 'node-cron';
import { CRON_EXPECTED, isFiveFieldCron, isTimeZone } from '../config.ts';
import { MorrisError } from '../errors.ts';
import { childLog } from '../log.ts';
import { pairsSinceLastDpo, runChain, type ChainStart } from './chain.ts';
import type { JobRunner } from './runner.ts';
import type { TrainingQueue } from './training-queue.ts';

const log = childLog('scheduler');

export interface ScheduleSpec {
  /** Cron expression (five fields, no seconds) or 'off', per chain start. */
  crons: Record<CronStart, string>;
  timezone: string;
  chain: boolean;
  minNewExamples: number;
  /** New reader pairs that start a DPO chain on their own (0 or absent: the DPO stage is off). */
  dpoMinNewPairs?: number;
  /** The other columnists' chains (the default one's is `crons`). */
  voices?: VoiceSchedule[];
  /** Shared by every chain: one training at a time, in turn. */
  trainingQueue?: TrainingQueue;
}

/** One non-default columnist's chain schedule. */
export interface VoiceSchedule {
  columnist: string;
  crons: Record<CronStart, string>;
  minNewExamples: number;
  /** Why the folder cannot be used right now (checked at each tick), or null. */
  problem(): string | null;
}

/** The chain starts with a cron schedule of their own; 'dpo' is started by arriving pairs. */
export type CronStart = Exclude<ChainStart, 'dpo'>;

/** How often arriving pairs are counted. */
const DPO_WATCH_CRON = '* * * * *';

export interface ScheduledJob {
  job: ChainStart;
  expression: string;
  nextRun: string | null;
  /** Set for another columnist's schedule; absent for the default one's. */
  columnist?: string;
}

export interface Scheduler {
  jobs(): ScheduledJob[];
  /** Fires the tick for `job` now, exactly as the cron would (used by tests and the API); `columnist` for another voice's. */
  tick(job: ChainStart, columnist?: string): Promise<void>;
  /** Stops the cron ticks; chains already going carry on. */
  stop(): Promise<void>;
  /** Resolves when no chain started by this scheduler is still going. */
  settled(): Promise<void>;
}

export function scheduleFromConfig(c: {
  MORRIS_CRON_RESCRAPE: string;
  MORRIS_CRON_REBUILD: string;
  MORRIS_CRON_RETRAIN: string;
  MORRIS_CRON_TZ: string;
  MORRIS_CHAIN: boolean;
  MORRIS_RETRAIN_MIN_NEW_EXAMPLES: number;
  MORRIS_DPO_MIN_NEW_PAIRS?: number;
}): ScheduleSpec {
  return {
    crons: { rescrape: c.MORRIS_CRON_RESCRAPE, rebuild: c.MORRIS_CRON_REBUILD, retrain: c.MORRIS_CRON_RETRAIN },
    timezone: c.MORRIS_CRON_TZ,
    chain: c.MORRIS_CHAIN,
    minNewExamples: c.MORRIS_RETRAIN_MIN_NEW_EXAMPLES,
    dpoMinNewPairs: c.MORRIS_DPO_MIN_NEW_PAIRS ?? 0,
  };
}

export function startScheduler(runner: JobRunner, spec: ScheduleSpec): Scheduler {
  if (!isTimeZone(spec.timezone)) {
    throw new MorrisError('CONFIG_INVALID', `MORRIS_CRON_TZ="${spec.timezone}" is not a time zone this system knows.`, {
      hint: 'Use an IANA name such as UTC or Europe/London.',
    });
  }
  const tasks = new Map<string, { job: ChainStart; columnist?: string; task: ScheduledTask }>();
  const inFlight = new Set<Promise<unknown>>();
  const voices = new Map((spec.voices ?? []).map((v) => [v.columnist, v]));

  const dpoMin = spec.dpoMinNewPairs ?? 0;
  const tick = async (job: ChainStart, columnist?: string): Promise<void> => {
    const voice = columnist === undefined ? undefined : voices.get(columnist);
    if (columnist !== undefined && !voice) throw new MorrisError('NOT_FOUND', `No schedule for columnist "${columnist}".`);
    const problem = voice?.problem() ?? null;
    if (problem) {
      log.warn({ columnist, job, reason: problem }, 'scheduled chain skipped: the columnist folder does not load');
      return;
    }
    if (job === 'dpo') {
      // Counting pairs is a read of the feedback table: cheap enough for every minute.
      const { fresh } = pairsSinceLastDpo(runner.store, columnist);
      if (dpoMin === 0 || fresh < dpoMin) return;
      log.info({ fresh, needed: dpoMin, columnist }, 'enough new reader pairs: starting a DPO stage');
    }
    const p = runChain(runner, job, {
      trigger: job === 'dpo' ? 'new-pairs' : 'cron',
      chain: spec.chain,
      minNewExamples: voice?.minNewExamples ?? spec.minNewExamples,
      dpoMinNewPairs: dpoMin,
      ...(voice ? { columnist: voice.columnist } : {}),
      ...(spec.trainingQueue ? { trainingQueue: spec.trainingQueue } : {}),
    }).catch((e) => log.error({ err: e, job, columnist }, 'scheduled chain failed'));
    inFlight.add(p);
    try {
      await p;
    } finally {
      inFlight.delete(p);
    }
  };

  const schedule = (crons: Record<CronStart, string>, columnist?: string) => {
    // Each voice's readers' pairs train that voice: one watch per columnist.
    if (dpoMin > 0) {
      const key = columnist ? `${columnist}:dpo` : 'dpo';
      tasks.set(key, { job: 'dpo', ...(columnist ? { columnist } : {}), task: cron.schedule(DPO_WATCH_CRON, () => void tick('dpo', columnist), { timezone: spec.timezone, name: `morris-${key}-watch` }) });
    }
    for (const job of Object.keys(crons) as CronStart[]) {
      const expression = crons[job].trim();
      if (expression === 'off') continue;
      // node-cron would also take six fields (seconds first) and fire every second: config refuses
      // that at start, and so does the scheduler for specs that did not come from config.
      if (!isFiveFieldCron(expression)) {
        throw new MorrisError('CONFIG_INVALID', `Cron expression for ${columnist ? `${columnist}'s ` : ''}${job} is invalid: "${expression}".`, {
          hint: `${CRON_EXPECTED.replace(/^expected/, 'Use')}.`,
        });
      }
      const key = columnist ? `${columnist}:${job}` : job;
      // The task function returns at once: a long chain must not make node-cron report missed ticks.
      const task = cron.schedule(expression, () => void tick(job, columnist), { timezone: spec.timezone, name: `morris-${key}` });
      tasks.set(key, { job, ...(columnist ? { columnist } : {}), task });
    }
  };
  schedule(spec.crons);
  for (const v of voices.values()) schedule(v.crons, v.columnist);
  log.info({ jobs: [...tasks.keys()], timezone: spec.timezone, chain: spec.chain }, 'scheduler started');

  return {
    jobs: () =>
      [...tasks.values()].map(({ job, columnist, task }) => ({
        job,
        expression: task.getPattern(),
        nextRun: task.getNextRun()?.toISOString() ?? null,
        ...(columnist ? { columnist } : {}),
      })),
    tick,
    async stop() {
      for (const t of tasks.values()) await t.task.destroy();
      tasks.clear();
    },
    async settled() {
      // Chains in flight end when their current job ends (runner.shutdown() cancels it).
      await Promise.allSettled([...inFlight]);
    },
  };
}
