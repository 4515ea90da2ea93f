/**
 * The native decode kernel (native/decode.c): runs single-token fp32 decode steps on the CPU at
 * close to memory bandwidth, where ONNX Runtime's one-row matmul reaches about 60% of it.
 *
 * It plugs in underneath transformers.js: `withNativeDecode` wraps the model's ONNX session so a
 * step that fits (one sequence, one new token, no padding) runs natively and everything else
 * (prompt prefill, batches) runs the ONNX graph unchanged. Both produce the same outputs
 * (logits, present.N.key/value), so the KV cache passes freely between them.
 *
 * The addon is built by `npm install` (scripts/build-native.mjs). Without it, decode uses the ONNX
 * graph alone and `morris doctor` says why.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { MorrisError } from '../errors.ts';
import { childLog } from '../log.ts';
import { REPO_ROOT } from '../paths.ts';
import { ropeInvFreq, type DecoderConfig } from './checkpoint.ts';
import { LORA_MODULES, moduleName } from './llama-graph.ts';
import type { Adapter } from './lora.ts';
import { Tensor, type OrtSession, type OrtTensor } from './ort.ts';
import { readCheckpointTensors, readTensorF32, type TensorEntry } from './safetensors.ts';

const log = childLog('native-decode');

export const NATIVE_ADDON_FILE = path.join(REPO_ROOT, 'native', 'build', 'Release', 'morris_native.node');

export type DecodeKernelChoice = 'auto' | 'native' | 'onnx';

type Handle = { readonly __decoder: unique symbol };
interface TensorDesc { file: number; offset: number; dtype: string; count: number }

export interface NativeAddon {
  kernelInfo(): { isa: 'avx512' | 'avx2' | 'scalar' };
  createDecoder(spec: unknown): Handle;
  decodeStep(
    handle: Handle,
    token: number,
    position: number,
    pastKeys: Float32Array[],
    pastValues: Float32Array[],
    presentKeys: Float32Array[],
    presentValues: Float32Array[],
    logits: Float32Array,
  ): Promise<void>;
  releaseDecoder(handle: Handle): void;
  /** Sum of a Float32Array with the kernel's own loads: one-thread read bandwidth for the roofline. */
  readSum(data: Float32Array): number;
}

let cached: { addon: NativeAddon | null; reason: string } | null = null;

/** The addon, or null with the reason it is unavailable (not built, wrong platform, load error). */
export function nativeAddon(): { addon: NativeAddon | null; reason: string } {
  if (cached) return cached;
  if (!existsSync(NATIVE_ADDON_FILE)) {
    cached = { addon: null, reason: `the native decode kernel is not built (${path.relative(REPO_ROOT, NATIVE_ADDON_FILE)} is missing; run \`npm run build:native\`, which needs python3, make and a C compiler)` };
  } else {
    try {
      const addon = createRequire(import.meta.url)(NATIVE_ADDON_FILE) as NativeAddon;
      cached = { addon, reason: `native decode kernel (${addon.kernelInfo().isa})` };
    } catch (e) {
      cached = { addon: null, reason: `the native decode kernel failed to load: ${e instanceof Error ? e.message : String(e)} (rebuild it with \`npm run build:native\`)` };
    }
  }
  return cached;
}

/** A native decoder for base weights (+ adapter), holding its own mmap of the safetensors files. */
export interface NativeDecoder {
  readonly isa: string;
  step(token: number, position: number, past: { keys: Float32Array[]; values: Float32Array[] }): Promise<{ logits: Float32Array; keys: Float32Array[]; values: Float32Array[] }>;
  release(): void;
}

