/**
 * What decodes a loaded model, chosen once at load: on the CPU, our decode loop over the native
 * kernel's steps (where it applies) or over the ONNX graph's; on a GPU provider, transformers.js's
 * generate (generate-loop.ts). The engine sees one interface either way.
 */
import type { PreTrainedModel } from '@huggingface/transformers';
import { MorrisError } from '../../errors.ts';
import { childLog } from '../../log.ts';
import type { CompiledModel } from '../graph/compile.ts';
import { batchCapacity, kvBytesPerSequence } from './batch-capacity.ts';
import { BatchLoop } from './batch-loop.ts';
import { stepKernelBatches, type Generation, type KernelStats, type StepKernel } from './decode-loop.ts';
import { generateLoop, loadGenerateModel } from './generate-loop.ts';
import { logNativeUnavailable, nativeAddon, type DecodeKernelChoice, type WeightLayout } from './native-addon.ts';
import { createNativeDecoder, type NativeDecoder } from './native-decoder.ts';
import { AdapterPool } from './adapter-pool.ts';
import { nativeBatches } from './native-batch.ts';
import { onnxSteps } from './onnx-steps.ts';
import { createSession, type Provider } from './runtime.ts';

const log = childLog('engine');

export interface Decoder {
  /** What runs single-token decode steps: the native CPU kernel (with its ISA) or the ONNX graph. */
  readonly kernel: string;
  /** Who runs the decode loop: Morris's own (CPU) or transformers.js's generate (GPU providers). */
  readonly loop: 'morris' | 'transformers';
  /** How the native kernel holds its weights; null without it. */
  readonly layout: WeightLayout | null;
  readonly stats: KernelStats;
  /** Generations it advances in one step (1 where each step serves one sequence). */
  readonly maxBatch: number;
  /** Why maxBatch is below the configured batch (memory), or null. */
  readonly batchShrunk: string | null;
  /** Whether each generation may name its own adapter (Generation.adapterDir), several in one step. */
  readonly adapterPool: boolean;
  /** Runs one generation; several may run at once, up to maxBatch in each step. */
  run(g: Generation): Promise<void>;
  /** Called when no generation is running: kernel caches go back at once. */
  idle(): Promise<void>;
  dispose(): Promise<void>;
}

export interface DecoderOptions {
  compiled: CompiledModel;
  /** The checkpoint the native kernel reads its weights from. */
  modelDir: string;
  kernel: DecodeKernelChoice;
  threads: number;
  /** The batch size asked for (MORRIS_MAX_BATCH resolved) and the KV cache budget it must fit. */
  maxBatch: number;
  kvBudgetBytes: number;
  /** Recent prompts the native batch kernel keeps for shared-prefix reuse (0 = off). */
  prefixCacheEntries: number;
}

/**
 * The native decoder when it applies to this model, else null (ONNX Runtime steps instead);
 * MORRIS_DECODE_KERNEL=native where it does not is CONFIG_INVALID.
 */
function openNativeDecoder({ compiled, modelDir, kernel }: DecoderOptions): NativeDecoder | null {
  if (kernel === 'onnx') return null;
  const { addon, reason } = nativeAddon();
  // Quantized weights only pay off natively with the vector kernel; the scalar one is slower than ONNX Runtime.
  const why = kernel === 'auto' && compiled.quant !== 'fp32' && addon && addon.kernelInfo().quantIsa !== 'avx512' ? `this CPU lacks AVX-512 VNNI for ${compiled.quant} weights` : null;
  if (kernel === 'native' && (why || !addon)) throw kernelRefused(why ?? reason);
  if (why) return null;
  if (!addon) {
    logNativeUnavailable(reason);
    return null;
  }
  // The base weights alone: adapters sit beside them in the pool, one per request if need be.
  return createNativeDecoder(addon, compiled.config, modelDir, null, compiled.quantized);
}

/** Prompt tokens of one sequence per native step: a 64-row GEMM is compute-bound already (bench:batch-step). */
const PREFILL_CHUNK = 64;
/** Adapters kept resident while unused. */
const POOL_ADAPTERS = 8;

/**
 * Continuous batching on the native kernel: prompts prefilled natively in chunks, every step one
 * native call for all rows, adapters per request from the pool, shared prompt prefixes reused.
 */
