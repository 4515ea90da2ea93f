/**
 * What a finished training leaves: the metrics, the judge's verdict, the PEFT adapter folder
 * (plus an optional copy) and, when the verdict allows, its row in the registry (store/adapters).
 */
import path from 'node:path';
import fs from 'node:fs';
import { wrapFsError } from '../../errors.ts';
import { childLog } from '../../log.ts';
import { insertAdapter } from '../../store/adapters.ts';
import { datasetColumnist } from '../../store/datasets.ts';
import type { Store } from '../../store/db.ts';
import type { LoraModule } from '../graph/llama.ts';
import type { TrainConfig } from './config.ts';
import type { DataCounts } from './data.ts';
import type { PairCounts } from './pairs.ts';
import { judgeTraining, type TrainVerdict } from './judge.ts';
import { adapterConfigJson, realFsWriter, writeAdapter, type FsWriter } from './peft.ts';
import type { TrainState } from './checkpoint.ts';

const log = childLog('train');

export interface TrainedRun {
  store: Store;
  cfg: TrainConfig;
  targets: LoraModule[];
  baseModel: string;
  /** The SFT dataset; for DPO the reference adapter's, or null (pairs are not a dataset version). */
  datasetId: string | null;
  /** The voice the adapter belongs to, when the caller knows it (DPO: whose readers' pairs); else its dataset's. */
  columnist?: string;
  vocabSize: number;
  runId: string;
  fingerprint: string;
  totalSteps: number;
  stoppedEarly: boolean;
  state: TrainState;
  finalWeights: Map<string, Float32Array>;
  shapes: Map<string, readonly number[]>;
  device: string;
  fit: { microBatch: number; maxSeqLen: number };
  counts: { train: DataCounts | PairCounts; validation: DataCounts | PairCounts };
  /** Objective-specific figures (DPO: β, reference, preference accuracy) merged into metrics. */
  extraMetrics?: Record<string, unknown>;
  adaptersDir: string;
  outDir?: string;
  fsWriter?: FsWriter;
}

export function saveTrainedAdapter(r: TrainedRun): { adapterId: string; adapterDir: string; metrics: Record<string, unknown>; verdict: TrainVerdict } {
  const { state, cfg } = r;
  const metrics = {
    run_id: r.runId,
    steps: state.step,
    total_steps: r.totalSteps,
    stopped_early: r.stoppedEarly,
    train_loss: state.lastTrainLoss,
    eval_loss_initial: state.firstEvalLoss,
    eval_loss: state.bestEvalLoss ?? state.lastEvalLoss,
    eval_loss_last: state.lastEvalLoss,
    best_step: state.bestStep,
    tokens: state.tokens,
    seconds: Math.round(state.seconds * 10) / 10,
    device: r.device,
    micro_batch: r.fit.microBatch,
    max_seq_len: r.fit.maxSeqLen,
    data: { train: r.counts.train, validation: r.counts.validation },
    settings: cfg,
    ...r.extraMetrics,
  };
  const verdict = judgeTraining({
    datasetId: r.datasetId ?? 'of preference pairs',
    initialValLoss: state.firstEvalLoss,
    finalValLoss: metrics.eval_loss,
    vocabSize: r.vocabSize,
    lr: cfg.lr,
  });
  const adapterId = `lora-${new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14)}-${r.fingerprint.slice(0, 6)}`;
  const adapterDir = path.resolve(r.adaptersDir, adapterId);
  const adapterConfig = adapterConfigJson(r.baseModel, { rank: cfg.rank, alpha: cfg.alpha, dropout: cfg.dropout, targets: r.targets });
  const extra = {
    'metrics.json': { ...metrics, verdict: { status: verdict.status, reason: verdict.reason } },
    'dataset.json': { dataset_id: r.datasetId, counts: { train: r.counts.train, validation: r.counts.validation } },
  };
  const writer = r.fsWriter ?? realFsWriter;
  writeAdapter(adapterDir, adapterConfig, r.finalWeights, r.shapes, extra, writer);
  if (r.outDir) writeAdapter(path.resolve(r.outDir), adapterConfig, r.finalWeights, r.shapes, extra, writer);
  if (verdict.status !== 'unregistered') {
    try {
      insertAdapter(r.store, {
        id: adapterId,
        baseModel: r.baseModel,
        datasetId: r.datasetId,
        path: adapterDir,
        status: verdict.status,
        metrics,
        reason: verdict.status === 'failed' ? verdict.reason : null,
        // An adapter is the voice its data came from: it joins that columnist's line of adapters
        // (a DPO adapter learns the pairs of the voice it is told, else its reference's dataset's voice).
        columnist: r.columnist ?? (r.datasetId === null ? undefined : datasetColumnist(r.store, r.datasetId)),
      });
    } catch (e) {
      fs.rmSync(adapterDir, { recursive: true, force: true });
      throw wrapFsError(e, 'the adapter registry');
    }
  }
  const fields = { adapterId, adapterDir, steps: state.step, evalLoss: metrics.eval_loss, device: r.device, verdict: verdict.status };
  if (verdict.status === 'candidate') log.info(fields, 'adapter trained');
  else log.warn({ ...fields, reason: verdict.reason }, verdict.status === 'failed' ? 'adapter trained but failed' : 'adapter saved but not registered');
  return { adapterId, adapterDir, metrics, verdict };
}
