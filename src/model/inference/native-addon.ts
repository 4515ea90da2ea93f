/**
 * Loading our N-API addons (native/, built by `npm install` through scripts/build-native.mjs):
 * morris_native.node, the decode kernel, and loadNativeAddon for any of them. Without the decode
 * addon, decode uses the ONNX graph alone and `morris doctor` says why.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { childLog } from '../../log.ts';
import { REPO_ROOT } from '../../paths.ts';

const log = childLog('native-decode');

/** Where node-gyp puts both addons: morris_native (decode) and morris_probes (bench:generate only). */
export const NATIVE_BUILD_DIR = path.join(REPO_ROOT, 'native', 'build', 'Release');
export const NATIVE_ADDON_FILE = path.join(NATIVE_BUILD_DIR, 'morris_native.node');

export type DecodeKernelChoice = 'auto' | 'native' | 'onnx';

export type Handle = { readonly __decoder: unique symbol };
/** A LoRA adapter held natively apart from its decoder (createAdapter), so rows of one batched step can use different ones. */
export type AdapterHandle = { readonly __adapter: unique symbol };

/** packedBytes 0: the weights are read in place from the mapped checkpoint (the packed region could not be had). */
export interface WeightLayout { packedBytes: number; hugePages: boolean }

/** decoderInfo: the layout, and with `profile` in the spec the time spent so far in the base weights' matrix products and their number. */
export interface DecoderInfo extends WeightLayout { matrixMs: number | null; matrixCalls: number | null }

export interface NativeAddon {
  /** isa: fp32 kernel; quantIsa: int8/int4 kernel ('avx512': AVX-512 with VNNI; scalar is slower than ONNX Runtime's). */
  kernelInfo(): { isa: 'avx512' | 'avx2' | 'scalar'; quantIsa: 'avx512' | 'scalar' };
  createDecoder(spec: unknown): Handle;
  /** Appends one position to a slot's KV cache and writes the logits; runs off the main thread. */
  decodeStep(handle: Handle, slot: number, token: number, position: number, logits: Float32Array): Promise<void>;
  /** KV cache slots, one per sequence, held natively ([kvHeads, capacity, headDim] per layer). */
  cacheNew(handle: Handle): number;
  cacheImport(handle: Handle, slot: number, keys: Float32Array[], values: Float32Array[]): void;
  cacheExport(handle: Handle, slot: number, length: number, keys: Float32Array[], values: Float32Array[]): void;
  /** A new slot holding a copy of the first `length` positions of `slot` (a shared prompt prefix computed once). */
  cacheFork(handle: Handle, slot: number, length: number): number;
  cacheFree(handle: Handle, slot: number): void;
  cacheLength(handle: Handle, slot: number): number;
  releaseDecoder(handle: Handle): void;
  /**
   * One step over R rows (row i: slots[i], tokens[i], positions[i], adapters[i] or null for the
   * decoder's own LoRA, wantLogits[i]): each weight matrix is read once for all rows. Rows of one
   * slot are consecutive, at positions continuing its cache (a prompt chunk). `logits` holds
   * [rows with wantLogits, vocab] in row order. Each row's results are bitwise decodeStep's.
   */
  decodeBatch(handle: Handle, slots: Int32Array, tokens: Int32Array, positions: Int32Array, adapters: readonly (AdapterHandle | null)[], wantLogits: Uint8Array, logits: Float32Array): Promise<void>;
  /** spec: { layer: [{ lora: { q_proj: { a, b, r, scale }, … } }, …] }, the decoder spec's per-layer LoRA shape. */
  createAdapter(handle: Handle, spec: unknown): AdapterHandle;
  releaseAdapter(adapter: AdapterHandle): void;
  /** How the decoder holds its streamed weights: bytes copied into its packed region, and whether that has 2 MiB pages. */
  decoderInfo(handle: Handle): DecoderInfo;
}

/** What this code calls: a build from older sources lacks some, and is refused rather than failing mid-load. */
const ADDON_FUNCTIONS = ['kernelInfo', 'createDecoder', 'decodeStep', 'cacheNew', 'cacheImport', 'cacheExport', 'cacheFork', 'cacheFree', 'cacheLength', 'releaseDecoder', 'decoderInfo', 'decodeBatch', 'createAdapter', 'releaseAdapter'] as const satisfies readonly (keyof NativeAddon)[];

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

export function logNativeUnavailable(reason: string): void {
  log.warn({ reason }, 'native decode kernel unavailable; decoding through ONNX Runtime only (slower on CPU)');
}
