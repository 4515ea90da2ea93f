/**
 * LoRA weights in the PEFT adapter format, so adapters trained here load in Python PEFT / vLLM
 * and adapters trained there load here:
 *   adapter_config.json          { peft_type: "LORA", r, lora_alpha, lora_dropout, target_modules, ... }
 *   adapter_model.safetensors    base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight [r, in]
 *                                base_model.model.model.layers.{i}.self_attn.q_proj.lora_B.weight [out, r]
 * Inside the trainer every LoRA tensor is keyed by exactly that PEFT name.
 */
import fs from 'node:fs';
import path from 'node:path';
import { MorrisError, wrapFsError } from '../../errors.ts';
import { readSafetensorsHeader, readTensorF32, writeSafetensors, type TensorToWrite } from '../safetensors.ts';
import type { Rng } from './rng.ts';

export type LoraTarget = 'q_proj' | 'k_proj' | 'v_proj' | 'o_proj' | 'gate_proj' | 'up_proj' | 'down_proj';

export interface LoraSpec {
  readonly rank: number;
  readonly alpha: number;
  readonly dropout: number;
  readonly targets: readonly LoraTarget[];
}

/** The model dimensions LoRA shapes depend on. */
export interface LoraDims {
  readonly numLayers: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
}

export interface LoraTensor {
  readonly name: string;
  readonly shape: readonly [number, number];
  readonly data: Float32Array;
}

export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';

export function moduleGroup(t: LoraTarget): 'self_attn' | 'mlp' {
  return t === 'gate_proj' || t === 'up_proj' || t === 'down_proj' ? 'mlp' : 'self_attn';
}

export function peftKey(layer: number, target: LoraTarget, ab: 'A' | 'B'): string {
  return `base_model.model.model.layers.${layer}.${moduleGroup(target)}.${target}.lora_${ab}.weight`;
}

/** [in, out] features of one projection. */
export function projectionDims(t: LoraTarget, d: LoraDims): [number, number] {
  const q = d.numHeads * d.headDim;
  const kv = d.numKvHeads * d.headDim;
  switch (t) {
    case 'q_proj': return [d.hiddenSize, q];
    case 'k_proj':
    case 'v_proj': return [d.hiddenSize, kv];
    case 'o_proj': return [q, d.hiddenSize];
    case 'gate_proj':
    case 'up_proj': return [d.hiddenSize, d.intermediateSize];
    case 'down_proj': return [d.intermediateSize, d.hiddenSize];
  }
}

/** Every LoRA tensor's name and shape, in a fixed order (layer, target, A then B). */
export function loraLayout(spec: LoraSpec, d: LoraDims): { name: string; shape: [number, number]; layer: number; target: LoraTarget; ab: 'A' | 'B' }[] {
  const out = [];
  for (let i = 0; i < d.numLayers; i++) {
    for (const t of spec.targets) {
      const [fin, fout] = projectionDims(t, d);
      out.push({ name: peftKey(i, t, 'A'), shape: [spec.rank, fin] as [number, number], layer: i, target: t, ab: 'A' as const });
      out.push({ name: peftKey(i, t, 'B'), shape: [fout, spec.rank] as [number, number], layer: i, target: t, ab: 'B' as const });
    }
  }
  return out;
}

/**
 * PEFT's default init: A ~ kaiming_uniform(a=√5), i.e. U(-1/√in, 1/√in); B = 0, so the adapter
 * starts as the identity and training moves away from the base model smoothly.
 */
export function initLora(spec: LoraSpec, d: LoraDims, rng: Rng): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const t of loraLayout(spec, d)) {
    const data = new Float32Array(t.shape[0] * t.shape[1]);
    if (t.ab === 'A') {
      const bound = 1 / Math.sqrt(t.shape[1]);
      for (let i = 0; i < data.length; i++) data[i] = (2 * rng.next() - 1) * bound;
    }
    out.set(t.name, data);
  }
  return out;
}

export interface AdapterMeta {
  readonly baseModel: string;
  readonly spec: LoraSpec;
}

