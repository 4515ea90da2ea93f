/**
 * Hugging Face checkpoint folders → one normalized, frozen DecoderConfig. Llama-family variants
 * (llama, mistral, qwen2; SmolLM2 is llama) are data here, not classes: the graph builder and the
 * reference forward read only DecoderConfig. Anything we cannot run faithfully fails with
 * MODEL_UNSUPPORTED naming the field, rather than producing subtly wrong text.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MorrisError } from '../../errors.ts';
import { readCheckpointTensors, type TensorEntry } from './safetensors.ts';

export type ModelType = 'llama' | 'mistral' | 'qwen2';
export const SUPPORTED_MODEL_TYPES: readonly ModelType[] = ['llama', 'mistral', 'qwen2'];

export type RopeScaling =
  | { readonly type: 'linear'; readonly factor: number }
  | {
      readonly type: 'llama3';
      readonly factor: number;
      readonly lowFreqFactor: number;
      readonly highFreqFactor: number;
      readonly originalMaxPositionEmbeddings: number;
    };

export interface DecoderConfig {
  readonly modelType: ModelType;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly vocabSize: number;
  readonly maxPositionEmbeddings: number;
  readonly rmsNormEps: number;
  readonly ropeTheta: number;
  readonly ropeScaling: RopeScaling | null;
  readonly tieWordEmbeddings: boolean;
  /** q/k/v projections carry a bias (qwen2 always; llama with attention_bias). */
  readonly qkvBias: boolean;
  /** o_proj carries a bias (llama attention_bias). */
  readonly oBias: boolean;
  /** gate/up/down carry a bias (llama mlp_bias). */
  readonly mlpBias: boolean;
  readonly torchDtype: 'float32' | 'float16' | 'bfloat16';
  readonly bosTokenId: number | null;
  readonly eosTokenIds: readonly number[];
  /** Mistral's sliding window; contexts longer than this are refused rather than computed wrongly. */
  readonly slidingWindow: number | null;
}

function unsupported(what: string, hint?: string): MorrisError {
  return new MorrisError('MODEL_UNSUPPORTED', `Unsupported model: ${what}.`, {
    hint: hint ?? 'Morris runs Llama-family decoders (llama, mistral, qwen2, SmolLM2) with SiLU MLPs and linear/llama3 RoPE scaling.',
  });
}

function num(raw: Record<string, unknown>, key: string, fallback?: number): number {
  const v = raw[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new MorrisError('MODEL_INVALID', `config.json: ${key} must be a number, got ${JSON.stringify(raw[key])}.`);
  }
  return v;
}

function int(raw: Record<string, unknown>, key: string, fallback?: number): number {
  const v = num(raw, key, fallback);
  if (!Number.isInteger(v) || v <= 0) throw new MorrisError('MODEL_INVALID', `config.json: ${key} must be a positive integer, got ${v}.`);
  return v;
}

function parseRopeScaling(raw: unknown, maxPos: number): RopeScaling | null {
  if (raw === null || raw === undefined) return null;
  const r = raw as Record<string, unknown>;
  const type = (r['rope_type'] ?? r['type']) as string | undefined;
  if (type === 'default') return null;
  const factor = num(r, 'factor');
  if (type === 'linear') return { type, factor };
  if (type === 'llama3') {
    return {
      type,
      factor,
      lowFreqFactor: num(r, 'low_freq_factor', 1),
      highFreqFactor: num(r, 'high_freq_factor', 4),
      originalMaxPositionEmbeddings: int(r, 'original_max_position_embeddings', maxPos),
    };
  }
  throw unsupported(`rope_scaling type ${String(type)}`, 'Supported rope_scaling types: linear, llama3.');
}

