/**
 * The chain: rescrape → rebuild (only if the scrape changed anything) → retrain (only if the new
 * dataset brings at least `minNewExamples` new examples) → evaluate (always after a retrain: a new
 * adapter goes live only through the evaluation gate). Each step is its own job run, linked to the
 * previous one by parent_id; why the chain stopped is written to the last run's log.
 */
import type { JobRunner, Triggered } from './runner.ts';
import type { JobRun } from '../store/job-runs.ts';
import { appendLog } from '../store/job-runs.ts';
import { DEFAULT_COLUMNIST_NAME } from '../paths.ts';
import type { TrainingQueue } from './training-queue.ts';

export type ChainStart = 'rescrape' | 'rebuild' | 'retrain';

export interface ChainOptions {
  trigger: string;
  /** Continue to the next step when the previous one warrants it. */
  chain: boolean;
  minNewExamples: number;
  /** Input for the first job (e.g. {datasetId} for retrain). */
  input?: unknown;
  /** The voice the whole chain runs for (default: the default columnist); every step gets it. */
  columnist?: string;
  /** Called as each step is triggered (started or skipped), before it finishes. */
  onTrigger?: (t: Triggered) => void;
  /** Retrain and evaluate wait here for their turn (one training at a time on the host). */
  trainingQueue?: TrainingQueue;
}

export interface RescrapeResult {
  changed: boolean;
  /** Articles new to the store, and stored ones whose content changed. */
  new: number;
  updated: number;
  summary: string;
}
export interface RebuildResult {
  datasetId: string;
  changed: boolean;
  newExamples: number;
  summary: string;
}
export interface RetrainResult {
  adapterId: string;
  summary: string;
}

/** Runs the chain from `start`; resolves with every run it made, in order. */
export async function runChain(runner: JobRunner, start: ChainStart, opts: ChainOptions): Promise<JobRun[]> {
  const runs: JobRun[] = [];
  const step = async (job: string, stepInput: unknown, parent: JobRun | undefined) => {
    const input = opts.columnist ? { ...(stepInput as object), columnist: opts.columnist } : stepInput;
    const t = runner.trigger(job, { trigger: parent ? `chain:${parent.job}#${parent.id}` : opts.trigger, input, parentId: parent?.id ?? null });
    opts.onTrigger?.(t);
    const r = await t.done;
    runs.push(r);
    return r;
  };
  const stop = (r: JobRun, why: string) => {
    appendLog(runner.store, r.id, `chain stops here: ${why}`);
    return runs;
  };

  let prev: JobRun | undefined;
  let datasetId: string | undefined;
  if (start === 'rescrape') {
    prev = await step('rescrape', opts.input ?? {}, undefined);
    if (prev.status !== 'succeeded') return runs;
    if (!opts.chain) return runs;
    if (!(prev.result as RescrapeResult).changed) return stop(prev, 'the scrape found nothing new or changed');
  }
  if (start === 'rescrape' || start === 'rebuild') {
    prev = await step('rebuild', start === 'rebuild' ? (opts.input ?? {}) : {}, prev);
    if (prev.status !== 'succeeded') return runs;
    if (!opts.chain) return runs;
    const built = prev.result as RebuildResult;
    if (built.newExamples < opts.minNewExamples) {
      return stop(prev, `dataset ${built.datasetId} has ${built.newExamples} new examples (< ${opts.minNewExamples} needed to retrain)`);
    }
    datasetId = built.datasetId;
  }
  const trainAndGate = async (): Promise<void> => {
    const trained = await step('retrain', start === 'retrain' ? (opts.input ?? {}) : { datasetId }, prev);
    if (trained.status !== 'succeeded') return;
    await step('evaluate', { adapterId: (trained.result as RetrainResult).adapterId }, trained);
  };
  await (opts.trainingQueue ? opts.trainingQueue.turn(opts.columnist ?? DEFAULT_COLUMNIST_NAME, trainAndGate) : trainAndGate());
  return runs;
}
