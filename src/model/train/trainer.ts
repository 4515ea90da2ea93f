/**
 * `trainAdapter`: LoRA fine-tuning of a base checkpoint on a dataset version from the store.
 *
 * One optimizer step consumes `batchSize × gradAccum` examples of a global example stream
 * (epoch e is a seeded permutation of the training split), split into micro-batches whose
 * gradients are summed with per-token weights, so the step's loss is the mean over all assistant
 * tokens it saw. Then: clip, AdamW with the scheduled rate, metrics, and on schedule an
 * evaluation, early stopping and a checkpoint. Data order and dropout masks are pure functions
 * of (seed, position), so `resume` continues to the same final weights.
 *
 * The result is a PEFT adapter folder (+ metrics.json, dataset.json) written atomically and
 * registered in the store as a 'candidate' — only when its validation loss says it learnt
 * something (judge.ts): a collapsed or unimproved run is registered 'failed' with the reason, and
 * one without a validation split is saved but not registered.
 */
import { insertAdapter } from '../../store/adapters.ts';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { getConfig } from '../../config.ts';
import { MorrisError, wrapFsError } from '../../errors.ts';
import { childLog } from '../../log.ts';
import type { Store } from '../../store/db.ts';
import { readDecoderConfig } from '../checkpoint.ts';
import type { LoraModule } from '../llama-graph.ts';
import { adamwStep, clipGradNorm, newAdamWState, type AdamWState } from './adamw.ts';
import { loadCheckpoint, saveCheckpoint, type TrainState } from './checkpoint.ts';
import { resolveTrainConfig, trainSettingsFromEnv } from './config.ts';
import {
  loadDatasetExamples,
  loadTokenizer,
  makeMicroBatch,
  padTokenId,
  prepareExamples,
  targetCount,
  type DataCounts,
  type TokenizedExample,
} from './data.ts';
import { fitMemoryBudget } from './memory.ts';
import { adapterConfigJson, initLora, realFsWriter, writeAdapter, type FsWriter } from './peft.ts';
import { Rng } from './rng.ts';
import { judgeTraining, type TrainVerdict } from './judge.ts';
import { getLr, type Schedule } from './schedule.ts';
import { TrainingSessions } from './step.ts';

const log = childLog('train');

export interface TrainOptions {
  readonly store: Store;
  readonly modelDir: string;
  /** 'latest' or a dataset id. */
  readonly dataset: string;
  /** Overrides of TRAIN_DEFAULTS (a config file's keys, then flags), applied over the environment's. */
  readonly settings?: Record<string, unknown>;
  /** Leave the environment's settings out (MORRIS_TRAIN_*, MORRIS_DEVICE): tests pin everything. */
  readonly ignoreEnv?: boolean;
  readonly resume?: boolean;
  /** Extra copy of the finished adapter folder. */
  readonly outDir?: string;
  /** Run folders (checkpoints, metrics.jsonl); default <MORRIS_DATA_DIR>/runs. */
  readonly runsDir?: string;
  /** Registered adapters; default <MORRIS_MODELS_DIR>/adapters. */
  readonly adaptersDir?: string;
  /** Compiled graph cache (default beside the model). */
  readonly cacheDir?: string;
  /** Tests inject a writer that fails like a full disk. */
  readonly fsWriter?: FsWriter;
}

export interface TrainProgress {
  readonly phase: 'train' | 'eval';
  readonly step: number;
  readonly totalSteps: number;
  readonly loss?: number;
  readonly evalLoss?: number;
  readonly lr?: number;
  readonly gradNorm?: number;
  readonly tokensPerS?: number;
  readonly etaS?: number;
}

export interface TrainCallbacks {
  onProgress?: (p: TrainProgress) => void;
  /** Aborting checkpoints the last finished step and stops with CANCELLED. */
  signal?: AbortSignal;
}

export interface TrainResult {
  readonly adapterId: string;
  readonly adapterDir: string;
  readonly runId: string;
  readonly runDir: string;
  readonly datasetId: string;
  readonly device: string;
  readonly steps: number;
  readonly stoppedEarly: boolean;
  readonly resumedFrom: number | null;
  readonly metrics: Record<string, unknown>;
  /**
   * What became of the adapter: a 'candidate' for the gate, 'failed' (registered with the reason),
   * or 'unregistered' (saved in adapterDir, not in the store: nothing could judge it).
   */
  readonly verdict: TrainVerdict;
}