/** Normalizes a parsed config.json; throws MODEL_UNSUPPORTED / MODEL_INVALID with the field named. */
export function parseDecoderConfig(raw: Record<string, unknown>): DecoderConfig {
  const modelType = raw['model_type'] as string;
  if (!SUPPORTED_MODEL_TYPES.includes(modelType as ModelType)) {
    throw unsupported(`model_type ${JSON.stringify(modelType)} (architectures ${JSON.stringify(raw['architectures'] ?? [])})`);
  }
  const act = (raw['hidden_act'] ?? raw['hidden_activation'] ?? 'silu') as string;
  if (act !== 'silu') throw unsupported(`hidden_act ${act}`);
  if (raw['partial_rotary_factor'] !== undefined && raw['partial_rotary_factor'] !== 1) throw unsupported(`partial_rotary_factor ${String(raw['partial_rotary_factor'])}`);
  if ((raw['pretraining_tp'] ?? 1) !== 1) throw unsupported(`pretraining_tp ${String(raw['pretraining_tp'])}`);
  if (raw['quantization_config'] !== undefined) throw unsupported('pre-quantized checkpoint (quantization_config)', 'Use the unquantized checkpoint; Morris quantizes on its own (quant: int8 | int4).');
  if (modelType === 'qwen2' && raw['use_sliding_window'] === true) throw unsupported('qwen2 with use_sliding_window');

  const hiddenSize = int(raw, 'hidden_size');
  const numHeads = int(raw, 'num_attention_heads');
  const numKvHeads = int(raw, 'num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) throw new MorrisError('MODEL_INVALID', `config.json: ${numHeads} heads do not divide into ${numKvHeads} KV heads.`);
  const headDim = raw['head_dim'] === undefined || raw['head_dim'] === null ? hiddenSize / numHeads : int(raw, 'head_dim');
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) throw new MorrisError('MODEL_INVALID', `config.json: head_dim ${headDim} must be an even integer.`);
  const maxPositionEmbeddings = int(raw, 'max_position_embeddings', 2048);
  const dtypeRaw = (raw['torch_dtype'] ?? raw['dtype'] ?? 'float32') as string;
  const torchDtype = dtypeRaw === 'float16' || dtypeRaw === 'bfloat16' ? dtypeRaw : dtypeRaw === 'float32' ? 'float32' : null;
  if (!torchDtype) throw unsupported(`torch_dtype ${dtypeRaw}`);
  const eos = raw['eos_token_id'];
  const attentionBias = raw['attention_bias'] === true;
  const sw = raw['sliding_window'];
  return Object.freeze({
    modelType: modelType as ModelType,
    hiddenSize,
    intermediateSize: int(raw, 'intermediate_size'),
    numLayers: int(raw, 'num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: int(raw, 'vocab_size'),
    maxPositionEmbeddings,
    rmsNormEps: num(raw, 'rms_norm_eps', 1e-6),
    ropeTheta: num(raw, 'rope_theta', 10000),
    ropeScaling: parseRopeScaling(raw['rope_scaling'], maxPositionEmbeddings),
    // LlamaConfig, MistralConfig and Qwen2Config all default to untied.
    tieWordEmbeddings: raw['tie_word_embeddings'] === true,
    qkvBias: modelType === 'qwen2' || attentionBias,
    oBias: modelType !== 'qwen2' && attentionBias,
    mlpBias: raw['mlp_bias'] === true,
    torchDtype,
    bosTokenId: typeof raw['bos_token_id'] === 'number' ? raw['bos_token_id'] : null,
    eosTokenIds: Object.freeze(Array.isArray(eos) ? (eos as number[]) : typeof eos === 'number' ? [eos] : []),
    slidingWindow: modelType === 'mistral' && typeof sw === 'number' ? sw : null,
  });
}

export function readJson(file: string, what: string): Record<string, unknown> {
  if (!existsSync(file)) {
    throw new MorrisError('MODEL_MISSING', `Missing ${what}: ${file}.`, {
      hint: 'Point --model at a Hugging Face checkpoint folder (config.json, safetensors weights, tokenizer.json), or pull one with `morris model pull`.',
    });
  }
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new MorrisError('MODEL_INVALID', `${file} is not valid JSON.`, { cause: e });
  }
}

export function readDecoderConfig(dir: string): DecoderConfig {
  if (!existsSync(dir)) {
    throw new MorrisError('MODEL_MISSING', `Model folder ${dir} does not exist.`, {
      hint: 'Create a tiny test model with `morris model init-tiny DIR`, or pull one with `morris model pull REPO_ID`.',
    });
  }
  return parseDecoderConfig(readJson(join(dir, 'config.json'), 'config.json'));
}

