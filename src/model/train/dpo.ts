/**
 * `trainDpo`: preference training (DPO) of a LoRA adapter on readers' pairs, in our own autodiff.
 *
 *   loss = −log σ(β·((log πθ(c) − log πref(c)) − (log πθ(r) − log πref(r))))
 *
 * over the assistant tokens of each chosen (c) and rejected (r) completion. The reference is an
 * adapter (the one the articles were written with) or the base model; its margins
 * log πref(c) − log πref(r) are computed once per pair before training and fed to the graph. The
 * trained adapter starts from the reference's weights (from LoRA's usual initialisation with no
 * reference adapter, which is the base model exactly, since B = 0), so step 0 is the reference
 * and the held-out loss starts at ln 2.
 *
 * Everything else is SFT's machinery: the loop (stream, accumulation, clipping, AdamW, NaN stop,
 * checkpoints, resume), the run folder, the judge and the PEFT output. Held-out pairs (pairs.ts,
 * by content hash) give the held-out DPO loss that picks the best weights and the preference
 * accuracy reported with the adapter.
 */
import fs from 'node:fs';
import path from 'node:path';
import { MorrisError } from '../../errors.ts';
import { childLog } from '../../log.ts';
import type { Store } from '../../store/db.ts';
import { listAdapters } from '../../store/adapters.ts';
import { readDecoderConfig, type DecoderConfig } from '../checkpoint/config.ts';
import { adapterTensors, readAdapter } from '../checkpoint/lora.ts';
import type { LoraModule } from '../graph/llama.ts';
import type { LoraInput } from '../graph/training.ts';
import { resolveTrainConfig } from './config.ts';
import { loadTokenizer, padTokenId, targetCount } from './data.ts';
import { runTrainingLoop, type LoopObjective } from './loop.ts';
import { fitMemoryBudget } from './memory.ts';
import { saveTrainedAdapter } from './output.ts';
import { makePairBatch, pairMargins, pairTargets, preferenceAccuracy, preparePairs, splitPairs, type PairCounts, type PreferenceRecord, type TokenizedPair } from './pairs.ts';
import { initLora, type FsWriter } from './peft.ts';
import { Rng } from './rng.ts';
import { planSteps } from './schedule.ts';
import { TrainingSessions } from './step.ts';
import { hash, openRun, type TrainCallbacks, type TrainResult } from './trainer.ts';

const log = childLog('train');

export interface DpoOptions {
  readonly store: Store;
  readonly modelDir: string;
  /** The reference adapter's folder, or null: the base model is the reference. */
  readonly referenceDir: string | null;
  /** The pairs (the entry point resolves `latest` or a file). */
  readonly records: readonly PreferenceRecord[];
  /** Where the pairs came from, for the adapter's metrics ('latest' or a file). */
  readonly pairsSource: string;
  /** The voice whose readers' pairs these are: the adapter joins its line (default: the reference's dataset's voice). */
  readonly columnist?: string;
  readonly hostSettings?: Record<string, unknown>;
  readonly settings?: Record<string, unknown>;
  readonly resume?: boolean;
  readonly outDir?: string;
  readonly runsDir: string;
  readonly adaptersDir: string;
  readonly cacheDir?: string;
  readonly fsWriter?: FsWriter;
}

export interface DpoResult extends Omit<TrainResult, 'datasetId'> {
  /** The reference adapter's dataset, when it has one (pairs are not a dataset version). */
  readonly datasetId: string | null;
  /** Held-out preference accuracy of the reference (0.5 by construction) and of the result. */
  readonly preference: { readonly heldOut: number; readonly initial: number; readonly final: number };
  readonly counts: { readonly train: PairCounts; readonly heldOut: PairCounts };
}

interface PairItem {
  readonly pair: TokenizedPair;
  /** log πref(c) − log πref(r) */
  readonly ref: number;
}