export async function trainAdapter(opts: TrainOptions, cb: TrainCallbacks = {}): Promise<TrainResult> {
  const cfg = resolveTrainConfig(opts.ignoreEnv ? {} : trainSettingsFromEnv(getConfig()), opts.settings);
  const targets = cfg.targets as LoraModule[];
  const dataset = loadDatasetExamples(opts.store, opts.dataset);
  const tok = await loadTokenizer(opts.modelDir);
  const model = readDecoderConfig(opts.modelDir);

  // --- data: the context is the smaller of the setting and the model's own ---
  const maxSeqLen = Math.min(cfg.maxSeqLen, model.maxPositionEmbeddings);
  const train = prepareExamples(tok, dataset.train, maxSeqLen, cfg.overLong);
  const val = prepareExamples(tok, dataset.validation, maxSeqLen, cfg.overLong);
  if (train.examples.length === 0) {
    throw new MorrisError('DATASET_EMPTY', `Dataset ${dataset.datasetId}: no training example is usable (${describeCounts(train.counts)}).`, {
      hint: 'Examples need an assistant reply; raise maxSeqLen or use overLong "truncate" if they are too long.',
    });
  }
  if (train.counts.truncated + train.counts.skippedTooLong > 0) {
    log.warn({ truncated: train.counts.truncated, skipped: train.counts.skippedTooLong, maxSeqLen }, 'examples longer than the context');
  }

  // --- memory budget, then the sessions ---
  const longest = Math.max(...train.examples.map((e) => e.ids.length));
  const fit = fitMemoryBudget(model, cfg, cfg.batchSize, longest);
  if (fit.message) log.warn({ budgetMb: cfg.memoryMb, microBatch: fit.microBatch, maxSeqLen: fit.maxSeqLen }, fit.message);
  const sessions = await TrainingSessions.open({
    modelDir: opts.modelDir,
    rank: cfg.rank,
    alpha: cfg.alpha,
    dropout: cfg.dropout,
    targets,
    device: cfg.device as never,
    threads: cfg.threads,
    cacheDir: opts.cacheDir,
    maxTokens: fit.microBatch * fit.maxSeqLen,
  });
  sessions.evalThroughTrainGraph = !fit.separateEval;
  try {
    const trainExamples = fit.maxSeqLen < longest ? clip(train.examples, fit.maxSeqLen, train.counts) : train.examples;
    const valExamples = val.examples;

    // --- the run: identity, folders, schedule ---
    const perStep = cfg.batchSize * cfg.gradAccum;
    const totalExamples = Math.ceil(cfg.epochs * trainExamples.length);
    let totalSteps = Math.ceil(totalExamples / perStep);
    if (cfg.maxSteps > 0) totalSteps = Math.min(totalSteps, cfg.maxSteps);
    const schedule: Schedule = {
      lr: cfg.lr,
      kind: cfg.schedule,
      minLrRatio: cfg.minLrRatio,
      totalSteps,
      warmupSteps: cfg.warmupSteps > 0 ? cfg.warmupSteps : Math.floor(cfg.warmupRatio * totalSteps),
    };
    const baseModel = path.resolve(opts.modelDir);
    const fingerprint = hash(JSON.stringify({ baseModel, dataset: dataset.datasetId, cfg: { ...cfg, device: undefined, threads: undefined }, fit }));
    const runId = `run-${fingerprint.slice(0, 16)}`;
    const appConfig = opts.runsDir && opts.adaptersDir ? null : getConfig();
    const runDir = path.join(opts.runsDir ?? path.join(appConfig!.MORRIS_DATA_DIR, 'runs'), runId);
    fs.mkdirSync(runDir, { recursive: true });
    const metricsFile = path.join(runDir, 'metrics.jsonl');

    const shapes = new Map(sessions.lora.map((t) => [t.name, t.shape as readonly number[]]));
    let weights = initLora(sessions.lora, new Rng(cfg.seed));
    let adam: AdamWState = newAdamWState(weights);
    let best: Map<string, Float32Array> | null = null;
    let state: TrainState = { step: 0, bestEvalLoss: null, bestStep: null, badEvals: 0, tokens: 0, seconds: 0, lastTrainLoss: null, firstEvalLoss: null, lastEvalLoss: null };
    let resumedFrom: number | null = null;

    if (opts.resume) {
      const ck = loadCheckpoint(runDir);
      if (!ck) {
        log.warn({ runDir }, 'no checkpoint to resume from; starting from step 0');
      } else {
        if (ck.fingerprint !== fingerprint) throw new MorrisError('BAD_INPUT', `The checkpoint in ${runDir} belongs to different settings.`);
        ({ state, weights, adam, best } = ck);
        resumedFrom = state.step;
        log.info({ runDir, step: state.step }, 'resuming from checkpoint');
      }
    } else {
      fs.rmSync(path.join(runDir, 'checkpoint'), { recursive: true, force: true });
      fs.rmSync(path.join(runDir, 'checkpoint.old'), { recursive: true, force: true });
    }
    forgetMetricsAfter(opts.store, runId, metricsFile, state.step);
    const recordMetric = (m: { step: number; kind: 'train' | 'eval'; loss: number; lr?: number; gradNorm?: number; tokensPerS?: number }) => {
      opts.store
        .prepare('INSERT INTO train_metrics (run_id, step, kind, loss, lr, grad_norm, tokens_per_s) VALUES (?, ?, ?, ?, ?, ?, ?)')
        .run(runId, m.step, m.kind, m.loss, m.lr ?? null, m.gradNorm ?? null, m.tokensPerS ?? null);
      fs.appendFileSync(metricsFile, JSON.stringify({ run_id: runId, ...m, at: new Date().toISOString() }) + '\n');
    };

    log.info(
      { runId, device: sessions.device, dataset: dataset.datasetId, examples: trainExamples.length, validation: valExamples.length, totalSteps, microBatch: fit.microBatch },
      'training',
    );
    const padId = padTokenId(tok);
    const checkpoint = () => saveCheckpoint(runDir, { state, weights, best, adam, fingerprint }, shapes);

    const evaluate = async (): Promise<number | null> => {
      if (valExamples.length === 0) return null;
      const tokens = valExamples.reduce((a, e) => a + targetCount(e), 0);
      let loss = 0;
      for (let i = 0; i < valExamples.length; i += fit.microBatch) {
        loss += await sessions.evalLoss(makeMicroBatch(valExamples.slice(i, i + fit.microBatch), padId), weights, 1 / tokens);
      }
      return loss;
    };

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
      const examples = stepExamples(trainExamples, step, perStep, totalExamples, cfg.seed);
      const tokens = examples.reduce((a, e) => a + targetCount(e), 0);
      const grads = new Map([...weights].map(([k, v]) => [k, new Float32Array(v.length)]));
      let loss = 0;
      for (let i = 0, micro = 0; i < examples.length; i += fit.microBatch, micro++) {
        // A long accumulation need not finish: the checkpoint is the last whole optimizer step.
        if (cb.signal?.aborted) stopForAbort();
        const mb = makeMicroBatch(examples.slice(i, i + fit.microBatch), padId);
        const r = await sessions.step(mb, weights, 1 / tokens, new Rng(mix(cfg.seed, step, micro)));
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
      const tokensPerS = examples.reduce((a, e) => a + e.ids.length - 1, 0) / Math.max(stepS, 1e-6);
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

    // --- output: the best weights (by validation loss) when there was validation ---
    const finalWeights = best ?? weights;
    const metrics = {
      run_id: runId,
      steps: state.step,
      total_steps: totalSteps,
      stopped_early: stoppedEarly,
      train_loss: state.lastTrainLoss,
      eval_loss_initial: state.firstEvalLoss,
      eval_loss: state.bestEvalLoss ?? state.lastEvalLoss,
      eval_loss_last: state.lastEvalLoss,
      best_step: state.bestStep,
      tokens: state.tokens,
      seconds: Math.round(state.seconds * 10) / 10,
      device: sessions.device,
      micro_batch: fit.microBatch,
      max_seq_len: fit.maxSeqLen,
      data: { train: train.counts, validation: val.counts },
      settings: cfg,
    };
    const verdict = judgeTraining({
      datasetId: dataset.datasetId,
      initialValLoss: state.firstEvalLoss,
      finalValLoss: metrics.eval_loss,
      vocabSize: model.vocabSize,
      lr: cfg.lr,
    });
    const adapterId = `lora-${new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14)}-${fingerprint.slice(0, 6)}`;
    const adaptersDir = opts.adaptersDir ?? path.join(appConfig!.MORRIS_MODELS_DIR, 'adapters');
    const adapterDir = path.resolve(adaptersDir, adapterId);
    const adapterConfig = adapterConfigJson(baseModel, { rank: cfg.rank, alpha: cfg.alpha, dropout: cfg.dropout, targets });
    const extra = { 'metrics.json': { ...metrics, verdict: { status: verdict.status, reason: verdict.reason } }, 'dataset.json': { dataset_id: dataset.datasetId, counts: { train: train.counts, validation: val.counts } } };
    const writer = opts.fsWriter ?? realFsWriter;
    writeAdapter(adapterDir, adapterConfig, finalWeights, shapes, extra, writer);
    if (opts.outDir) writeAdapter(path.resolve(opts.outDir), adapterConfig, finalWeights, shapes, extra, writer);
    if (verdict.status !== 'unregistered') {
      try {
        insertAdapter(opts.store, {
          id: adapterId,
          baseModel,
          datasetId: dataset.datasetId,
          path: adapterDir,
          status: verdict.status,
          metrics,
          reason: verdict.status === 'failed' ? verdict.reason : null,
        });
      } catch (e) {
        fs.rmSync(adapterDir, { recursive: true, force: true });
        throw wrapFsError(e, 'the adapter registry');
      }
    }
    const fields = { adapterId, adapterDir, steps: state.step, evalLoss: metrics.eval_loss, device: sessions.device, verdict: verdict.status };
    if (verdict.status === 'candidate') log.info(fields, 'adapter trained');
    else log.warn({ ...fields, reason: verdict.reason }, verdict.status === 'failed' ? 'adapter trained but failed' : 'adapter saved but not registered');
    return { adapterId, adapterDir, runId, runDir, datasetId: dataset.datasetId, device: sessions.device, steps: state.step, stoppedEarly, resumedFrom, metrics, verdict };
  } finally {
    await sessions.release();
  }
}

/** The examples of optimizer step `step`: a window of the seeded, epoch-wise shuffled stream. */
export function stepExamples(examples: readonly TokenizedExample[], step: number, perStep: number, total: number, seed: number): TokenizedExample[] {
  const n = examples.length;
  const out: TokenizedExample[] = [];
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

function hash(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

function describeCounts(c: DataCounts): string {
  return `${c.examples} examples, ${c.skippedTooLong} too long, ${c.skippedNoAssistant} without an assistant reply`;
}

/** Shortens examples to a memory-imposed length, counting the newly truncated ones. */
function clip(examples: readonly TokenizedExample[], maxLen: number, counts: DataCounts): TokenizedExample[] {
  const out: TokenizedExample[] = [];
  for (const e of examples) {
    if (e.ids.length <= maxLen) {
      out.push(e);
      continue;
    }
    const c = { ids: e.ids.slice(0, maxLen), assistant: e.assistant.slice(0, maxLen) };
    counts.truncated++;
    if (targetCount(c) > 0) out.push(c);
    else counts.skippedNoAssistant++;
  }
  return out;
}

/** A resumed run rewrites history after its checkpoint: drop the killed run's later metrics. */
function forgetMetricsAfter(store: Store, runId: string, file: string, step: number): void {
  store.prepare('DELETE FROM train_metrics WHERE run_id = ? AND step > ?').run(runId, step);
  if (step === 0) store.prepare('DELETE FROM train_metrics WHERE run_id = ?').run(runId);
  if (!fs.existsSync(file)) return;
  const kept = step === 0 ? [] : fs.readFileSync(file, 'utf8').split('\n').filter((l) => l && (JSON.parse(l) as { step: number }).step <= step);
  fs.writeFileSync(file, kept.map((l) => l + '\n').join(''));
}

