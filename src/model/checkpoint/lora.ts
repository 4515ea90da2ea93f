/**
 * PEFT LoRA adapters: `adapter_config.json` (r, lora_alpha, target_modules, use_rslora) and
 * `adapter_model.safetensors` with PEFT key names
 * (`base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight`, A [r, in], B [out, r]).
 * Shapes are checked against the base model: an adapter trained for another base is
 * ADAPTER_MISMATCH, not a runtime crash deep inside ONNX Runtime.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { MorrisError } from '../../errors.ts';
import { readJson, type DecoderConfig } from './config.ts';
import { LORA_MODULES, moduleName, type LoraModule } from '../graph/llama.ts';
import { readSafetensorsHeader, readTensorF32, type TensorEntry } from './safetensors.ts';

export interface Adapter {
  readonly dir: string;
  readonly file: string;
  readonly r: number;
  readonly alpha: number;
  /** alpha / r (or alpha / sqrt(r) with rsLoRA). */
  readonly scale: number;
  readonly targetModules: readonly LoraModule[];
  readonly baseModel: string | null;
  /** (layer, module) → A/B entries, only for the pairs present in the file. */
  readonly pairs: ReadonlyMap<string, { a: TensorEntry; b: TensorEntry }>;
}

export const pairKey = (layer: number, m: LoraModule): string => `${layer}.${m}`;
export const peftKey = (layer: number, m: LoraModule, which: 'A' | 'B'): string => `base_model.model.${moduleName(layer, m)}.lora_${which}.weight`;

function mismatch(what: string): MorrisError {
  return new MorrisError('ADAPTER_MISMATCH', `Adapter does not fit this base model: ${what}.`, {
    hint: 'Use an adapter trained for this base model (see base_model_name_or_path in adapter_config.json), or choose the matching --model.',
  });
}

/** In/out features of a projection of the base model. */
export function moduleShape(cfg: DecoderConfig, m: LoraModule): { inF: number; outF: number } {
  const q = cfg.numHeads * cfg.headDim;
  const kv = cfg.numKvHeads * cfg.headDim;
  switch (m) {
    case 'q_proj': return { inF: cfg.hiddenSize, outF: q };
    case 'k_proj':
    case 'v_proj': return { inF: cfg.hiddenSize, outF: kv };
    case 'o_proj': return { inF: q, outF: cfg.hiddenSize };
    case 'gate_proj':
    case 'up_proj': return { inF: cfg.hiddenSize, outF: cfg.intermediateSize };
    case 'down_proj': return { inF: cfg.intermediateSize, outF: cfg.hiddenSize };
  }
}

