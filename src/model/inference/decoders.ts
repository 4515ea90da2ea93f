/**
 * What decodes a loaded model, chosen once at load: on the CPU, our decode loop over the native
 * kernel's steps (where it applies) or over the ONNX graph's; on a GPU provider, transformers.js's
 * generate (generate-loop.ts). The engine sees one interface either way.
 */
import type { PreTrainedModel } from '@huggingface/transformers';
import { MorrisError } from '../../errors.ts';
import { childLog } from '../../log.ts';
import type { CompiledModel } from '../graph/compile.ts';
import { decodeLoop, type Generation, type KernelStats, type StepKernel } from './decode-loop.ts';
import { generateLoop, loadGenerateModel } from './generate-loop.ts';
import { logNativeUnavailable, nativeAddon, type DecodeKernelChoice, type WeightLayout } from './native-addon.ts';
import { createNativeDecoder, type NativeDecoder } from './native-decoder.ts';
import { nativeSteps } from './native-session.ts';
import { onnxSteps } from './onnx-steps.ts';
import { createSession, type OrtSession, type Provider } from './runtime.ts';

const log = childLog('engine');

export interface Decoder {
  /** What runs single-token decode steps: the native CPU kernel (with its ISA) or the ONNX graph. */
  readonly kernel: string;
  /** Who runs the decode loop: Morris's own (CPU) or transformers.js's generate (GPU providers). */
  readonly loop: 'morris' | 'transformers';
  /** How the native kernel holds its weights; null without it. */
  readonly layout: WeightLayout | null;
  readonly stats: KernelStats;
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
  return createNativeDecoder(addon, compiled.config, modelDir, compiled.adapter, compiled.quantized);
}

function kernelRefused(why: string): MorrisError {
  return new MorrisError('CONFIG_INVALID', `MORRIS_DECODE_KERNEL=native, but ${why}.`, {
    hint: 'The native kernel runs decode on the CPU. Use MORRIS_DECODE_KERNEL=auto to fall back to ONNX Runtime.',
  });
}

/** Our loop on the CPU: prompts through our ONNX session, steps native where the kernel applies. */
export async function openCpuDecoder(opts: DecoderOptions): Promise<Decoder> {
  const native = openNativeDecoder(opts);
  const { config, onnxFile } = opts.compiled;
  let session: OrtSession;
  try {
    ({ session } = await createSession(onnxFile, { device: 'cpu', threads: opts.threads }));
  } catch (e) {
    native?.release();
    throw e;
  }
  const stats: KernelStats = { nativeSteps: 0, nativeMs: 0, onnxRuns: 0 };
  const steps: StepKernel = native ? nativeSteps(session, native, config, stats) : onnxSteps(session, config, stats);
  return {
    kernel: native ? `native-${native.isa}` : 'onnx',
    loop: 'morris',
    layout: native?.layout ?? null,
    stats,
    run: (g) => decodeLoop(steps, g),
    idle: () => steps.idle(),
    async dispose() {
      await session.release();
      try {
        native?.release(); // unmaps now rather than at garbage collection
      } catch (e) {
        log.warn({ err: e instanceof Error ? e.message : String(e) }, 'native decoder not released early; it goes at garbage collection');
      }
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
    run: (g) => generateLoop(model, g),
    idle: async () => undefined,
    async dispose() {
      await model.dispose();
    },
  };
}
