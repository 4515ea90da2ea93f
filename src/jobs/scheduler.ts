/**
 * Cron schedules (node-cron) for rescrape, rebuild and retrain. Each tick starts the chain from
 * that job; overlap is refused by the runner (recorded as 'skipped'), not by node-cron, so a tick
 * that lands while a CLI-started run is going is skipped too. With MORRIS_DPO_MIN_NEW_PAIRS > 0, a
 * check every minute starts the DPO chain once that many new reader pairs have arrived.
 */
import cron, { type ScheduledTask } from 'node-cron';
import { CRON_EXPECTED, isFiveFieldCron, isTimeZone } from '../config.ts';
import { MorrisError } from '../errors.ts';
import { childLog } from '../log.ts';
import { pairsSinceLastDpo, runChain, type ChainStart } from './chain.ts';
import type { JobRunner } from './runner.ts';

const log = childLog('scheduler');

export interface ScheduleSpec {
  /** Cron expression (five fields, no seconds) or 'off', per chain start. */
  crons: Record<CronStart, string>;
  timezone: string;
  chain: boolean;
  minNewExamples: number;
  /** New reader pairs that start a DPO chain on their own (0 or absent: the DPO stage is off). */
  dpoMinNewPairs?: number;
}

/** The chain starts with a cron schedule of their own; 'dpo' is started by arriving pairs. */
export type CronStart = Exclude<ChainStart, 'dpo'>;

/** How often arriving pairs are counted. */
const DPO_WATCH_CRON = '* * * * *';

export interface ScheduledJob {
  job: ChainStart;
  expression: string;
  nextRun: string | null;
}

export interface Scheduler {
  jobs(): ScheduledJob[];
  /** Fires the tick for `job` now, exactly as the cron would (used by tests and the API). */
  tick(job: ChainStart): Promise<void>;
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
  const tasks = new Map<ChainStart, ScheduledTask>();
  const inFlight = new Set<Promise<unknown>>();

  const dpoMin = spec.dpoMinNewPairs ?? 0;
  const tick = async (job: ChainStart): Promise<void> => {
    if (job === 'dpo') {
      // Counting pairs is a read of the feedback table: cheap enough for every minute.
      const { fresh } = pairsSinceLastDpo(runner.store);
      if (dpoMin === 0 || fresh < dpoMin) return;
      log.info({ fresh, needed: dpoMin }, 'enough new reader pairs: starting a DPO stage');
    }
    const trigger = job === 'dpo' ? 'new-pairs' : 'cron';
    const p = runChain(runner, job, { trigger, chain: spec.chain, minNewExamples: spec.minNewExamples, dpoMinNewPairs: dpoMin }).catch((e) =>
      log.error({ err: e, job }, 'scheduled chain failed'),
    );
    inFlight.add(p);
    try {
      await p;
    } finally {
      inFlight.delete(p);
    }
  };

  if (dpoMin > 0) tasks.set('dpo', cron.schedule(DPO_WATCH_CRON, () => void tick('dpo'), { timezone: spec.timezone, name: 'morris-dpo-watch' }));
  for (const job of Object.keys(spec.crons) as CronStart[]) {
    const expression = spec.crons[job].trim();
    if (expression === 'off') continue;
    // node-cron would also take six fields (seconds first) and fire every second: config refuses
    // that at start, and so does the scheduler for specs that did not come from config.
    if (!isFiveFieldCron(expression)) {
      throw new MorrisError('CONFIG_INVALID', `Cron expression for ${job} is invalid: "${expression}".`, {
        hint: `${CRON_EXPECTED.replace(/^expected/, 'Use')}.`,
      });
    }
    // The task function returns at once: a long chain must not make node-cron report missed ticks.
    const task = cron.schedule(expression, () => void tick(job), { timezone: spec.timezone, name: `morris-${job}` });
    tasks.set(job, task);
  }
  log.info({ jobs: [...tasks.keys()], timezone: spec.timezone, chain: spec.chain }, 'scheduler started');

  return {
    jobs: () =>
      [...tasks.entries()].map(([job, t]) => ({ job, expression: t.getPattern(), nextRun: t.getNextRun()?.toISOString() ?? null })),
    tick,
    async stop() {
      for (const t of tasks.values()) await t.destroy();
      tasks.clear();
    },
    async settled() {
      // Chains in flight end when their current job ends (runner.shutdown() cancels it).
      await Promise.allSettled([...inFlight]);
    },
  };
}