export interface Checkpoint {
  readonly dir: string;
  readonly config: DecoderConfig;
  readonly tensors: ReadonlyMap<string, TensorEntry>;
}

/** HF tensor names of layer `i`'s weights. */
export const layerPrefix = (i: number): string => `model.layers.${i}.`;

function expectShape(tensors: ReadonlyMap<string, TensorEntry>, name: string, shape: readonly number[]): void {
  const t = tensors.get(name);
  if (!t) throw new MorrisError('MODEL_INVALID', `Checkpoint lacks tensor ${name}.`, { hint: 'The weights do not match config.json; download the model again.' });
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new MorrisError('MODEL_INVALID', `Tensor ${name} has shape [${t.shape.join(', ')}], config.json implies [${shape.join(', ')}].`);
  }
  if (!['F32', 'F16', 'BF16'].includes(t.dtype)) throw unsupported(`tensor ${name} of dtype ${t.dtype}`);
}

/** Reads config and tensor index of a checkpoint folder and checks every tensor the decoder needs. */
export function openCheckpoint(dir: string): Checkpoint {
  const config = readDecoderConfig(dir);
  const tensors = readCheckpointTensors(dir);
  const c = config;
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  expectShape(tensors, 'model.embed_tokens.weight', [c.vocabSize, c.hiddenSize]);
  expectShape(tensors, 'model.norm.weight', [c.hiddenSize]);
  if (!c.tieWordEmbeddings) expectShape(tensors, 'lm_head.weight', [c.vocabSize, c.hiddenSize]);
  for (let i = 0; i < c.numLayers; i++) {
    const p = layerPrefix(i);
    expectShape(tensors, `${p}input_layernorm.weight`, [c.hiddenSize]);
    expectShape(tensors, `${p}post_attention_layernorm.weight`, [c.hiddenSize]);
    expectShape(tensors, `${p}self_attn.q_proj.weight`, [q, c.hiddenSize]);
    expectShape(tensors, `${p}self_attn.k_proj.weight`, [kv, c.hiddenSize]);
    expectShape(tensors, `${p}self_attn.v_proj.weight`, [kv, c.hiddenSize]);
    expectShape(tensors, `${p}self_attn.o_proj.weight`, [c.hiddenSize, q]);
    expectShape(tensors, `${p}mlp.gate_proj.weight`, [c.intermediateSize, c.hiddenSize]);
    expectShape(tensors, `${p}mlp.up_proj.weight`, [c.intermediateSize, c.hiddenSize]);
    expectShape(tensors, `${p}mlp.down_proj.weight`, [c.hiddenSize, c.intermediateSize]);
    if (c.qkvBias) {
      expectShape(tensors, `${p}self_attn.q_proj.bias`, [q]);
      expectShape(tensors, `${p}self_attn.k_proj.bias`, [kv]);
      expectShape(tensors, `${p}self_attn.v_proj.bias`, [kv]);
    }
    if (c.oBias) expectShape(tensors, `${p}self_attn.o_proj.bias`, [c.hiddenSize]);
    if (c.mlpBias) {
      expectShape(tensors, `${p}mlp.gate_proj.bias`, [c.intermediateSize]);
      expectShape(tensors, `${p}mlp.up_proj.bias`, [c.intermediateSize]);
      expectShape(tensors, `${p}mlp.down_proj.bias`, [c.hiddenSize]);
    }
  }
  return { dir, config, tensors };
}

/**
 * RoPE inverse frequencies [headDim/2] with rope scaling applied (HF semantics), float64.
 * Linear scaling divides positions by `factor`, i.e. divides every frequency by it.
 */
export function ropeInvFreq(c: DecoderConfig): Float64Array {
  const half = c.headDim / 2;
  const out = new Float64Array(half);
  for (let i = 0; i < half; i++) out[i] = 1 / c.ropeTheta ** ((2 * i) / c.headDim);
  const s = c.ropeScaling;
  if (!s) return out;
  if (s.type === 'linear') return out.map((f) => f / s.factor);
  const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  return out.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highWavelen) return f;
    if (wavelen > lowWavelen) return f / s.factor;
    const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    return (1 - smooth) * (f / s.factor) + smooth * f;
  });
}