export async function trainDpo(opts: DpoOptions, cb: TrainCallbacks = {}): Promise<DpoResult> {
  const model = readDecoderConfig(opts.modelDir);
  const reference = opts.referenceDir ? readReference(opts.store, opts.referenceDir, model) : null;
  // Training continues the reference adapter, so its shape (rank, alpha, targets) wins. Dropout
  // is off unless asked for (as TRL's disable_dropout): with it, the policy's log-probs at step 0
  // would already differ from the reference's, and the loss would chase the masks' noise.
  const cfg = resolveTrainConfig(opts.hostSettings ?? {}, { dropout: 0 }, opts.settings, reference ? { rank: reference.rank, alpha: reference.alpha, targets: reference.targets } : {});
  const targets = cfg.targets as LoraModule[];
  const tok = await loadTokenizer(opts.modelDir);
  const padId = padTokenId(tok);

  const maxSeqLen = Math.min(cfg.maxSeqLen, model.maxPositionEmbeddings);
  const split = splitPairs(opts.records);
  const train = preparePairs(tok, split.train, maxSeqLen, cfg.overLong);
  const held = preparePairs(tok, split.heldOut, maxSeqLen, cfg.overLong);
  if (train.pairs.length === 0) {
    const all = Object.fromEntries(Object.entries(train.counts).map(([k, v]) => [k, v + held.counts[k as keyof PairCounts]])) as unknown as PairCounts;
    throw new MorrisError('DATASET_EMPTY', `No usable preference pair to train on (${describePairs(all)}).`, {
      hint: 'Pairs need a chosen and a rejected text that differ: record ratings, picks or edits in Slack/Discord, or `morris feedback import FILE.jsonl`; raise maxSeqLen or use overLong "truncate" if they are too long.',
    });
  }
  if (train.counts.truncated + train.counts.skippedTooLong + train.counts.skippedIdentical > 0) {
    log.warn({ ...train.counts, maxSeqLen }, 'preference pairs skipped or cut to the context');
  }

  // A micro-batch of P pairs runs 2P sequences; the memory budget sizes it in sequences.
  const longest = Math.max(...train.pairs.flatMap((p) => [p.chosen.ids.length, p.rejected.ids.length]));
  const fit = fitMemoryBudget(model, cfg, 2 * cfg.batchSize, longest);
  if (fit.message) log.warn({ budgetMb: cfg.memoryMb, microBatch: fit.microBatch, maxSeqLen: fit.maxSeqLen }, fit.message);
  const pairsPerMicro = Math.max(1, Math.floor(fit.microBatch / 2));
  const sessions = await TrainingSessions.open({
    modelDir: opts.modelDir,
    rank: cfg.rank,
    alpha: cfg.alpha,
    dropout: cfg.dropout,
    targets,
    device: cfg.device as never,
    threads: cfg.threads,
    cacheDir: opts.cacheDir,
    maxTokens: 2 * pairsPerMicro * fit.maxSeqLen,
    objective: 'dpo',
  });
  sessions.evalThroughTrainGraph = !fit.separateEval;
  try {
    const trainPairs = fit.maxSeqLen < longest ? clipPairs(train.pairs, fit.maxSeqLen, train.counts) : train.pairs;
    const refWeights = reference ? reference.weights(sessions.lora) : initLora(sessions.lora, new Rng(cfg.seed));
    // The reference's margins, once per pair, before any training step.
    const trainRef = await pairMargins(sessions, trainPairs, refWeights, padId, pairsPerMicro);
    const heldRef = await pairMargins(sessions, held.pairs, refWeights, padId, pairsPerMicro);
    const items: PairItem[] = trainPairs.map((pair, i) => ({ pair, ref: trainRef[i]! }));
    const heldItems: PairItem[] = held.pairs.map((pair, i) => ({ pair, ref: heldRef[i]! }));

    const { perStep, totalExamples, totalSteps, schedule } = planSteps(cfg, items.length);
    const baseModel = path.resolve(opts.modelDir);
    const fingerprint = hash(
      JSON.stringify({ method: 'dpo', baseModel, reference: reference?.identity ?? null, pairs: hash(JSON.stringify(opts.records)), cfg: { ...cfg, device: undefined, threads: undefined }, fit }),
    );
    const runId = `dpo-${fingerprint.slice(0, 16)}`;
    const shapes = new Map(sessions.lora.map((t) => [t.name, t.shape as readonly number[]]));
    const initial = new Map([...refWeights].map(([k, v]) => [k, v.slice()]));
    const { runDir, run, resumedFrom, recordMetric } = openRun({ ...opts, runId, fingerprint, initial });

    const objective: LoopObjective<PairItem> = {
      items,
      microBatch: pairsPerMicro,
      micro: async (batch, stepItems, weights, rng) => {
        const pb = makePairBatch(batch.map((b) => b.pair), batch.map((b) => b.ref), padId);
        const r = await sessions.dpoStep(pb, weights, 1 / stepItems.length, cfg.dpoBeta, rng);
        return { loss: r.loss, grads: r.grads! };
      },
      evaluate: async (weights) => {
        if (heldItems.length === 0) return null;
        let loss = 0;
        for (let i = 0; i < heldItems.length; i += pairsPerMicro) {
          const chunk = heldItems.slice(i, i + pairsPerMicro);
          loss += (await sessions.dpoEval(makePairBatch(chunk.map((b) => b.pair), chunk.map((b) => b.ref), padId), weights, 1 / heldItems.length, cfg.dpoBeta)).loss;
        }
        return loss;
      },
      targets: (b) => pairTargets(b.pair),
      length: (b) => b.pair.chosen.ids.length + b.pair.rejected.ids.length - 2,
    };
    log.info({ runId, device: sessions.device, pairs: items.length, heldOut: heldItems.length, totalSteps, pairsPerMicro, beta: cfg.dpoBeta, reference: opts.referenceDir ?? 'base' }, 'DPO training');
    const { stoppedEarly } = await runTrainingLoop({ cfg, objective, perStep, totalExamples, totalSteps, schedule, runDir, fingerprint, shapes, recordMetric }, run, cb);

    const finalWeights = run.best ?? run.weights;
    const accuracy = async (w: ReadonlyMap<string, Float32Array>) => (heldItems.length ? preferenceAccuracy(await pairMargins(sessions, held.pairs, w, padId, pairsPerMicro), heldRef) : null);
    const preference = { heldOut: heldItems.length, initial: (await accuracy(refWeights)) ?? NaN, final: (await accuracy(finalWeights)) ?? NaN };
    const saved = saveTrainedAdapter({
      store: opts.store,
      cfg,
      targets,
      baseModel,
      datasetId: reference?.datasetId ?? null,
      columnist: opts.columnist,
      vocabSize: model.vocabSize,
      runId,
      fingerprint,
      totalSteps,
      stoppedEarly,
      state: run.state,
      finalWeights,
      shapes,
      device: sessions.device,
      fit,
      counts: { train: train.counts, validation: held.counts },
      extraMetrics: {
        method: 'dpo',
        dpo: {
          beta: cfg.dpoBeta,
          reference: opts.referenceDir ? path.resolve(opts.referenceDir) : 'base',
          pairs: opts.pairsSource,
          held_out_pairs: heldItems.length,
          preference_accuracy_initial: preference.initial,
          preference_accuracy: preference.final,
        },
      },
      adaptersDir: opts.adaptersDir,
      outDir: opts.outDir,
      fsWriter: opts.fsWriter,
    });
    return {
      adapterId: saved.adapterId,
      adapterDir: saved.adapterDir,
      runId,
      runDir,
      datasetId: reference?.datasetId ?? null,
      device: sessions.device,
      steps: run.state.step,
      stoppedEarly,
      resumedFrom,
      metrics: saved.metrics,
      verdict: saved.verdict,
      preference,
      counts: { train: train.counts, heldOut: held.counts },
    };
  } finally {
    await sessions.release();
  }
}

