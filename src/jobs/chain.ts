/**
 * The chain: rescrape → rebuild (only if the scrape changed anything) → retrain (only if the new
 * dataset brings at least `minNewExamples` new examples) → evaluate (always after a retrain: a new
 * adapter goes live only through the evaluation gate). Each step is its own job run, linked to the
 * previous one by parent_id; why the chain stopped is written to the last run's log. Then, when
 * readers have made preference pairs, a DPO stage on top of the retrained adapter → evaluate. A
 * chain can also start at 'dpo' (the scheduler does when MORRIS_DPO_MIN_NEW_PAIRS new pairs have
 * arrived): DPO on top of the active adapter → evaluate. Every step is the chain's voice's: its
 * DPO learns from readers' pairs on that voice's articles only, from that voice's adapter.
 */
import type { JobRunner, Triggered } from './runner.ts';
import type { JobRun } from '../store/job-runs.ts';
import { appendLog, listRuns } from '../store/job-runs.ts';
import type { Store } from '../store/db.ts';
import { preferencePairs } from '../store/feedback.ts';
import { findAdapter } from './registry.ts';
import { DEFAULT_COLUMNIST_NAME } from '../paths.ts';
import type { TrainingQueue } from './training-queue.ts';

export type ChainStart = 'rescrape' | 'rebuild' | 'retrain' | 'dpo';

export interface ChainOptions {
  trigger: string;
  /** Continue to the next step when the previous one warrants it. */
  chain: boolean;
  minNewExamples: number;
  /** MORRIS_DPO_MIN_NEW_PAIRS: 0 turns the DPO stage off (absent: off). */
  dpoMinNewPairs?: number;
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
export interface DpoInput {
  /** The adapter to train on top of; null: the base model; absent: the active adapter. */
  referenceAdapterId?: string | null;
  resume?: boolean;
  settings?: Record<string, unknown>;
}
export interface DpoResult {
  adapterId: string;
  referenceAdapterId: string | null;
  /** Pairs readers had made when it ran: new pairs are counted from here. */
  pairs: number;
  preference: { heldOut: number; initial: number; final: number };
  summary: string;
}

/** Fewest pairs a DPO stage can use: one to train on and one held out for the gate. */
export const DPO_MIN_PAIRS = 2;

/**
 * Pairs readers have made on `columnist`'s articles, and how many of them arrived since that
 * voice's last successful DPO run (each voice's DPO learns from its own pairs only).
 */
export function pairsSinceLastDpo(store: Store, columnist: string = DEFAULT_COLUMNIST_NAME, total = preferencePairs(store, columnist).length): { total: number; fresh: number } {
  const last = listRuns(store, { job: 'dpo', columnist, limit: 50 }).find((r) => r.status === 'succeeded');
  return { total, fresh: total - ((last?.result as DpoResult | undefined)?.pairs ?? 0) };
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

  const dpoStage = async (input: DpoInput, parent: JobRun | undefined) => {
    const d = await step('dpo', input, parent);
    if (d.status !== 'succeeded') return runs;
    await step('evaluate', { adapterId: (d.result as DpoResult).adapterId }, d);
    return runs;
  };
  const voice = opts.columnist ?? DEFAULT_COLUMNIST_NAME;
  if (start === 'dpo') {
    const reference = (opts.input ?? {}) as DpoInput;
    return opts.trainingQueue ? opts.trainingQueue.turn(voice, () => dpoStage(reference, undefined)) : dpoStage(reference, undefined);
  }

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
  // Training and the gate's measuring fill the machine: one voice at a time (opts.trainingQueue).
  const inTurn = (work: () => Promise<JobRun[]>) => (opts.trainingQueue ? opts.trainingQueue.turn(voice, work) : work());
  return inTurn(async () => {
    const retrained = await step('retrain', start === 'retrain' ? (opts.input ?? {}) : { datasetId }, prev);
    if (retrained.status !== 'succeeded') return runs;
    const evaluated = await step('evaluate', { adapterId: (retrained.result as RetrainResult).adapterId }, retrained);
    // Readers in the loop: a DPO stage on top of the new adapter when readers have made pairs.
    if (!opts.dpoMinNewPairs || !opts.chain || evaluated.status !== 'succeeded') return runs;
    const retrainedId = (retrained.result as RetrainResult).adapterId;
    // A rejected adapter (it copies training text) is no base for anything.
    if (findAdapter(runner.store, retrainedId)?.status === 'rejected') return stop(evaluated, `adapter ${retrainedId} was rejected: no DPO stage on top of it`);
    const { total } = pairsSinceLastDpo(runner.store, voice);
    if (total < DPO_MIN_PAIRS) return stop(evaluated, `readers have made ${total} preference pairs on ${voice}'s articles (< ${DPO_MIN_PAIRS} needed for a DPO stage)`);
    return dpoStage({ referenceAdapterId: retrainedId }, evaluated);
  });
}
