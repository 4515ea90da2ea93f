/**
 * The native decode kernel under transformers.js: `withNativeDecode` wraps the model's ONNX session
 * so a step that fits (one sequence, one new token, no padding) runs natively and everything else
 * (prompt prefill, batches) runs the ONNX graph unchanged. Both produce the same outputs (logits,
 * present.N.key/value), so the KV cache passes freely between them.
 */
import { MorrisError } from '../../errors.ts';
import type { DecoderConfig } from '../checkpoint/config.ts';
import { promptFeeds, Tensor, type OrtSession, type OrtTensor } from './runtime.ts';
import type { KvArrays, NativeDecoder, NativeSequence } from './native-decoder.ts';

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
