/**
 * The only module that imports onnxruntime-node. It knows which execution providers this host
 * can offer, picks one ('auto' = best present: CUDA, CoreML, DirectML, WebGPU, else CPU), builds
 * session options (one intra-op thread without spinning for decode: spinning halves decode speed
 * on small machines) and creates sessions, falling back to CPU with a warning when the chosen
 * provider cannot start (driver missing, out of memory).
 */
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { MorrisError } from '../../errors.ts';
import { childLog } from '../../log.ts';

const log = childLog('ort');

export type Provider = 'cpu' | 'cuda' | 'coreml' | 'dml' | 'webgpu';
export const PROVIDERS: readonly Provider[] = ['cuda', 'coreml', 'dml', 'webgpu', 'cpu'];
export type DeviceChoice = Provider | 'auto';

export const Tensor = ort.Tensor;
export type OrtTensor = ort.Tensor;
export type OrtSession = ort.InferenceSession;

export interface ProviderStatus {
  name: Provider;
  /** The binding knows this provider on this platform. */
  supported: boolean;
  /** Its libraries (and, for WebGPU, a GPU driver) look present; it is tried by 'auto'. */
  usable: boolean;
  note: string;
}

function ortBinDir(): string | undefined {
  try {
    const req = createRequire(import.meta.url);
    const root = dirname(dirname(req.resolve('onnxruntime-node')));
    return join(root, 'bin', 'napi-v6', process.platform, process.arch);
  } catch {
    return undefined; // resolution failure only means we cannot look for provider libraries
  }
}

/** A GPU Vulkan driver is installed (the software rasterizer lavapipe is rejected by Dawn). */
function hasVulkanGpuDriver(): boolean {
  for (const dir of ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d']) {
    if (!existsSync(dir)) continue;
    if (readdirSync(dir).some((f) => f.endsWith('.json') && !f.startsWith('lvp'))) return true;
  }
  return false;
}

/** Providers of this host with whether 'auto' would try them, for `morris doctor`. */
export function listProviders(): ProviderStatus[] {
  const backends = new Map(ort.listSupportedBackends().map((b) => [b.name, b.bundled]));
  const bin = ortBinDir();
  return PROVIDERS.map((name): ProviderStatus => {
    const supported = name === 'cpu' || backends.has(name);
    if (!supported) return { name, supported, usable: false, note: 'not available on this platform' };
    switch (name) {
      case 'cpu':
        return { name, supported, usable: true, note: 'always available' };
      case 'cuda': {
        const lib = bin ? join(bin, 'libonnxruntime_providers_cuda.so') : '';
        const usable = lib !== '' && existsSync(lib);
        return { name, supported, usable, note: usable ? 'provider library present' : 'provider library missing (reinstall onnxruntime-node with ONNXRUNTIME_NODE_INSTALL=cuda12)' };
      }
      case 'webgpu': {
        const usable = process.platform !== 'linux' || hasVulkanGpuDriver();
        return { name, supported, usable, note: usable ? 'bundled' : 'bundled, but no Vulkan GPU driver found' };
      }
      default:
        return { name, supported, usable: true, note: 'bundled' };
    }
  });
}

/** Providers to try in order for a choice; an explicit choice is tried before CPU. */
export function providerCandidates(choice: DeviceChoice): Provider[] {
  if (choice === 'auto') return listProviders().filter((p) => p.usable).map((p) => p.name);
  if (!PROVIDERS.includes(choice)) {
    throw new MorrisError('CONFIG_INVALID', `Unknown device ${String(choice)}.`, { hint: `Use one of: auto, ${PROVIDERS.join(', ')}.` });
  }
  return choice === 'cpu' ? ['cpu'] : [choice, 'cpu'];
}

export interface SessionOpts {
  device?: DeviceChoice;
  /** Intra-op threads; 1 (default) with spinning off is fastest for token-by-token decode. */
  threads?: number;
  /** Extra session options merged over the defaults (training turns the memory pattern off). */
  extra?: ort.InferenceSession.SessionOptions;
}

/** Session options for onnxruntime (also handed to transformers.js as `session_options`). */
export function sessionOptions(threads = 1): ort.InferenceSession.SessionOptions {
  return {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
  };
}

/**
 * Runs `create(provider)` for each candidate provider until one succeeds; warns on every
 * fallback. Used both for raw sessions and for transformers.js model loading.
 */
export async function withProviderFallback<T>(choice: DeviceChoice, create: (p: Provider) => Promise<T>): Promise<{ value: T; device: Provider }> {
  const candidates = providerCandidates(choice);
  let lastError: unknown;
  for (const p of candidates) {
    try {
      return { value: await create(p), device: p };
    } catch (e) {
      lastError = e;
      if (e instanceof MorrisError) throw e;
      if (p !== 'cpu') log.warn({ provider: p, err: e instanceof Error ? e.message : String(e) }, `execution provider ${p} could not start; falling back`);
    }
  }
  throw new MorrisError('DEVICE_UNAVAILABLE', `No execution provider could run the model (tried ${candidates.join(', ')}).`, {
    hint: 'The model file may be invalid for this runtime; see the cause.',
    cause: lastError,
  });
}

/** Creates an ONNX Runtime session for a model file or bytes on the chosen device. */
export async function createSession(model: string | Uint8Array, opts: SessionOpts = {}): Promise<{ session: OrtSession; device: Provider }> {
  const { value, device } = await withProviderFallback(opts.device ?? 'cpu', (p) =>
    typeof model === 'string'
      ? ort.InferenceSession.create(model, { ...sessionOptions(opts.threads), ...opts.extra, executionProviders: [p] })
      : ort.InferenceSession.create(model, { ...sessionOptions(opts.threads), ...opts.extra, executionProviders: [p] }),
  );
  return { session: value, device };
}

/** int64 tensor from numbers. */
export function int64Tensor(values: readonly number[], dims: readonly number[]): OrtTensor {
  return new ort.Tensor('int64', BigInt64Array.from(values, (v) => BigInt(v)), dims);
}

export function float32Tensor(values: Float32Array, dims: readonly number[]): OrtTensor {
  return new ort.Tensor('float32', values, dims);
}

/**
 * Feeds of a prompt's first run through the decoder graph (graph/llama.ts's contract): one
 * sequence at positions 0…n-1 with an empty cache; `logitsToKeep` 0 keeps every position's logits.
 */
export function promptFeeds(cfg: { numLayers: number; numKvHeads: number; headDim: number }, ids: readonly number[], logitsToKeep: number): Record<string, OrtTensor> {
  const feeds: Record<string, OrtTensor> = {
    input_ids: int64Tensor(ids, [1, ids.length]),
    attention_mask: int64Tensor(ids.map(() => 1), [1, ids.length]),
    position_ids: int64Tensor(ids.map((_, i) => i), [1, ids.length]),
    num_logits_to_keep: int64Tensor([logitsToKeep], []),
  };
  const empty = new Float32Array(0);
  for (let l = 0; l < cfg.numLayers; l++) for (const kind of ['key', 'value']) feeds[`past_key_values.${l}.${kind}`] = new ort.Tensor('float32', empty, [1, cfg.numKvHeads, 0, cfg.headDim]);
  return feeds;
}