export function adapterConfigJson(meta: AdapterMeta): Record<string, unknown> {
  return {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: meta.baseModel,
    r: meta.spec.rank,
    lora_alpha: meta.spec.alpha,
    lora_dropout: meta.spec.dropout,
    target_modules: [...meta.spec.targets],
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    modules_to_save: null,
    use_rslora: false,
    use_dora: false,
    layers_to_transform: null,
    rank_pattern: {},
    alpha_pattern: {},
    revision: null,
  };
}

/** Injected for tests: the writer that could hit a full disk. */
export interface FsWriter {
  writeFile(file: string, data: string | Uint8Array): void;
  writeSafetensors(file: string, tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): void;
}

export const realFsWriter: FsWriter = {
  writeFile: (file, data) => fs.writeFileSync(file, data),
  writeSafetensors,
};

/**
 * Writes the adapter folder atomically: everything goes into a temp folder beside `dir`, which is
 * renamed into place only when complete, so a crash or a full disk never leaves a half adapter.
 * `extra` files (metrics.json, dataset.json) go in the same folder.
 */
export function writeAdapter(
  dir: string,
  meta: AdapterMeta,
  weights: ReadonlyMap<string, Float32Array>,
  shapes: ReadonlyMap<string, readonly number[]>,
  extra: Record<string, unknown> = {},
  writer: FsWriter = realFsWriter,
): void {
  const parent = path.dirname(path.resolve(dir));
  const tmp = path.join(parent, `.${path.basename(dir)}.tmp-${process.pid}`);
  try {
    fs.mkdirSync(parent, { recursive: true });
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.mkdirSync(tmp);
    writer.writeFile(path.join(tmp, ADAPTER_CONFIG), JSON.stringify(adapterConfigJson(meta), null, 2) + '\n');
    const tensors: Record<string, TensorToWrite> = {};
    for (const [name, data] of weights) tensors[name] = { dtype: 'F32', shape: shapes.get(name)!, data };
    writer.writeSafetensors(path.join(tmp, ADAPTER_WEIGHTS), tensors, { format: 'pt' });
    for (const [file, value] of Object.entries(extra)) writer.writeFile(path.join(tmp, file), JSON.stringify(value, null, 2) + '\n');
    const old = `${tmp}-old`;
    if (fs.existsSync(dir)) fs.renameSync(dir, old);
    fs.renameSync(tmp, dir);
    fs.rmSync(old, { recursive: true, force: true });
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw wrapFsError(e, `adapter ${dir}`);
  }
}

export interface LoadedAdapter {
  readonly config: Record<string, unknown>;
  readonly spec: LoraSpec;
  readonly baseModel: string;
  readonly weights: Map<string, Float32Array>;
  readonly shapes: Map<string, readonly number[]>;
}

/** Reads a PEFT LoRA adapter folder (ours or one trained with Python PEFT). */
export function readAdapter(dir: string): LoadedAdapter {
  const cfgPath = path.join(dir, ADAPTER_CONFIG);
  if (!fs.existsSync(cfgPath)) {
    throw new MorrisError('MODEL_MISSING', `No ${ADAPTER_CONFIG} in ${dir}.`, { hint: 'Point at a PEFT adapter folder.' });
  }
  const config = JSON.parse(fs.readFileSync(cfgPath, 'utf8')) as Record<string, unknown>;
  if (config['peft_type'] !== 'LORA') {
    throw new MorrisError('MODEL_UNSUPPORTED', `Adapter ${dir} has peft_type ${String(config['peft_type'])}; only LORA is supported.`);
  }
  const header = readSafetensorsHeader(path.join(dir, ADAPTER_WEIGHTS));
  const weights = new Map<string, Float32Array>();
  const shapes = new Map<string, readonly number[]>();
  for (const [name, entry] of header.tensors) {
    // PEFT sometimes saves keys with the adapter name (".lora_A.default.weight"); normalise.
    const key = name.replace(/\.lora_([AB])\.[^.]+\.weight$/, '.lora_$1.weight');
    weights.set(key, readTensorF32(entry));
    shapes.set(key, entry.shape);
  }
  const spec: LoraSpec = {
    rank: Number(config['r']),
    alpha: Number(config['lora_alpha']),
    dropout: Number(config['lora_dropout'] ?? 0),
    targets: (config['target_modules'] as LoraTarget[]) ?? [],
  };
  return { config, spec, baseModel: String(config['base_model_name_or_path'] ?? ''), weights, shapes };
}
