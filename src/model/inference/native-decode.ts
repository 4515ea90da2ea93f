/**
 * The native decode kernel (native/, built as morris_native.node): runs single-token fp32 decode
 * steps on the CPU at close to memory bandwidth, where ONNX Runtime's one-row matmul reaches about
 * 60% of it.
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
import { MorrisError } from '../../errors.ts';
import { childLog } from '../../log.ts';
import { REPO_ROOT } from '../../paths.ts';
import { ropeInvFreq, type DecoderConfig } from '../checkpoint/config.ts';
import { LORA_MODULES, moduleName } from '../graph/llama.ts';
import type { QuantizedIndex } from '../graph/compile.ts';
import { pairKey, type Adapter } from '../checkpoint/lora.ts';
import { promptFeeds, Tensor, type OrtSession, type OrtTensor } from './runtime.ts';
import { readCheckpointTensors, readTensorF32 } from '../checkpoint/safetensors.ts';

const log = childLog('native-decode');

/** Where node-gyp puts both addons: morris_native (decode) and morris_probes (bench:generate only). */
export const NATIVE_BUILD_DIR = path.join(REPO_ROOT, 'native', 'build', 'Release');
export const NATIVE_ADDON_FILE = path.join(NATIVE_BUILD_DIR, 'morris_native.node');

export type DecodeKernelChoice = 'auto' | 'native' | 'onnx';

type Handle = { readonly __decoder: unique symbol };
interface TensorDesc { file: number; offset: number; dtype: string; count: number }

export interface NativeAddon {
  /** isa: fp32 kernel; quantIsa: int8/int4 kernel (scalar is slower than ONNX Runtime's). */
  kernelInfo(): { isa: 'avx512' | 'avx2' | 'scalar'; quantIsa: 'avx512' | 'scalar' };
  createDecoder(spec: unknown): Handle;
  /** Appends one position to a slot's KV cache and writes the logits; runs off the main thread. */
  decodeStep(handle: Handle, slot: number, token: number, position: number, logits: Float32Array): Promise<void>;
  /** KV cache slots, one per sequence, held natively ([kvHeads, capacity, headDim] per layer). */
  cacheNew(handle: Handle): number;
  cacheImport(handle: Handle, slot: number, keys: Float32Array[], values: Float32Array[]): void;
  cacheExport(handle: Handle, slot: number, length: number, keys: Float32Array[], values: Float32Array[]): void;
  cacheTruncate(handle: Handle, slot: number, length: number): void;
  cacheFree(handle: Handle, slot: number): void;
  cacheLength(handle: Handle, slot: number): number;
  releaseDecoder(handle: Handle): void;
  /** How the decoder holds its streamed weights: bytes copied into its packed region, and whether that has 2 MiB pages. */
  decoderInfo(handle: Handle): WeightLayout;
}

/** What this code calls: a build from older sources lacks some, and is refused rather than failing mid-load. */
const ADDON_FUNCTIONS = ['kernelInfo', 'createDecoder', 'decodeStep', 'cacheNew', 'cacheImport', 'cacheExport', 'cacheTruncate', 'cacheFree', 'cacheLength', 'releaseDecoder', 'decoderInfo'] as const satisfies readonly (keyof NativeAddon)[];

let cached: { addon: NativeAddon | null; reason: string } | null = null;

/** The addon, or null with the reason it is unavailable (not built, wrong platform, load error). */
export function nativeAddon(): { addon: NativeAddon | null; reason: string } {
  if (cached) return cached;
  const loaded = loadNativeAddon<NativeAddon>(NATIVE_ADDON_FILE, ADDON_FUNCTIONS, 'the native decode kernel');
  cached = loaded.addon ? { addon: loaded.addon, reason: `native decode kernel (${loaded.addon.kernelInfo().isa})` } : loaded;
  return cached;
}

/**
 * Loads one of our addons (`what` names it in the reason), refusing a build that lacks any of
 * `functions`: a build from older sources is found at load, with the command that fixes it,
 * rather than as "not a function" halfway through loading a model.
 */
export function loadNativeAddon<T>(file: string, functions: readonly string[], what: string): { addon: T; reason: null } | { addon: null; reason: string } {
  const rel = path.relative(REPO_ROOT, file);
  if (!existsSync(file)) return { addon: null, reason: `${what} is not built (${rel} is missing; run \`npm run build:native\`, which needs python3, make and a C compiler)` };
  try {
    const addon = createRequire(import.meta.url)(file) as Record<string, unknown>;
    const missing = functions.filter((f) => typeof addon[f] !== 'function');
    return missing.length
      ? { addon: null, reason: `${what} is out of date (${rel} lacks ${missing.join(', ')}; run \`npm run build:native\`)` }
      : { addon: addon as T, reason: null };
  } catch (e) {
    return { addon: null, reason: `${what} failed to load: ${e instanceof Error ? e.message : String(e)} (rebuild it with \`npm run build:native\`)` };
  }
}

