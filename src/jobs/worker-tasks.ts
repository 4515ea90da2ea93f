/**
 * What a job worker process can do: train an adapter (the trainer, with progress and a
 * checkpoint on abort) or measure models for the evaluation gate (validation loss through the
 * eval graph, generations through the engine, style and copying scores). Runs in the worker,
 * never in the serve process.
 */
import fs from 'node:fs';
import { openStore } from '../store/db.ts';
import { getConfig } from '../config.ts';
import { trainSettingsFromEnv } from '../model/train/config.ts';
import { trainAdapter, type TrainProgress } from '../model/train/trainer.ts';
import { describePairs, trainDpo } from '../model/train/dpo.ts';
import type { TrainVerdict } from '../model/train/judge.ts';
import { loadModel, type LoadedModel } from '../model/inference/engine.ts';
import { ModelCache } from '../model/serving/model-cache.ts';
import { articleMessages, servingSystemPrompt } from '../prompts.ts';
import { measureModel, EVAL_TOPICS, type EvaluationBackend, type ModelMeasure } from './gate/evaluate.ts';
import { validationLoss } from './gate/validation-loss.ts';
import { preferenceMeasurer } from './gate/preference.ts';
import { storePreferenceRecords } from '../pipeline/dataset/preferences.ts';
import type { WorkerTask } from './worker-protocol.ts';
import { datasetExampleRows } from '../store/datasets.ts';

export interface TrainTaskOptions {
  dbPath: string;
  baseModelDir: string;
  datasetId: string;
  runsDir: string;
  adaptersDir: string;
  resume: boolean;
  /** Training settings (TRAIN_DEFAULTS keys), thread and memory budget included. */
  settings: Record<string, unknown>;
}

export interface TrainTaskResult {
  adapterId: string;
  adapterDir: string;
  runId: string;
  runDir: string;
  steps: number;
  resumedFrom: number | null;
  valLoss: number | null;
  device: string;
  /** Candidate, failed (registered with the reason) or unregistered (no validation to judge by). */
  verdict: TrainVerdict;
}

export interface DpoTaskOptions {
  dbPath: string;
  baseModelDir: string;
  /** The reference adapter's folder (training starts from it), or null: the base model. */
  referenceDir: string | null;
  runsDir: string;
  adaptersDir: string;
  styleGuideFile: string;
  resume: boolean;
  settings: Record<string, unknown>;
  /** Whose readers' pairs it learns from (their articles' voice); absent: every pair. */
  columnist?: string;
}

export interface DpoTaskResult extends TrainTaskResult {
  /** Pairs readers had made when the run started (the next stand-alone DPO counts from here). */
  pairs: number;
  preference: { heldOut: number; initial: number; final: number };
}

export interface EvalTaskOptions {
  dbPath: string;
  baseModelDir: string;
  datasetId: string;
  models: { adapterId: string | null; adapterDir: string | null }[];
  styleGuideFile: string;
  threads: number;
  device: string;
  maxSeqLen: number;
  /** Generations for the style and copying checks are greedy and this long. */
  maxNewTokens: number;
  topics?: string[];
  /** The candidate's voice: the gate measures only readers' pairs on that voice's articles. */
  columnist?: string;
}

export interface TaskIo {
  signal: AbortSignal;
  progress(fraction: number, message?: string): void;
  log(line: string, level?: 'info' | 'warn' | 'error'): void;
}

export async function runWorkerTask(task: WorkerTask, io: TaskIo): Promise<unknown> {
  switch (task.kind) {
    case 'train':
      return trainTask(task.options, io);
    case 'evaluate':
      return evaluateTask(task.options, io);
    case 'dpo':
      return dpoTask(task.options, io);
  }
}

/** Progress lines for a training run: every eval and about ten train lines go to the job log. */
function trainProgress(io: TaskIo): (p: TrainProgress) => void {
  let lastLogged = 0;
  return (p) => {
    const eta = p.etaS !== undefined ? `, ETA ${Math.round(p.etaS)} s` : '';
    const what = p.phase === 'eval' ? `validation loss ${p.evalLoss?.toFixed(4)}` : `loss ${p.loss?.toFixed(4)}${eta}`;
    io.progress(p.step / p.totalSteps, `step ${p.step}/${p.totalSteps}: ${what}`);
    if (p.phase === 'eval' || p.step - lastLogged >= Math.max(1, Math.floor(p.totalSteps / 10)) || p.step === p.totalSteps) {
      lastLogged = p.step;
      io.log(`step ${p.step}/${p.totalSteps}: ${what}`);
    }
  };
}

