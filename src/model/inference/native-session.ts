/**
 * Decode steps on the native kernel for our decode loop: the prompt goes through the ONNX graph
 * (all positions at once, where ONNX Runtime is fast), its cache is imported once into a native
 * sequence, and every further token is one native step against that cache.
 *
 * Steps run one at a time (the decoder has one set of scratch buffers); concurrent generations
 * each get their own sequence.
 */
import { MorrisError } from '../../errors.ts';
import type { DecoderConfig } from '../checkpoint/config.ts';
import type { KernelStats, StepKernel } from './decode-loop.ts';
import type { KvArrays, NativeDecoder, NativeSequence } from './native-decoder.ts';
import { promptFeeds, type OrtSession, type OrtTensor } from './runtime.ts';

/** Float32 data of a CPU tensor; null when it lives elsewhere (GPU) or is not float32. */
function cpuFloats(t: OrtTensor | undefined): Float32Array | null {
  if (!t || t.type !== 'float32' || (t.location !== undefined && t.location !== 'cpu')) return null;
  return t.data as Float32Array;
}

/** The present.N.key|value arrays of a prefill, or null if any is off the CPU or not float32. */
function presentCache(out: Record<string, OrtTensor>, layers: number): KvArrays | null {
  const cache: KvArrays = { keys: [], values: [] };
  for (let l = 0; l < layers; l++) {
    const k = cpuFloats(out[`present.${l}.key`]);
    const v = cpuFloats(out[`present.${l}.value`]);
    if (!k || !v) return null;
    cache.keys.push(k);
    cache.values.push(v);
  }
  return cache;
}

/** `session` runs the prompts (the decoder graph of compile.ts); `decoder` every step after. */
export function nativeSteps(session: OrtSession, decoder: NativeDecoder, cfg: DecoderConfig, stats: KernelStats): StepKernel {
  const live = new Set<NativeSequence>();
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(f: () => Promise<T>): Promise<T> => {
    const next = queue.then(f, f);
    queue = next.catch(() => undefined);
    return next;
  };

  const step = (seq: NativeSequence, token: number, position: number): Promise<Float32Array> =>
    serial(async () => {
      const t0 = performance.now();
      const logits = await seq.step(token, position);
      stats.nativeMs += performance.now() - t0;
      stats.nativeSteps++;
      return logits;
    });

  return {
    async prefill(ids) {
      stats.onnxRuns++;
      const out = await session.run(promptFeeds(cfg, ids, 1));
      const past = presentCache(out, cfg.numLayers);
      if (!past) throw new MorrisError('GENERATION_FAILED', 'The prefill returned its cache off the CPU; the native decode kernel cannot read it.', { hint: 'Set MORRIS_DECODE_KERNEL=onnx.' });
      const logits = cpuFloats(out['logits']);
      if (!logits || logits.length !== cfg.vocabSize) throw new MorrisError('GENERATION_FAILED', `The prefill returned ${logits?.length ?? 'no'} logits where ${cfg.vocabSize} were expected.`);
      const seq = await serial(async () => decoder.sequence(past));
      live.add(seq);
      const sequence = {
        step: (token: number, position: number) => step(seq, token, position),
        release: () =>
          serial(async () => {
            live.delete(seq);
            seq.free();
          }),
      };
      return { sequence, logits };
    },
    /** Frees every sequence's cache (nothing decodes, so none is mid-step). */
    idle: () =>
      serial(async () => {
        for (const seq of live) seq.free();
        live.clear();
      }),
  };
}