function nativeBatchDecoder(native: NativeDecoder, opts: DecoderOptions): Decoder {
  const { config, adapter } = opts.compiled;
  const stats: KernelStats = { nativeSteps: 0, nativeMs: 0, onnxRuns: 0 };
  const { maxBatch, shrunk } = batchCapacity(config, opts.maxBatch, opts.kvBudgetBytes);
  const pool: AdapterPool = new AdapterPool(native, config, POOL_ADAPTERS, (a) => kernel.forget(a));
  const kernel = nativeBatches(native, stats, {
    adapters: pool,
    defaultAdapterDir: adapter?.dir ?? null,
    prefillChunk: PREFILL_CHUNK,
    prefixCacheEntries: opts.prefixCacheEntries,
    // Cached prompts come out of the batch's KV budget: an eighth of it, beside the batch itself.
    prefixCacheBytes: opts.kvBudgetBytes / 8,
    positionBytes: kvBytesPerSequence(config, 1),
    minPrefix: 16,
  });
  const loop = new BatchLoop(kernel, { prefillBudget: PREFILL_CHUNK });
  return {
    kernel: `native-${native.isa}`,
    loop: 'morris',
    layout: native.layout,
    stats,
    maxBatch,
    batchShrunk: shrunk,
    adapterPool: true,
    run: (g) => loop.run(g),
    idle: async () => undefined, // each sequence's cache goes when it ends; cached prompts stay for the next
    async dispose() {
      pool.clear();
      try {
        native.release(); // unmaps now rather than at garbage collection
      } catch (e) {
        log.warn({ err: e instanceof Error ? e.message : String(e) }, 'native decoder not released early; it goes at garbage collection');
      }
    },
  };
}

function kernelRefused(why: string): MorrisError {
  return new MorrisError('CONFIG_INVALID', `MORRIS_DECODE_KERNEL=native, but ${why}.`, {
    hint: 'The native kernel runs decode on the CPU. Use MORRIS_DECODE_KERNEL=auto to fall back to ONNX Runtime.',
  });
}

/**
 * Our loop on the CPU: the native kernel's batches where it applies (no ONNX Runtime session at
 * all, so no second copy of the weights), else ONNX Runtime's steps one sequence at a time.
 */
export async function openCpuDecoder(opts: DecoderOptions): Promise<Decoder> {
  const native = openNativeDecoder(opts);
  if (native) return nativeBatchDecoder(native, opts);
  const { config, onnxFile } = opts.compiled;
  const { session } = await createSession(onnxFile, { device: 'cpu', threads: opts.threads });
  const stats: KernelStats = { nativeSteps: 0, nativeMs: 0, onnxRuns: 0 };
  const steps: StepKernel = onnxSteps(session, config, stats);
  // Every generation goes through one loop; a kernel that serves one sequence a step gains nothing
  // from company, so it keeps one at a time and the service's waiting line holds the rest.
  const loop = new BatchLoop(stepKernelBatches(steps), { prefillBudget: Infinity });
  return {
    kernel: 'onnx',
    loop: 'morris',
    layout: null,
    stats,
    maxBatch: 1,
    batchShrunk: null,
    adapterPool: false,
    run: (g) => loop.run(g),
    idle: () => steps.idle(),
    async dispose() {
      await session.release();
    },
  };
}

/** transformers.js's generate on a GPU provider, where its loop keeps the cache on the device. */
export async function openGpuDecoder(opts: DecoderOptions, device: Exclude<Provider, 'cpu'>): Promise<Decoder> {
  const model: PreTrainedModel = await loadGenerateModel(opts.compiled.dir, device, opts.threads);
  // Refused only once the provider has started: where it cannot, the CPU and the kernel take over.
  if (opts.kernel === 'native') {
    await model.dispose();
    throw kernelRefused(`the model runs on ${device}`);
  }
  return {
    kernel: 'onnx',
    loop: 'transformers',
    layout: null,
    stats: { nativeSteps: 0, nativeMs: 0, onnxRuns: 0 },
    maxBatch: 1,
    batchShrunk: null,
    adapterPool: false,
    run: (g) => generateLoop(model, g),
    idle: async () => undefined,
    async dispose() {
      await model.dispose();
    },
  };
}