/** DPO on every pair readers made so far, as the articles were asked for (the serving prompt). */
async function dpoTask(o: DpoTaskOptions, io: TaskIo): Promise<DpoTaskResult> {
  const store = openStore(o.dbPath);
  try {
    const records = storePreferenceRecords(store, servingSystemPrompt(o.styleGuideFile).text, o.columnist);
    const r = await trainDpo(
      {
        store,
        modelDir: o.baseModelDir,
        referenceDir: o.referenceDir,
        records,
        pairsSource: 'latest',
        columnist: o.columnist,
        hostSettings: trainSettingsFromEnv(getConfig()),
        settings: o.settings,
        resume: o.resume,
        runsDir: o.runsDir,
        adaptersDir: o.adaptersDir,
      },
      { signal: io.signal, onProgress: trainProgress(io) },
    );
    const summary = trainedSummary(r, io);
    io.log(`train pairs: ${describePairs(r.counts.train)}; held out: ${describePairs(r.counts.heldOut)}`);
    return { ...summary, pairs: records.length, preference: r.preference };
  } finally {
    store.close();
  }
}

async function trainTask(o: TrainTaskOptions, io: TaskIo): Promise<TrainTaskResult> {
  const store = openStore(o.dbPath);
  try {
    const r = await trainAdapter(
      {
        store,
        modelDir: o.baseModelDir,
        dataset: o.datasetId,
        // The worker inherits the serve process's environment: the host's settings come from it.
        hostSettings: trainSettingsFromEnv(getConfig()),
        settings: o.settings,
        resume: o.resume,
        runsDir: o.runsDir,
        adaptersDir: o.adaptersDir,
      },
      { signal: io.signal, onProgress: trainProgress(io) },
    );
    return trainedSummary(r, io);
  } finally {
    store.close();
  }
}

/** What an SFT or DPO run reports back to the serve process (and says in the job log). */
function trainedSummary(r: Omit<Awaited<ReturnType<typeof trainAdapter>>, 'datasetId'>, io: TaskIo): TrainTaskResult {
  if (r.resumedFrom !== null) io.log(`resumed from the checkpoint at step ${r.resumedFrom}`);
  const valLoss = typeof r.metrics.eval_loss === 'number' ? r.metrics.eval_loss : null;
  return { adapterId: r.adapterId, adapterDir: r.adapterDir, runId: r.runId, runDir: r.runDir, steps: r.steps, resumedFrom: r.resumedFrom, valLoss, device: r.device, verdict: r.verdict };
}

/** Training articles (the assistant turns of the train split) for the verbatim-copy check. */
function trainingTexts(store: ReturnType<typeof openStore>, datasetId: string): string[] {
  const rows = datasetExampleRows(store, datasetId, 'train');
  return rows.map((r) => (JSON.parse(r.messages) as { role: string; content: string }[]).filter((m) => m.role === 'assistant').map((m) => m.content).join('\n\n'));
}

async function evaluateTask(o: EvalTaskOptions, io: TaskIo): Promise<ModelMeasure[]> {
  const store = openStore(o.dbPath);
  // One model at a time: each model answers every topic before the next one loads.
  const models = new ModelCache<LoadedModel>((m) => m.dispose());
  try {
    const styleGuide = fs.existsSync(o.styleGuideFile) ? fs.readFileSync(o.styleGuideFile, 'utf8') : '';
    const systemPrompt = servingSystemPrompt(o.styleGuideFile).text;
    const articles = trainingTexts(store, o.datasetId);
    const backend: EvaluationBackend = {
      validationLoss: (adapterDir, signal) =>
        validationLoss({ modelDir: o.baseModelDir, store, datasetId: o.datasetId, maxSeqLen: o.maxSeqLen, threads: o.threads, device: o.device }, adapterDir, signal),
      generate: async (adapterDir, topic, signal) => {
        // Keyed by adapter folder; '' is the base model alone.
        const model = await models.get(adapterDir ?? '', () => loadModel({ modelDir: o.baseModelDir, adapterDir, threads: o.threads, device: o.device }));
        let text = '';
        const messages = articleMessages(systemPrompt, topic);
        // Greedy: the same model gives the same text, so scores compare models, not luck.
        const sampling = { maxNewTokens: o.maxNewTokens, temperature: 0, topP: 1, topK: 0, repetitionPenalty: 1.1 };
        for await (const piece of model.stream({ messages }, sampling, signal)) text += piece;
        return text;
      },
      // Readers' pairs as the articles were asked for: the serving prompt, the same one generation uses.
      preference: preferenceMeasurer({ modelDir: o.baseModelDir, records: storePreferenceRecords(store, systemPrompt, o.columnist), maxSeqLen: o.maxSeqLen, threads: o.threads, device: o.device }),
    };
    const out: ModelMeasure[] = [];
    for (const [i, m] of o.models.entries()) {
      io.progress(i / o.models.length, `measuring ${m.adapterId ?? 'base model'}`);
      out.push(
        await measureModel(backend, {
          adapterId: m.adapterId,
          adapterDir: m.adapterDir,
          styleGuide,
          trainingArticles: articles,
          topics: o.topics ?? [...EVAL_TOPICS],
          signal: io.signal,
        }),
      );
    }
    io.progress(1, 'measured');
    return out;
  } finally {
    await models.unload();
    store.close();
  }
}
