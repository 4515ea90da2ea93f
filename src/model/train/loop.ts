/**
 * The training loop of `trainAdapter` (SFT) and `trainDpo`: optimizer steps over the seeded
 * stream of items (examples, or preference pairs), with evaluation, early stopping and checkpoints
 * on schedule. What a micro-batch's loss is and what "validation loss" means come from the
 * objective; the stream, accumulation, clipping, AdamW, divergence check, checkpoints and resume
 * are the same for both. It only computes and records; the trainers prepare the data and sessions
 * before it and write the adapter after it.
 */
import { MorrisError } from '../../errors.ts';
import { childLog } from '../../log.ts';
import { adamwStep, clipGradNorm, type AdamWState } from './adamw.ts';
import { loadCheckpoint, saveCheckpoint, type TrainState } from './checkpoint.ts';
import type { TrainConfig } from './config.ts';
import { makeMicroBatch, targetCount, type TokenizedExample } from './data.ts';
import { Rng } from './rng.ts';
import { getLr, type Schedule } from './schedule.ts';
import type { StepResult, TrainingSessions } from './step.ts';
import type { TrainCallbacks } from './trainer.ts';
import type { TrainMetricRow } from '../../store/train-metrics.ts';

const log = childLog('train');

/** What a run carries from step to step (and what a checkpoint holds). */
export interface RunState {
  state: TrainState;
  weights: Map<string, Float32Array>;
  adam: AdamWState;
  best: Map<string, Float32Array> | null;
}

/** One logged loss, as the train_metrics table stores it. */
export type MetricPoint = TrainMetricRow;

/** What the loop trains on: items of type T and how they become losses and gradients. */
export interface LoopObjective<T> {
  /** The training items; each optimizer step takes a window of their seeded stream. */
  readonly items: readonly T[];
  /** Items per micro-batch. */
  readonly microBatch: number;
  /** Loss and gradients of one micro-batch, weighted so the step's micro-batches sum to its mean. */
  micro(batch: readonly T[], stepItems: readonly T[], weights: ReadonlyMap<string, Float32Array>, rng: Rng): Promise<StepResult>;
  /** Held-out loss (lower is better; early stopping and the best weights follow it), null without. */
  evaluate(weights: ReadonlyMap<string, Float32Array>): Promise<number | null>;
  /** Tokens learnt from, and tokens run (throughput). */
  targets(item: T): number;
  length(item: T): number;
}

/** Supervised fine-tuning: token-weighted cross-entropy over assistant tokens. */
export function sftObjective(sessions: TrainingSessions, train: readonly TokenizedExample[], val: readonly TokenizedExample[], padId: number, microBatch: number): LoopObjective<TokenizedExample> {
  return {
    items: train,
    microBatch,
    micro: (batch, stepItems, weights, rng) => {
      const tokens = stepItems.reduce((a, e) => a + targetCount(e), 0);
      return sessions.step(makeMicroBatch(batch, padId), weights, 1 / tokens, rng);
    },
    evaluate: async (weights) => {
      if (val.length === 0) return null;
      const tokens = val.reduce((a, e) => a + targetCount(e), 0);
      let loss = 0;
      for (let i = 0; i < val.length; i += microBatch) loss += await sessions.evalLoss(makeMicroBatch(val.slice(i, i + microBatch), padId), weights, 1 / tokens);
      return loss;
    },
    targets: targetCount,
    length: (e) => e.ids.length - 1,
  };
}

export interface LoopSetup<T> {
  cfg: TrainConfig;
  objective: LoopObjective<T>;
  perStep: number;
  totalExamples: number;
  totalSteps: number;
  schedule: Schedule;
  runDir: string;
  fingerprint: string;
  shapes: Map<string, readonly number[]>;
  recordMetric(m: MetricPoint): void;
}

