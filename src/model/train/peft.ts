/**
 * Writing LoRA adapters in the PEFT format (reading is src/model/checkpoint/lora.ts), so adapters trained
 * here load in Python PEFT / vLLM:
 *   adapter_config.json          { peft_type: "LORA", r, lora_alpha, lora_dropout, target_modules, ... }
 *   adapter_model.safetensors    base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight [r, in]
 *                                base_model.model.model.layers.{i}.self_attn.q_proj.lora_B.weight [out, r]
 * Inside the trainer every LoRA tensor is keyed by exactly that PEFT name.
 */
import fs from 'node:fs';
import path from 'node:path';
import { wrapFsError } from '../../errors.ts';
import { writeSafetensors, type TensorToWrite } from '../checkpoint/safetensors.ts';
import type { LoraModule } from '../graph/llama.ts';
import type { LoraInput } from '../graph/training.ts';
import type { Rng } from './rng.ts';

export interface LoraSpec {
  readonly rank: number;
  readonly alpha: number;
  readonly dropout: number;
  readonly targets: readonly LoraModule[];
}

export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';

/**
 * PEFT's default init: A ~ kaiming_uniform(a=√5), i.e. U(−1/√in, 1/√in); B = 0, so the adapter
 * starts as the identity and training moves away from the base model smoothly.
 */
export function initLora(layout: readonly LoraInput[], rng: Rng): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const t of layout) {
    const data = new Float32Array(t.shape[0] * t.shape[1]);
    if (t.which === 'A') {
      const bound = 1 / Math.sqrt(t.shape[1]);
      for (let i = 0; i < data.length; i++) data[i] = (2 * rng.next() - 1) * bound;
    }
    out.set(t.name, data);
  }
  return out;
}

export function adapterConfigJson(baseModel: string, spec: LoraSpec): Record<string, unknown> {
  return {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: baseModel,
    r: spec.rank,
    lora_alpha: spec.alpha,
    lora_dropout: spec.dropout,
    target_modules: [...spec.targets],
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

/** The writes that can hit a full disk; tests inject one that fails. */
export interface FsWriter {
  writeFile(file: string, data: string | Uint8Array): void;
  writeSafetensors(file: string, tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): void;
}

export const realFsWriter: FsWriter = {
  writeFile: (file, data) => fs.writeFileSync(file, data),
  writeSafetensors,
};

/**
 * Writes the adapter folder atomically: everything goes into a temp folder beside `dir`, renamed
 * into place only when complete, so a crash or a full disk never leaves a half adapter.
 * `extra` JSON files (metrics.json, dataset.json) go in the same folder.
 */
export function writeAdapter(
  dir: string,
  config: Record<string, unknown>,
  weights: ReadonlyMap<string, Float32Array>,
  shapes: ReadonlyMap<string, readonly number[]>,
  extra: Record<string, unknown> = {},
  writer: FsWriter = realFsWriter,
): void {
  const parent = path.dirname(path.resolve(dir));
  const tmp = path.join(parent, `.${path.basename(dir)}.tmp-${process.pid}`);
  const old = `${tmp}-old`;
  try {
    fs.mkdirSync(parent, { recursive: true });
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.mkdirSync(tmp);
    writer.writeFile(path.join(tmp, ADAPTER_CONFIG), JSON.stringify(config, null, 2) + '\n');
    const tensors: Record<string, TensorToWrite> = {};
    for (const [name, data] of weights) tensors[name] = { dtype: 'F32', shape: shapes.get(name)!, data };
    writer.writeSafetensors(path.join(tmp, ADAPTER_WEIGHTS), tensors, { format: 'pt' });
    for (const [file, value] of Object.entries(extra)) writer.writeFile(path.join(tmp, file), JSON.stringify(value, null, 2) + '\n');
    if (fs.existsSync(dir)) fs.renameSync(dir, old);
    fs.renameSync(tmp, dir);
    fs.rmSync(old, { recursive: true, force: true });
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw wrapFsError(e, `adapter ${dir}`);
  }
}
