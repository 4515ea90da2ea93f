/**
 * What base models are on disk and what they cost: architecture, parameter count (from the
 * safetensors headers, so tied embeddings count once), dtype, size on disk, and estimates of the
 * memory needed to serve and to fine-tune them here.
 *
 * Memory estimates (bytes; P parameters, L layers, h hidden, I intermediate, H heads, Hkv KV
 * heads, d head dim, V vocab, f = 4 bytes per fp32 value):
 *
 *   serve = weights + native + kvCache + prefill + runtime
 *     weights  = P·f for fp32; int8/int4 store the linear layers in 1 or 0.5 bytes per value plus
 *                one fp32 scale per 32-value block, embeddings/norms stay fp32 (ORT's quantized
 *                MatMul ops; bf16/fp16 checkpoints are cast to fp32 at load, so they cost the same)
 *     native   = weights again with the native decode kernel (its own copy of the matrices, packed
 *                on huge pages, beside ONNX Runtime's copy for prefill; 0 with MORRIS_DECODE_KERNEL=onnx)
 *     kvCache  = 2·L·Hkv·d·C·f                 (keys and values for a context of C tokens)
 *     prefill  = (C·(4h + 2I) + H·C²)·f       (one layer's activations and attention scores at once)
 *     runtime  = 150 MiB                       (Node, ONNX Runtime and the tokenizer)
 *
 *   train (LoRA, sequence S, rank r on q and v, batch 1) = frozen + saved + logits + lora + runtime
 *     frozen   = P·f                           (base weights, fp32)
 *     saved    = L·(S·(10h + 4I) + 3·H·S²)·f   (activations kept for the backward pass: matmul
 *                                              inputs, norms, residuals; attention scores, probs
 *                                              and their gradient)
 *     logits   = 3·S·V·f                       (logits, softmax and their gradient)
 *     lora     = 4·r·Σ(in+out)·f               (adapter weights, gradients, AdamW m and v)
 *
 * The training constants were checked against the prototype in FACTS.md (SmolLM2-135M, S = 512,
 * r = 16 on q/v: measured 2.59 GB peak RSS; this formula gives 2.6 GB).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { isMorrisError } from '../../errors.ts';
import type { Quant } from '../graph/compile.ts';
import { DTYPE_BYTES, readCheckpointTensors, type SafetensorsDtype } from './safetensors.ts';

const F32 = 4;
const RUNTIME_BYTES = 150 * 1024 * 1024;
/** Quantized ops keep one fp32 scale per block of this many weights. */
const QUANT_BLOCK = 32;


export interface ModelDims {
  layers: number;
  hidden: number;
  intermediate: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  vocab: number;
  maxPositions: number;
}

export interface MemoryOptions {
  /** Serving context in tokens (prompt + answer); capped at the model's maximum. */
  contextTokens: number;
  quant: Quant;
  /** Training sequence length in tokens. */
  trainSeqLen: number;
  loraRank: number;
  /** Whether the native decode kernel serves (MORRIS_DECODE_KERNEL other than onnx). */
  nativeDecode: boolean;
}

export const DEFAULT_MEMORY_OPTIONS: MemoryOptions = { contextTokens: 2048, quant: 'fp32', trainSeqLen: 1024, loraRank: 16, nativeDecode: true };

export interface ModelEntry {
  dir: string;
  name: string;
  architecture: string;
  parameters: number;
  /** Dtype holding most of the weight bytes (F32, BF16, F16). */
  dtype: string;
  weightBytes: number;
  sizeOnDisk: number;
  dims: ModelDims;
  serveBytes: number;
  trainBytes: number;
}

export interface BrokenModel {
  dir: string;
  name: string;
  error: string;
}

function num(cfg: Record<string, unknown>, key: string, fallback?: number): number {
  const v = cfg[key];
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (fallback !== undefined) return fallback;
  throw new Error(`config.json has no numeric ${key}`);
}

export function dimsFromConfig(cfg: Record<string, unknown>): ModelDims {
  const hidden = num(cfg, 'hidden_size');
  const heads = num(cfg, 'num_attention_heads');
  return {
    layers: num(cfg, 'num_hidden_layers'),
    hidden,
    intermediate: num(cfg, 'intermediate_size'),
    heads,
    kvHeads: num(cfg, 'num_key_value_heads', heads),
    headDim: num(cfg, 'head_dim', hidden / heads),
    vocab: num(cfg, 'vocab_size'),
    maxPositions: num(cfg, 'max_position_embeddings', 2048),
  };
}