export function readAdapter(dir: string, cfg: DecoderConfig): Adapter {
  const raw = readJson(join(dir, 'adapter_config.json'), 'adapter_config.json');
  const file = join(dir, 'adapter_model.safetensors');
  if (!existsSync(file)) {
    throw new MorrisError('MODEL_MISSING', `Missing adapter weights ${file}.`, { hint: 'An adapter folder needs adapter_config.json and adapter_model.safetensors (PEFT format).' });
  }
  if (raw['peft_type'] !== undefined && raw['peft_type'] !== 'LORA') throw new MorrisError('MODEL_UNSUPPORTED', `Adapter type ${String(raw['peft_type'])} is not LoRA.`);
  if (raw['use_dora'] === true) throw new MorrisError('MODEL_UNSUPPORTED', 'DoRA adapters are not supported.');
  for (const k of ['rank_pattern', 'alpha_pattern'] as const) {
    const v = raw[k];
    if (v && typeof v === 'object' && Object.keys(v).length > 0) throw new MorrisError('MODEL_UNSUPPORTED', `Adapters with ${k} are not supported.`);
  }
  const ms = raw['modules_to_save'];
  if (Array.isArray(ms) && ms.length > 0) throw new MorrisError('MODEL_UNSUPPORTED', 'Adapters with modules_to_save are not supported.');
  if (raw['bias'] !== undefined && raw['bias'] !== 'none') throw new MorrisError('MODEL_UNSUPPORTED', `Adapter bias ${String(raw['bias'])} is not supported.`);
  const r = raw['r'];
  const alpha = raw['lora_alpha'] ?? r;
  if (typeof r !== 'number' || !Number.isInteger(r) || r <= 0 || typeof alpha !== 'number') {
    throw new MorrisError('MODEL_INVALID', `adapter_config.json: r and lora_alpha must be numbers (r=${String(r)}).`);
  }
  const tm = raw['target_modules'];
  const targets: LoraModule[] =
    tm === 'all-linear' ? [...LORA_MODULES] :
    Array.isArray(tm) ? (tm as string[]).map((t) => t.split('.').pop() as LoraModule) :
    [];
  for (const t of targets) {
    if (!LORA_MODULES.includes(t)) throw new MorrisError('MODEL_UNSUPPORTED', `LoRA target module ${t} is not supported.`, { hint: `Supported: ${LORA_MODULES.join(', ')}.` });
  }
  if (targets.length === 0) throw new MorrisError('MODEL_INVALID', 'adapter_config.json: target_modules must list q_proj/k_proj/… (regex strings are not supported).');

  const tensors = readSafetensorsHeader(file).tensors;
  const pairs = new Map<string, { a: TensorEntry; b: TensorEntry }>();
  for (const name of tensors.keys()) {
    const m = /^base_model\.model\.model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)\.lora_([AB])\.weight$/.exec(name);
    if (!m) throw mismatch(`unexpected tensor ${name}`);
    if (Number(m[1]) >= cfg.numLayers) throw mismatch(`tensor ${name} names layer ${m[1]}, the base has ${cfg.numLayers}`);
  }
  for (let layer = 0; layer < cfg.numLayers; layer++) {
    for (const mod of targets) {
      const a = tensors.get(peftKey(layer, mod, 'A'));
      const b = tensors.get(peftKey(layer, mod, 'B'));
      if (!a && !b) continue; // layers_to_transform may skip layers
      if (!a || !b) throw mismatch(`layer ${layer} ${mod} has only one of lora_A/lora_B`);
      const { inF, outF } = moduleShape(cfg, mod);
      const okA = a.shape.length === 2 && a.shape[0] === r && a.shape[1] === inF;
      const okB = b.shape.length === 2 && b.shape[0] === outF && b.shape[1] === r;
      if (!okA || !okB) {
        throw mismatch(`layer ${layer} ${mod}: lora_A [${a.shape.join(', ')}], lora_B [${b.shape.join(', ')}]; this base needs [${r}, ${inF}] and [${outF}, ${r}]`);
      }
      if (![a, b].every((t) => ['F32', 'F16', 'BF16'].includes(t.dtype))) throw new MorrisError('MODEL_UNSUPPORTED', `Adapter tensors of dtype ${a.dtype}.`);
      pairs.set(pairKey(layer, mod), { a, b });
    }
  }
  if (pairs.size === 0) throw mismatch('no lora_A/lora_B tensors for the target modules');
  return {
    dir,
    file,
    r,
    alpha,
    scale: raw['use_rslora'] === true ? alpha / Math.sqrt(r) : alpha / r,
    targetModules: targets,
    baseModel: typeof raw['base_model_name_or_path'] === 'string' ? raw['base_model_name_or_path'] : null,
    pairs,
  };
}

/**
 * An adapter's A/B tensors as float32, keyed by PEFT name, for every entry of a training layout;
 * entries the adapter lacks (layers_to_transform skipping layers), or all of them with no adapter
 * (the base model), are zero: B = 0 makes the side path vanish.
 */
export function adapterTensors(
  adapter: Adapter | null,
  layout: readonly { name: string; layer: number; module: LoraModule; which: 'A' | 'B'; shape: readonly [number, number] }[],
): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const t of layout) {
    const pair = adapter?.pairs.get(pairKey(t.layer, t.module));
    const entry = pair ? (t.which === 'A' ? pair.a : pair.b) : undefined;
    out.set(t.name, entry ? readTensorF32(entry) : new Float32Array(t.shape[0] * t.shape[1]));
  }
  return out;
}