export function describePairs(c: PairCounts): string {
  return `${c.pairs} pairs: ${c.kept} kept, ${c.skippedIdentical} with the same chosen and rejected text, ${c.skippedTooLong} too long, ${c.truncated} cut to the context, ${c.skippedNoAssistant} without an assistant reply`;
}

interface Reference {
  readonly rank: number;
  readonly alpha: number;
  readonly targets: LoraModule[];
  /** The dataset the reference adapter was trained on, when the registry knows it. */
  readonly datasetId: string | null;
  /** Path and file identity: a changed reference never resumes an old run. */
  readonly identity: string;
  weights(layout: readonly LoraInput[]): Map<string, Float32Array>;
}

/** A PEFT adapter as DPO's reference and starting point. */
function readReference(store: Store, dir: string, model: DecoderConfig): Reference {
  const a = readAdapter(dir, model);
  if (Math.abs(a.scale - a.alpha / a.r) > 1e-12) {
    throw new MorrisError('MODEL_UNSUPPORTED', `The reference adapter ${dir} uses rsLoRA scaling; DPO here trains plain LoRA (alpha/r).`, {
      hint: 'Use an adapter trained by `morris train`, or `--adapter none` to start from the base model.',
    });
  }
  const st = fs.statSync(a.file);
  const resolved = path.resolve(dir);
  return {
    rank: a.r,
    alpha: a.alpha,
    targets: [...a.targetModules],
    datasetId: listAdapters(store).find((r) => path.resolve(r.path) === resolved)?.dataset_id ?? null,
    identity: `${resolved}:${st.size}:${st.mtimeMs}`,
    weights: (layout) => adapterTensors(a, layout),
  };
}

/** Cuts both sides of each pair to a memory-imposed length, by the same rule as SFT's `clip`. */
function clipPairs(pairs: readonly TokenizedPair[], maxLen: number, counts: PairCounts): TokenizedPair[] {
  const cut = (e: TokenizedPair['chosen']) => (e.ids.length <= maxLen ? e : { ids: e.ids.slice(0, maxLen), assistant: e.assistant.slice(0, maxLen) });
  const out: TokenizedPair[] = [];
  for (const p of pairs) {
    const c = cut(p.chosen);
    const r = cut(p.rejected);
    if (c === p.chosen && r === p.rejected) {
      out.push(p);
      continue;
    }
    counts.truncated++;
    if (targetCount(c) === 0 || targetCount(r) === 0) counts.skippedNoAssistant++;
    else out.push({ chosen: c, rejected: r });
  }
  return out;
}