/** Bytes to serve: see the formula at the top of this file. */
export function serveMemory(d: ModelDims, parameters: number, linearParameters: number, o: Pick<MemoryOptions, 'contextTokens' | 'quant'> & Partial<Pick<MemoryOptions, 'nativeDecode'>>): number {
  const C = Math.min(o.contextTokens, d.maxPositions);
  const perValue = o.quant === 'int8' ? 1 : o.quant === 'int4' ? 0.5 : F32;
  const quantized = o.quant === 'fp32' ? linearParameters * F32 : linearParameters * perValue + (linearParameters / QUANT_BLOCK) * F32;
  const weights = (parameters - linearParameters) * F32 + quantized;
  const kvCache = 2 * d.layers * d.kvHeads * d.headDim * C * F32;
  const prefill = (C * (4 * d.hidden + 2 * d.intermediate) + d.heads * C * C) * F32;
  const native = o.nativeDecode === false ? 0 : weights;
  return Math.round(weights + native + kvCache + prefill + RUNTIME_BYTES);
}

/** Bytes to fine-tune a LoRA adapter (rank r on q and v): see the formula at the top. */
export function trainMemory(d: ModelDims, parameters: number, o: Pick<MemoryOptions, 'trainSeqLen' | 'loraRank'>): number {
  const S = Math.min(o.trainSeqLen, d.maxPositions);
  const frozen = parameters * F32;
  const saved = d.layers * (S * (10 * d.hidden + 4 * d.intermediate) + 3 * d.heads * S * S) * F32;
  const logits = 3 * S * d.vocab * F32;
  const qIO = d.hidden + d.heads * d.headDim;
  const vIO = d.hidden + d.kvHeads * d.headDim;
  const lora = 4 * o.loraRank * d.layers * (qIO + vIO) * F32;
  return Math.round(frozen + saved + logits + lora + RUNTIME_BYTES);
}

function dirSize(dir: string): number {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += dirSize(p);
    else if (e.isFile()) total += statSync(p).size;
  }
  return total;
}

/** Describes one checkpoint folder; throws (MODEL_INVALID / MODEL_MISSING) if it cannot be read. */
export function describeModel(dir: string, opts: MemoryOptions = DEFAULT_MEMORY_OPTIONS): ModelEntry {
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const dims = dimsFromConfig(cfg);
  const tensors = readCheckpointTensors(dir);
  let parameters = 0;
  let linearParameters = 0;
  let weightBytes = 0;
  const bytesByDtype = new Map<SafetensorsDtype, number>();
  for (const t of tensors.values()) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    parameters += n;
    // Linear layers (2-D, inside the decoder blocks) are what the quantized ops compress.
    if (t.shape.length === 2 && t.name.includes('.layers.')) linearParameters += n;
    weightBytes += n * DTYPE_BYTES[t.dtype];
    bytesByDtype.set(t.dtype, (bytesByDtype.get(t.dtype) ?? 0) + n * DTYPE_BYTES[t.dtype]);
  }
  const dtype = [...bytesByDtype].sort((a, b) => b[1] - a[1])[0]?.[0] ?? 'unknown';
  const arch = Array.isArray(cfg['architectures']) ? String(cfg['architectures'][0]) : '';
  return {
    dir,
    name: dir.split(/[\\/]/).filter(Boolean).at(-1)!,
    architecture: `${String(cfg['model_type'] ?? 'unknown')}${arch ? ` (${arch})` : ''}`,
    parameters,
    dtype,
    weightBytes,
    sizeOnDisk: dirSize(dir),
    dims,
    serveBytes: serveMemory(dims, parameters, linearParameters, opts),
    trainBytes: trainMemory(dims, parameters, opts),
  };
}

/**
 * Every checkpoint folder directly under `modelsDir` (or one level deeper, for owner/name
 * layouts); `adapters/` is skipped. Folders that cannot be read are listed with their error.
 */
export function listModels(modelsDir: string, opts: Partial<MemoryOptions> = {}): { models: ModelEntry[]; broken: BrokenModel[] } {
  const o = { ...DEFAULT_MEMORY_OPTIONS, ...opts };
  const models: ModelEntry[] = [];
  const broken: BrokenModel[] = [];
  if (!existsSync(modelsDir)) return { models, broken };
  const visit = (dir: string, depth: number) => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      if (!e.isDirectory() || e.name.startsWith('.') || (depth === 0 && e.name === 'adapters')) continue;
      const p = join(dir, e.name);
      if (existsSync(join(p, 'config.json'))) {
        try {
          models.push(describeModel(p, o));
        } catch (err) {
          broken.push({ dir: p, name: e.name, error: isMorrisError(err) || err instanceof Error ? err.message : String(err) });
        }
      } else if (depth === 0) visit(p, 1);
    }
  };
  visit(modelsDir, 0);
  return { models, broken };
}

/** 1536 → "1.5 KiB". */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n < 10 && i > 0 ? n.toFixed(1) : Math.round(n)} ${units[i]}`;
}

/** 134_515_008 → "134.5M". */
export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`;
  return String(n);
}
