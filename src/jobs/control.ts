/**
 * What the CLI, the dashboard and the bots' admin commands call to start and cancel jobs: one
 * place that knows a manual "retrain" also runs the evaluation gate, and that "rescrape" goes on
 * down the chain when chaining is on.
 */
import { childLog } from '../log.ts';
import { runChain, type ChainStart } from './chain.ts';
import { requestCancel, type JobRunner, type Triggered } from './runner.ts';
import { getRun, type JobRun } from '../store/job-runs.ts';
import type { TrainingQueue } from './training-queue.ts';

const log = childLog('jobs');

export const CHAIN_STARTS: readonly ChainStart[] = ['rescrape', 'rebuild', 'retrain', 'dpo'];

export interface StartedJob {
  /** The first run of what was started (status 'skipped' when that job was already running). */
  run: JobRun;
  started: boolean;
  /** Every run the start led to, once all are done. */
  finished: Promise<JobRun[]>;
}

export class JobControl {
  constructor(
    readonly runner: JobRunner,
    private readonly spec: { chain: boolean; minNewExamples: number; dpoMinNewPairs?: number; trainingQueue?: TrainingQueue },
  ) {}

  /** Starts `job` (and what follows it in the chain); resolves once the first run exists. */
  /** `columnist` runs the chain for that voice, with its own retrain threshold (`minNewExamples`). */
  start(job: string, opts: { trigger: string; input?: unknown; chain?: boolean; columnist?: string; minNewExamples?: number }): Promise<StartedJob> {
    if (!CHAIN_STARTS.includes(job as ChainStart)) {
      const input = opts.columnist ? { ...(opts.input as object | undefined), columnist: opts.columnist } : opts.input;
      const t = this.runner.trigger(job, { trigger: opts.trigger, input });
      return Promise.resolve({ run: t.run, started: t.started, finished: t.done.then((r) => [r]) });
    }
    return new Promise((resolve, reject) => {
      let first: Triggered | undefined;
      const finished = runChain(this.runner, job as ChainStart, {
        trigger: opts.trigger,
        chain: opts.chain ?? this.spec.chain,
        minNewExamples: opts.minNewExamples ?? this.spec.minNewExamples,
        dpoMinNewPairs: this.spec.dpoMinNewPairs,
        input: opts.input,
        ...(opts.columnist ? { columnist: opts.columnist } : {}),
        ...(this.spec.trainingQueue ? { trainingQueue: this.spec.trainingQueue } : {}),
        onTrigger: (t) => {
          if (first) return;
          first = t;
          // Called from inside runChain's first step, before `finished` is assigned.
          queueMicrotask(() => resolve({ run: t.run, started: t.started, finished }));
        },
      });
      finished.catch((e) => {
        if (!first) reject(e);
        else log.error({ err: e, job }, 'chain failed');
      });
    });
  }

  /** Cancels a run whether this process owns it or another one does. */
  cancel(runId: number): JobRun {
    if (this.runner.cancel(runId)) return getRun(this.runner.store, runId);
    return requestCancel(this.runner.store, runId);
  }
}