export function createNativeDecoder(addon: NativeAddon, cfg: DecoderConfig, modelDir: string, adapter: Adapter | null): NativeDecoder {
  const tensors = readCheckpointTensors(modelDir);
  const files: string[] = [];
  const desc = (name: string): TensorDesc => {
    const t = tensors.get(name);
    if (!t) throw new MorrisError('MODEL_INVALID', `The checkpoint in ${modelDir} has no tensor ${name}.`);
    let file = files.indexOf(t.file);
    if (file < 0) file = files.push(t.file) - 1;
    return { file, offset: t.offset, dtype: t.dtype, count: t.shape.reduce((a, b) => a * b, 1) };
  };
  const maybe = (name: string): TensorDesc | undefined => (tensors.has(name) ? desc(name) : undefined);
  const loraTensor = (e: TensorEntry): Float32Array => readTensorF32(e);
  const layer = Array.from({ length: cfg.numLayers }, (_, l) => {
    const w: Record<string, TensorDesc> = {};
    const bias: Record<string, TensorDesc> = {};
    const lora: Record<string, { a: Float32Array; b: Float32Array; r: number; scale: number }> = {};
    for (const m of LORA_MODULES) {
      w[m] = desc(`${moduleName(l, m)}.weight`);
      const b = maybe(`${moduleName(l, m)}.bias`);
      if (b) bias[m] = b;
      const pair = adapter?.pairs.get(`${l}.${m}`);
      if (pair) lora[m] = { a: loraTensor(pair.a), b: loraTensor(pair.b), r: adapter!.r, scale: adapter!.scale };
    }
    return { inNorm: desc(`model.layers.${l}.input_layernorm.weight`), postNorm: desc(`model.layers.${l}.post_attention_layernorm.weight`), w, bias, lora };
  });
  const spec = {
    hidden: cfg.hiddenSize,
    inter: cfg.intermediateSize,
    layers: cfg.numLayers,
    heads: cfg.numHeads,
    kvHeads: cfg.numKvHeads,
    headDim: cfg.headDim,
    vocab: cfg.vocabSize,
    window: cfg.slidingWindow ?? 0,
    eps: cfg.rmsNormEps,
    invFreq: Float32Array.from(ropeInvFreq(cfg)),
    embed: desc('model.embed_tokens.weight'),
    norm: desc('model.norm.weight'),
    head: desc(cfg.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight'),
    layer,
    files,
  };
  let handle: Handle;
  try {
    handle = addon.createDecoder(spec);
  } catch (e) {
    throw new MorrisError('MODEL_INVALID', `The native decode kernel cannot load ${modelDir}: ${e instanceof Error ? e.message : String(e)}.`, {
      hint: 'Check the checkpoint files, or set MORRIS_DECODE_KERNEL=onnx to decode through ONNX Runtime only.',
      cause: e,
    });
  }
  const kvRow = cfg.numKvHeads * cfg.headDim;
  return {
    isa: addon.kernelInfo().isa,
    async step(token, position, past) {
      const pastLen = (past.keys[0]?.length ?? 0) / kvRow;
      const rows = (pastLen + 1) * kvRow;
      const keys = past.keys.map(() => new Float32Array(rows));
      const values = past.values.map(() => new Float32Array(rows));
      const logits = new Float32Array(cfg.vocabSize);
      await addon.decodeStep(handle, token, position, past.keys, past.values, keys, values, logits);
      return { logits, keys, values };
    },
    release: () => addon.releaseDecoder(handle),
  };
}

/** Float32 data of a CPU tensor; null when it lives elsewhere (GPU) or is not float32. */
function cpuFloats(t: OrtTensor | undefined): Float32Array | null {
  if (!t || t.type !== 'float32' || (t.location !== undefined && t.location !== 'cpu')) return null;
  return t.data as Float32Array;
}

/**
 * Wraps an ONNX session (the decoder graph of compile.ts) so that steps the native kernel can
 * take run natively. Any other call goes to the session untouched.
 */
export function withNativeDecode(session: OrtSession, decoder: NativeDecoder, cfg: DecoderConfig, stats: { nativeSteps: number; onnxRuns: number }): OrtSession {
  const L = cfg.numLayers;
  const run = async (feeds: Record<string, OrtTensor>, ...rest: unknown[]): Promise<Record<string, OrtTensor>> => {
    const ids = feeds['input_ids'];
    const mask = feeds['attention_mask'];
    const pos = feeds['position_ids'];
    const fits =
      rest.length === 0 &&
      ids?.dims.length === 2 && ids.dims[0] === 1 && ids.dims[1] === 1 &&
      pos !== undefined && mask !== undefined &&
      (mask.data as BigInt64Array).every((v) => v === 1n);
    const pastKeys: Float32Array[] = [];
    const pastValues: Float32Array[] = [];
    if (fits) {
      for (let l = 0; l < L; l++) {
        const k = cpuFloats(feeds[`past_key_values.${l}.key`]);
        const v = cpuFloats(feeds[`past_key_values.${l}.value`]);
        if (!k || !v) break;
        pastKeys.push(k);
        pastValues.push(v);
      }
    }
    const pastLen = pastKeys.length === L ? feeds[`past_key_values.0.key`]!.dims[2]! : -1;
    if (!fits || pastKeys.length !== L || mask!.dims[1] !== pastLen + 1) {
      stats.onnxRuns++;
      return (session.run as (...a: unknown[]) => Promise<Record<string, OrtTensor>>).call(session, feeds, ...rest);
    }
    const token = Number((ids!.data as BigInt64Array)[0]);
    const position = Number((pos!.data as BigInt64Array)[0]);
    const out = await decoder.step(token, position, { keys: pastKeys, values: pastValues });
    stats.nativeSteps++;
    const result: Record<string, OrtTensor> = { logits: new Tensor('float32', out.logits, [1, 1, cfg.vocabSize]) };
    const dims = [1, cfg.numKvHeads, pastLen + 1, cfg.headDim];
    for (let l = 0; l < L; l++) {
      result[`present.${l}.key`] = new Tensor('float32', out.keys[l]!, dims);
      result[`present.${l}.value`] = new Tensor('float32', out.values[l]!, dims);
    }
    return result;
  };
  return new Proxy(session, {
    get(target, prop, receiver) {
      if (prop === 'run') return run;
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

export function logNativeUnavailable(reason: string): void {
  log.warn({ reason }, 'native decode kernel unavailable; decoding through ONNX Runtime only (slower on CPU)');
}