/** Runs the loop from `run.state.step` to the end (or early stop); returns whether it stopped early. */
export async function runTrainingLoop<T>(setup: LoopSetup<T>, run: RunState, cb: TrainCallbacks): Promise<{ stoppedEarly: boolean }> {
  const { cfg, objective, runDir, fingerprint, shapes, recordMetric, perStep, totalExamples, totalSteps, schedule } = setup;
  const microBatch = objective.microBatch;
  let { state, weights, adam, best } = run;
  const sync = () => Object.assign(run, { state, weights, adam, best });
  const checkpoint = () => saveCheckpoint(runDir, { state, weights, best, adam, fingerprint }, shapes);

  const evaluate = (): Promise<number | null> => objective.evaluate(weights);

  if (state.step === 0 && state.firstEvalLoss === null) {
    state.firstEvalLoss = await evaluate();
    if (state.firstEvalLoss !== null) recordMetric({ step: 0, kind: 'eval', loss: state.firstEvalLoss });
  }

  const stopForAbort = (): never => {
    checkpoint();
    throw new MorrisError('CANCELLED', `Training stopped at step ${state.step}/${totalSteps}; resume with --resume.`);
  };

  // --- the loop ---
  let stoppedEarly = false;
  const sessionStart = Date.now();
  const secondsBefore = state.seconds;
  const stepsBefore = state.step;
  while (state.step < totalSteps) {
    if (cb.signal?.aborted) stopForAbort();
    const t0 = Date.now();
    const step = state.step;
    const examples = stepExamples(objective.items, step, perStep, totalExamples, cfg.seed);
    const tokens = examples.reduce((a, e) => a + objective.targets(e), 0);
    const grads = new Map([...weights].map(([k, v]) => [k, new Float32Array(v.length)]));
    let loss = 0;
    for (let i = 0, micro = 0; i < examples.length; i += microBatch, micro++) {
      // A long accumulation need not finish: the checkpoint is the last whole optimizer step.
      if (cb.signal?.aborted) stopForAbort();
      const r = await objective.micro(examples.slice(i, i + microBatch), examples, weights, new Rng(mix(cfg.seed, step, micro)));
      loss += r.loss;
      for (const [k, g] of r.grads) {
        const acc = grads.get(k)!;
        for (let j = 0; j < acc.length; j++) acc[j]! += g[j]!;
      }
    }
    const gradNorm = clipGradNorm(grads, cfg.maxGradNorm);
    if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) {
      throw new MorrisError('TRAINING_DIVERGED', `Training diverged at step ${step + 1}: the loss is ${loss}${Number.isFinite(gradNorm) ? '' : ` and the gradient norm ${gradNorm}`}. The last good checkpoint (step ${loadCheckpoint(runDir)?.state.step ?? 0}) is kept in ${runDir}.`, {
        hint: `Lower the learning rate (now ${cfg.lr}) or keep gradient clipping on (maxGradNorm), then train again.`,
      });
    }
    const lr = getLr(step, schedule);
    adamwStep(weights, grads, adam, lr, cfg);
    state.step = step + 1;
    state.tokens += tokens;
    state.lastTrainLoss = loss;
    state.seconds = secondsBefore + (Date.now() - sessionStart) / 1000;
    const stepS = (Date.now() - t0) / 1000;
    const tokensPerS = examples.reduce((a, e) => a + objective.length(e), 0) / Math.max(stepS, 1e-6);
    const etaS = ((Date.now() - sessionStart) / 1000 / Math.max(1, state.step - stepsBefore)) * (totalSteps - state.step);
    recordMetric({ step: state.step, kind: 'train', loss, lr, gradNorm, tokensPerS });
    cb.onProgress?.({ phase: 'train', step: state.step, totalSteps, loss, lr, gradNorm, tokensPerS, etaS });

    const last = state.step === totalSteps;
    if ((cfg.evalEvery > 0 && state.step % cfg.evalEvery === 0) || last) {
      const evalLoss = await evaluate();
      if (evalLoss !== null) {
        recordMetric({ step: state.step, kind: 'eval', loss: evalLoss });
        cb.onProgress?.({ phase: 'eval', step: state.step, totalSteps, evalLoss });
        state.lastEvalLoss = evalLoss;
        if (!Number.isFinite(evalLoss)) {
          throw new MorrisError('TRAINING_DIVERGED', `Training diverged at step ${state.step}: the validation loss is ${evalLoss}. The last good checkpoint is kept in ${runDir}.`, {
            hint: `Lower the learning rate (now ${cfg.lr}) and train again.`,
          });
        }
        if (state.bestEvalLoss === null || evalLoss < state.bestEvalLoss - cfg.minDelta) {
          state.bestEvalLoss = evalLoss;
          state.bestStep = state.step;
          state.badEvals = 0;
          best = new Map([...weights].map(([k, v]) => [k, v.slice()]));
        } else {
          state.badEvals++;
          if (cfg.patience > 0 && state.badEvals >= cfg.patience) {
            log.info({ step: state.step, best: state.bestEvalLoss, bestStep: state.bestStep }, 'early stopping: validation loss stopped improving');
            stoppedEarly = true;
          }
        }
      }
    }
    if ((cfg.saveEvery > 0 && state.step % cfg.saveEvery === 0) || last || stoppedEarly) checkpoint();
    if (stoppedEarly) break;
  }

  sync();
  return { stoppedEarly };
}

/** The examples of optimizer step `step`: a window of the seeded, epoch-wise shuffled stream. */
export function stepExamples<T>(examples: readonly T[], step: number, perStep: number, total: number, seed: number): T[] {
  const n = examples.length;
  const out: T[] = [];
  let epoch = -1;
  let perm: number[] = [];
  for (let i = step * perStep; i < Math.min(total, (step + 1) * perStep); i++) {
    const e = Math.floor(i / n);
    if (e !== epoch) {
      epoch = e;
      perm = new Rng(mix(seed, 0x5eed, e)).permutation(n);
    }
    out.push(examples[perm[i % n]!]!);
  }
  return out;
}

/** A 32-bit seed from several integers (FNV-1a over their bytes). */
export function mix(...xs: number[]): number {
  let h = 0x811c9dc5;
  for (const x of xs) {
    for (let k = 0; k < 4; k++) {
      h ^= (x >>> (8 * k)) & 0xff;
      h = Math.imul(h, 0x01000193) >>> 0;
    }
  }
  return h;
}