export interface KvArrays {
  /** Per layer [kvHeads, length, headDim]. */
  keys: Float32Array[];
  values: Float32Array[];
}

/** One sequence's KV cache inside the native decoder. */
export interface NativeSequence {
  readonly length: number;
  /** Runs the token at `position` (RoPE) against the cache, appends its K/V, returns the logits. */
  step(token: number, position: number): Promise<Float32Array>;
  /** The first `length` cached positions in the ONNX layout. */
  export(length?: number): KvArrays;
  truncate(length: number): void;
  free(): void;
}

/** packedBytes 0: the weights are read in place from the mapped checkpoint (the packed region could not be had). */
export interface WeightLayout { packedBytes: number; hugePages: boolean }

/**
 * A native decoder for base weights (+ adapter): the matrices a step streams are copied once into
 * one region in read order (on 2 MiB pages where the OS allows), the rest is read from its own
 * mmap of the safetensors files.
 */
export interface NativeDecoder {
  readonly isa: string;
  readonly layout: WeightLayout;
  /** A sequence starting from `past` (e.g. the ONNX prefill's present tensors) or empty. */
  sequence(past?: KvArrays): NativeSequence;
  release(): void;
}

/**
 * `quantized`: int8/int4 matrices from the compiled model (the same codes ONNX Runtime's
 * MatMulNBits reads); the embedding lookup and norms stay in the checkpoint's own precision.
 */
