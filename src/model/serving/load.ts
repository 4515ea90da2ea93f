/**
 * Loading the service's one model: the base checkpoint with an optional LoRA adapter, and the
 * system prompt read fresh at each load (an edited style guide applies on the next load). A
 * missing checkpoint is MODEL_MISSING; anything else that stops the load is MODEL_INVALID.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { MorrisError, isMorrisError } from '../../errors.ts';
import { childLog } from '../../log.ts';
import { servingSystemPrompt } from '../../prompts.ts';
import type { Quant } from '../graph/compile.ts';
import type { DecodeKernelChoice } from '../inference/native-addon.ts';
import type { LoadedModel, LoadOptions } from '../inference/engine.ts';

const log = childLog('generation');

/** The engine's loadModel, or a stand-in with the same shape (tests). */
export type LoadModelFn = (opts: LoadOptions) => Promise<LoadedModel>;

/** An adapter the service may load, with the dataset it was trained on (null when unknown). */
export interface AdapterRef {
  readonly dir: string;
  readonly id: string;
  readonly datasetId?: string | null;
}

export interface EngineChoice {
  device?: string;
  quant?: Quant;
  decodeKernel?: DecodeKernelChoice;
  threads?: number;
  maxBatch?: number;
  kvBudgetBytes?: number;
}

export interface ServingModel {
  readonly model: LoadedModel;
  readonly baseDir: string;
  readonly adapter: AdapterRef | null;
  readonly systemPrompt: string;
}

/** The cache key of one base + adapter pair. */
export function servingKey(baseDir: string, adapter: AdapterRef | null): string {
  return `${baseDir}\u0000${adapter?.dir ?? ''}`;
}

export async function loadServingModel(
  load: LoadModelFn,
  baseDir: string,
  adapter: AdapterRef | null,
  systemPromptFile: string | null,
  engine: EngineChoice,
): Promise<ServingModel> {
  if (!existsSync(join(baseDir, 'config.json'))) {
    throw new MorrisError('MODEL_MISSING', `No model at ${baseDir} (config.json is missing).`, {
      hint: 'Set MORRIS_BASE_MODEL to a model folder or Hub repo id, or create a test model with `morris model init-tiny models/tiny`.',
    });
  }
  const { text: systemPrompt, fallback } = servingSystemPrompt(systemPromptFile);
  if (fallback) log.warn({ file: systemPromptFile }, 'system prompt file missing or empty; using the built-in short prompt');
  const t0 = Date.now();
  try {
    const model = await load({
      modelDir: baseDir,
      adapterDir: adapter?.dir ?? null,
      ...(engine.device !== undefined ? { device: engine.device } : {}),
      ...(engine.quant !== undefined ? { quant: engine.quant } : {}),
      ...(engine.decodeKernel !== undefined ? { decodeKernel: engine.decodeKernel } : {}),
      ...(engine.threads !== undefined ? { threads: engine.threads } : {}),
      ...(engine.maxBatch !== undefined ? { maxBatch: engine.maxBatch } : {}),
      ...(engine.kvBudgetBytes !== undefined ? { kvBudgetBytes: engine.kvBudgetBytes } : {}),
    });
    log.info({ baseDir, adapterId: adapter?.id ?? null, device: model.info.device, decodeKernel: model.info.decodeKernel, ms: Date.now() - t0 }, 'model loaded');
    return { model, baseDir, adapter, systemPrompt };
  } catch (e) {
    if (isMorrisError(e)) throw e;
    throw new MorrisError('MODEL_INVALID', `Could not load the model at ${baseDir}${adapter ? ` with adapter ${adapter.id}` : ''}: ${e instanceof Error ? e.message : String(e)}`, {
      hint: 'Check that the folder holds a complete Hugging Face checkpoint (config.json, tokenizer.json, safetensors weights).',
      cause: e,
    });
  }
}

export async function disposeServingModel(l: ServingModel): Promise<void> {
  await l.model.dispose();
  log.info({ baseDir: l.baseDir, adapterId: l.adapter?.id ?? null }, 'model unloaded');
}
