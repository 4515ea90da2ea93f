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
 *
 * This module prepares (data, memory budget, sessions, run folder, resume); loop.ts trains;
 * output.ts writes and registers. Settings come in from the entry point (`hostSettings`), never
 * from the process's config.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { MorrisError } from '../../errors.ts';
import { childLog } from '../../log.ts';
import type { Store } from '../../store/db.ts';
import { readDecoderConfig } from '../checkpoint/config.ts';
import type { LoraModule } from '../graph/llama.ts';
import { newAdamWState, type AdamWState } from './adamw.ts';
import { loadCheckpoint, type TrainState } from './checkpoint.ts';
import { resolveTrainConfig } from './config.ts';
import { runTrainingLoop, sftObjective, type MetricPoint, type RunState } from './loop.ts';
import { saveTrainedAdapter } from './output.ts';
import {
  loadDatasetExamples,
  loadTokenizer,
  padTokenId,
  prepareExamples,
  targetCount,
  type DataCounts,
  type TokenizedExample,
} from './data.ts';
import { fitMemoryBudget } from './memory.ts';
import { initLora, type FsWriter } from './peft.ts';
import { Rng } from './rng.ts';
import type { TrainVerdict } from './judge.ts';
import { planSteps } from './schedule.ts';
import { TrainingSessions } from './step.ts';
import { deleteTrainMetricsAfter, insertTrainMetric } from '../../store/train-metrics.ts';

const log = childLog('train');

export interface TrainOptions {
  readonly store: Store;
  readonly modelDir: string;
  /** 'latest' or a dataset id. */
  readonly dataset: string;
  /**
   * The host's settings (trainSettingsFromEnv(config): MORRIS_TRAIN_*, MORRIS_DEVICE and the
   * MORRIS_TRAIN_CONFIG file), passed in by the entry point; absent → TRAIN_DEFAULTS alone.
   */
  readonly hostSettings?: Record<string, unknown>;
  /** Overrides of the host's settings (a config file's keys, then flags). */
  readonly settings?: Record<string, unknown>;
  readonly resume?: boolean;
  /** Extra copy of the finished adapter folder. */
  readonly outDir?: string;
  /** Run folders (checkpoints, metrics.jsonl), e.g. <MORRIS_DATA_DIR>/runs. */
  readonly runsDir: string;
  /** Registered adapters, e.g. <MORRIS_MODELS_DIR>/adapters. */
  readonly adaptersDir: string;
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
  const cfg = resolveTrainConfig(opts.hostSettings ?? {}, opts.settings);
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
    const { perStep, totalExamples, totalSteps, schedule } = planSteps(cfg, trainExamples.length);
    const baseModel = path.resolve(opts.modelDir);
    const fingerprint = hash(JSON.stringify({ baseModel, dataset: dataset.datasetId, cfg: { ...cfg, device: undefined, threads: undefined }, fit }));
    const runId = `run-${fingerprint.slice(0, 16)}`;
    const shapes = new Map(sessions.lora.map((t) => [t.name, t.shape as readonly number[]]));
    const { runDir, run, resumedFrom, recordMetric } = openRun({ ...opts, runId, fingerprint, initial: initLora(sessions.lora, new Rng(cfg.seed)) });

    log.info(
      { runId, device: sessions.device, dataset: dataset.datasetId, examples: trainExamples.length, validation: valExamples.length, totalSteps, microBatch: fit.microBatch },
      'training',
    );
    const { stoppedEarly } = await runTrainingLoop(
      {
        cfg,
        objective: sftObjective(sessions, trainExamples, valExamples, padTokenId(tok), fit.microBatch),
        perStep,
        totalExamples,
        totalSteps,
        schedule,
        runDir,
        fingerprint,
        shapes,
        recordMetric,
      },
      run,
      cb,
    );

    // --- output: the best weights (by validation loss) when there was validation ---
    const saved = saveTrainedAdapter({
      store: opts.store,
      cfg,
      targets,
      baseModel,
      datasetId: dataset.datasetId,
      vocabSize: model.vocabSize,
      runId,
      fingerprint,
      totalSteps,
      stoppedEarly,
      state: run.state,
      finalWeights: run.best ?? run.weights,
      shapes,
      device: sessions.device,
      fit,
      counts: { train: train.counts, validation: val.counts },
      adaptersDir: opts.adaptersDir,
      outDir: opts.outDir,
      fsWriter: opts.fsWriter,
    });
    return {
      adapterId: saved.adapterId,
      adapterDir: saved.adapterDir,
      runId,
      runDir,
      datasetId: dataset.datasetId,
      device: sessions.device,
      steps: run.state.step,
      stoppedEarly,
      resumedFrom,
      metrics: saved.metrics,
      verdict: saved.verdict,
    };
  } finally {
    await sessions.release();
  }
}

/**
 * A run's folder and starting point: a fresh state from `initial` weights, or — with `resume` —
 * the last checkpoint, which must carry the same fingerprint. Metrics after the resumed step are
 * forgotten (a killed run's later history is rewritten). Shared by SFT and DPO.
 */
export function openRun(o: { store: Store; runsDir: string; runId: string; fingerprint: string; resume?: boolean; initial: Map<string, Float32Array> }): {
  runDir: string;
  run: RunState;
  resumedFrom: number | null;
  recordMetric: (m: MetricPoint) => void;
} {
  const runDir = path.join(o.runsDir, o.runId);
  fs.mkdirSync(runDir, { recursive: true });
  const metricsFile = path.join(runDir, 'metrics.jsonl');
  const adam: AdamWState = newAdamWState(o.initial);
  const state: TrainState = { step: 0, bestEvalLoss: null, bestStep: null, badEvals: 0, tokens: 0, seconds: 0, lastTrainLoss: null, firstEvalLoss: null, lastEvalLoss: null };
  let run: RunState = { state, weights: o.initial, adam, best: null };
  let resumedFrom: number | null = null;
  if (o.resume) {
    const ck = loadCheckpoint(runDir);
    if (!ck) {
      log.warn({ runDir }, 'no checkpoint to resume from; starting from step 0');
    } else {
      if (ck.fingerprint !== o.fingerprint) throw new MorrisError('BAD_INPUT', `The checkpoint in ${runDir} belongs to different settings.`, { hint: 'Run again without --resume, or with the settings and data of the interrupted run.' });
      run = { state: ck.state, weights: ck.weights, adam: ck.adam, best: ck.best };
      resumedFrom = ck.state.step;
      log.info({ runDir, step: ck.state.step }, 'resuming from checkpoint');
    }
  } else {
    fs.rmSync(path.join(runDir, 'checkpoint'), { recursive: true, force: true });
    fs.rmSync(path.join(runDir, 'checkpoint.old'), { recursive: true, force: true });
  }
  forgetMetricsAfter(o.store, o.runId, metricsFile, run.state.step);
  const recordMetric = (m: MetricPoint) => {
    insertTrainMetric(o.store, o.runId, m);
    fs.appendFileSync(metricsFile, JSON.stringify({ run_id: o.runId, ...m, at: new Date().toISOString() }) + '\n');
  };
  return { runDir, run, resumedFrom, recordMetric };
}

export function hash(s: string): string {
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
  deleteTrainMetricsAfter(store, runId, step);
  if (!fs.existsSync(file)) return;
  const kept = step === 0 ? [] : fs.readFileSync(file, 'utf8').split('\n').filter((l) => l && (JSON.parse(l) as { step: number }).step <= step);
  fs.writeFileSync(file, kept.map((l) => l + '\n').join(''));
}