export function createNativeDecoder(addon: NativeAddon, cfg: DecoderConfig, modelDir: string, adapter: Adapter | null, quantized: QuantizedIndex | null = null): NativeDecoder {
  const tensors = readCheckpointTensors(modelDir);
  const files: string[] = [];
  const desc = (name: string): TensorDesc => {
    const t = tensors.get(name);
    if (!t) throw new MorrisError('MODEL_INVALID', `The checkpoint in ${modelDir} has no tensor ${name}.`);
    return { file: fileIndex(t.file), offset: t.offset, dtype: t.dtype, count: t.shape.reduce((a, b) => a * b, 1) };
  };
  const fileIndex = (f: string): number => {
    const i = files.indexOf(f);
    return i >= 0 ? i : files.push(f) - 1;
  };
  const matrix = (name: string): TensorDesc | { quant: Record<string, number> } => {
    const q = quantized?.weights.get(name);
    if (!q) return desc(name);
    const file = fileIndex(quantized!.file);
    return { quant: { bits: quantized!.bits, block: quantized!.blockSize, nBlocks: q.nBlocks, file, codes: q.packed.offset, scales: q.scales.offset, zeros: q.zeroPoints.offset } };
  };
  const maybe = (name: string): TensorDesc | undefined => (tensors.has(name) ? desc(name) : undefined);
  const layer = Array.from({ length: cfg.numLayers }, (_, l) => {
    const w: Record<string, ReturnType<typeof matrix>> = {};
    const bias: Record<string, TensorDesc> = {};
    const lora: Record<string, { a: Float32Array; b: Float32Array; r: number; scale: number }> = {};
    for (const m of LORA_MODULES) {
      w[m] = matrix(`${moduleName(l, m)}.weight`);
      const b = maybe(`${moduleName(l, m)}.bias`);
      if (b) bias[m] = b;
      const pair = adapter?.pairs.get(pairKey(l, m));
      if (pair) lora[m] = { a: readTensorF32(pair.a), b: readTensorF32(pair.b), r: adapter!.r, scale: adapter!.scale };
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
    head: matrix(cfg.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight'),
    tied: cfg.tieWordEmbeddings,
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
  const L = cfg.numLayers;
  return {
    isa: addon.kernelInfo().isa,
    layout: addon.decoderInfo(handle),
    sequence(past) {
      const slot = addon.cacheNew(handle);
      let freed = false;
      if (past) {
        try {
          addon.cacheImport(handle, slot, past.keys, past.values);
        } catch (e) {
          addon.cacheFree(handle, slot); // nothing else holds the slot yet
          throw e;
        }
      }
      return {
        get length() {
          return freed ? 0 : addon.cacheLength(handle, slot);
        },
        async step(token, position) {
          const logits = new Float32Array(cfg.vocabSize);
          await addon.decodeStep(handle, slot, token, position, logits);
          return logits;
        },
        export(length) {
          const n = length ?? addon.cacheLength(handle, slot);
          const out: KvArrays = { keys: Array.from({ length: L }, () => new Float32Array(n * kvRow)), values: Array.from({ length: L }, () => new Float32Array(n * kvRow)) };
          addon.cacheExport(handle, slot, n, out.keys, out.values);
          return out;
        },
        truncate: (length) => addon.cacheTruncate(handle, slot, length),
        free() {
          if (freed) return;
          addon.cacheFree(handle, slot); // throws BUSY while this sequence's own step runs
          freed = true;
        },
      };
    },
    release: () => addon.releaseDecoder(handle),
  };
}

/** Float32 data of a CPU tensor; null when it lives elsewhere (GPU) or is not float32. */
function cpuFloats(t: OrtTensor | undefined): Float32Array | null {
  if (!t || t.type !== 'float32' || (t.location !== undefined && t.location !== 'cpu')) return null;
  return t.data as Float32Array;
}

/** Where a present tensor returned by a native step really lives: `length` positions of `seq`. */
interface NativeKv {
  /** One per sequence, reachable only through its placeholders: when they are all gone, so is it. */
  owner: { seq: NativeSequence };
  length: number;
}

/**
 * Wraps an ONNX session (the decoder graph of compile.ts) so that steps the native kernel can
 * take run natively. Any other call goes to the session untouched.
 *
 * The KV cache stays inside the native decoder: the present.N.key/value tensors a native step
 * returns are placeholders of the right shape (shared zero-filled views, never read) that stand
 * for "`length` positions of that sequence", so a step costs no cache copy. The prefill's real
 * tensors are imported once; should a placeholder ever reach the ONNX graph, it is materialized
 * first. Steps run one at a time (the decoder has one set of scratch buffers); concurrent
 * generations each get their own sequence.
 */
export function withNativeDecode(session: OrtSession, decoder: NativeDecoder, cfg: DecoderConfig, stats: KernelStats): NativeDecodeSession {
  const L = cfg.numLayers;
  const kvRow = cfg.numKvHeads * cfg.headDim;
  const placeholders = new WeakMap<OrtTensor, NativeKv>();
  const live = new Set<NativeSequence>();
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(f: () => Promise<T>): Promise<T> => {
    const next = queue.then(f, f);
    queue = next.catch(() => undefined);
    return next;
  };
  // Sequences whose placeholders are all gone free their cache at garbage collection at the latest.
  const collected = new FinalizationRegistry<NativeSequence>((seq) => {
    live.delete(seq);
    void serial(async () => seq.free()); // never while a step of that sequence runs
  });
  let zeros = new Float32Array(0);

  /** The K/V arrays of `tensors` (`<prefix>.N.key|value`), or null if any is off the CPU or not float32. */
  const cpuCache = (tensors: Record<string, OrtTensor>, prefix: 'past_key_values' | 'present'): KvArrays | null => {
    const cache: KvArrays = { keys: [], values: [] };
    for (let l = 0; l < L; l++) {
      const k = cpuFloats(tensors[`${prefix}.${l}.key`]);
      const v = cpuFloats(tensors[`${prefix}.${l}.value`]);
      if (!k || !v) return null;
      cache.keys.push(k);
      cache.values.push(v);
    }
    return cache;
  };

  const materialize = (feeds: Record<string, OrtTensor>): Record<string, OrtTensor> => {
    const out = { ...feeds };
    const first = placeholders.get(feeds['past_key_values.0.key']!);
    if (!first) return out;
    const kv = first.owner.seq.export(first.length);
    const dims = [1, cfg.numKvHeads, first.length, cfg.headDim];
    for (let l = 0; l < L; l++) {
      out[`past_key_values.${l}.key`] = new Tensor('float32', kv.keys[l]!, dims);
      out[`past_key_values.${l}.value`] = new Tensor('float32', kv.values[l]!, dims);
    }
    return out;
  };

  /** A native step, counted in stats (callers serialize). */
  const timedStep = async (seq: NativeSequence, token: number, position: number): Promise<Float32Array> => {
    const t0 = performance.now();
    const logits = await seq.step(token, position);
    stats.nativeMs += performance.now() - t0;
    stats.nativeSteps++;
    return logits;
  };

  const onnx = (feeds: Record<string, OrtTensor>, rest: unknown[]): Promise<Record<string, OrtTensor>> => {
    stats.onnxRuns++;
    return (session.run as (...a: unknown[]) => Promise<Record<string, OrtTensor>>).call(session, feeds, ...rest);
  };

  const run = async (feeds: Record<string, OrtTensor>, ...rest: unknown[]): Promise<Record<string, OrtTensor>> => {
    const ids = feeds['input_ids'];
    const mask = feeds['attention_mask'];
    const pos = feeds['position_ids'];
    const past0 = feeds['past_key_values.0.key'];
    const fits =
      rest.length === 0 && past0 !== undefined &&
      ids?.dims.length === 2 && ids.dims[0] === 1 && ids.dims[1] === 1 &&
      pos !== undefined && mask !== undefined && mask.dims[1] === past0.dims[2]! + 1 &&
      (mask.data as BigInt64Array).every((v) => v === 1n);
    if (!fits) return onnx(materialize(feeds), rest);
    const token = Number((ids!.data as BigInt64Array)[0]);
    const position = Number((pos!.data as BigInt64Array)[0]);
    return serial(async () => {
      let at = placeholders.get(past0!);
      if (!at) {
        // The prefill's (or an earlier ONNX run's) real tensors: copy them in once.
        const past = cpuCache(feeds, 'past_key_values');
        if (!past) return onnx(feeds, rest);
        const seq = decoder.sequence(past);
        live.add(seq);
        const owner = { seq };
        collected.register(owner, seq);
        at = { owner, length: past0!.dims[2]! };
      }
      // A caller that went back to an earlier cache (none does today) gets that prefix.
      const seq = at.owner.seq;
      if (seq.length !== at.length) seq.truncate(at.length);
      const logits = await timedStep(seq, token, position);
      const length = at.length + 1;
      if (zeros.length < length * kvRow) zeros = new Float32Array(Math.max(length * kvRow, zeros.length * 2));
      const view = zeros.subarray(0, length * kvRow);
      const dims = [1, cfg.numKvHeads, length, cfg.headDim];
      const result: Record<string, OrtTensor> = { logits: new Tensor('float32', logits, [1, 1, cfg.vocabSize]) };
      const where: NativeKv = { owner: at.owner, length };
      for (let l = 0; l < L; l++) {
        for (const kind of ['key', 'value']) {
          const t = new Tensor('float32', view, dims);
          placeholders.set(t, where);
          result[`present.${l}.${kind}`] = t;
        }
      }
      return result;
    });
  };
  /** The prompt through the ONNX graph (all positions at once), its cache imported into a new native sequence. */
  const prefill = async (ids: readonly number[]): Promise<{ seq: NativeSequence; logits: Float32Array }> => {
    const out = await onnx(promptFeeds(cfg, ids, 1), []);
    const past = cpuCache(out, 'present');
    if (!past) throw new MorrisError('GENERATION_FAILED', 'The prefill returned its cache off the CPU; the native decode kernel cannot read it.', { hint: 'Set MORRIS_DECODE_KERNEL=onnx.' });
    const logits = cpuFloats(out['logits']);
    if (!logits || logits.length !== cfg.vocabSize) throw new MorrisError('GENERATION_FAILED', `The prefill returned ${logits?.length ?? 'no'} logits where ${cfg.vocabSize} were expected.`);
    const seq = await serial(async () => decoder.sequence(past));
    live.add(seq);
    return { seq, logits: logits.slice() };
  };
  const step = (seq: NativeSequence, token: number, position: number): Promise<Float32Array> => serial(() => timedStep(seq, token, position));
  const release = (seq: NativeSequence): Promise<void> =>
    serial(async () => {
      live.delete(seq);
      seq.free();
    });

  const proxy = new Proxy(session, {
    get(target, prop, receiver) {
      if (prop === 'run') return run;
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return {
    session: proxy,
    prefill,
    step,
    release,
    /** Frees every sequence's cache (call when no generation is running). */
    freeSequences: () => serial(async () => {
      for (const seq of live) seq.free();
      live.clear();
    }),
  };
}

/** Decode steps run natively (and their time, for overhead checks) and calls that went to ONNX Runtime. */
export interface KernelStats {
  nativeSteps: number;
  nativeMs: number;
  onnxRuns: number;
}

/**
 * Two ways to decode with the kernel: `session`, the wrapped ONNX session for transformers.js's
 * generate loop (native steps under it), and the calls a native loop makes itself (engine.ts):
 * `prefill` a prompt through the graph, `step` a sequence one token at a time, `release` it.
 * Steps of all sequences run one at a time either way.
 */
export interface NativeDecodeSession {
  session: OrtSession;
  prefill(ids: readonly number[]): Promise<{ seq: NativeSequence; logits: Float32Array }>;
  step(seq: NativeSequence, token: number, position: number): Promise<Float32Array>;
  release(seq: NativeSequence): Promise<void>;
  freeSequences(): Promise<void>;
}

export function logNativeUnavailable(reason: string): void {
  log.warn({ reason }, 'native decode kernel unavailable; decoding through ONNX Runtime only (slower on CPU)');
}
