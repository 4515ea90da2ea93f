/**
 * The native decode kernel (native/, built as morris_native.node): runs single-token fp32 decode
 * steps on the CPU at close to memory bandwidth, where ONNX Runtime's one-row matmul reaches about
 * 60% of it. This module hands it a checkpoint's weights and wraps its KV cache slots as sequences.
 * stepBatch advances many sequences in one step (continuous batching, prompts prefilled in chunks,
 * a LoRA adapter per row from loadAdapter) reading each weight matrix once for all of them, with
 * every row's logits bitwise those of sequence.step.
 */
import { MorrisError } from '../../errors.ts';
import { ropeInvFreq, type DecoderConfig } from '../checkpoint/config.ts';
import { LORA_MODULES, moduleName } from '../graph/llama.ts';
import type { QuantizedIndex } from '../graph/compile.ts';
import { pairKey, type Adapter } from '../checkpoint/lora.ts';
import { readCheckpointTensors, readTensorF32 } from '../checkpoint/safetensors.ts';
import type { AdapterHandle, Handle, NativeAddon, WeightLayout } from './native-addon.ts';

interface TensorDesc { file: number; offset: number; dtype: string; count: number }

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
  /** A new sequence whose cache is a copy of this one's first `length` positions (a shared prompt prefix computed once). */
  fork(length: number): NativeSequence;
  free(): void;
}

/** A LoRA adapter loaded next to a decoder's base weights, for rows of stepBatch. */
export interface NativeAdapter {
  /** Throws BUSY while a step that uses it runs; twice is fine. */
  release(): void;
}

/** One row of a batched step: a decode token of a sequence, or one position of a prompt being prefilled. */
export interface BatchRow {
  sequence: NativeSequence;
  token: number;
  /** Must continue the sequence's cache: its length, plus the row's index among this step's rows of the sequence. */
  position: number;
  /** null or absent: the decoder's own adapter (none for a base decoder). */
  adapter?: NativeAdapter | null;
  /** Only rows that want logits run the LM head (a prompt chunk wants them for its last row at most). */
  wantLogits: boolean;
}

/** Per-layer LoRA pairs as the native spec takes them (createDecoder's `lora`, createAdapter's). */
type LoraSpec = Record<string, { a: Float32Array; b: Float32Array; r: number; scale: number }>;

function loraSpec(adapter: Adapter, layer: number): LoraSpec {
  const lora: LoraSpec = {};
  for (const m of LORA_MODULES) {
    const pair = adapter.pairs.get(pairKey(layer, m));
    if (pair) lora[m] = { a: readTensorF32(pair.a), b: readTensorF32(pair.b), r: adapter.r, scale: adapter.scale };
  }
  return lora;
}

/**
 * A native decoder for base weights (+ adapter): the matrices a step streams are copied once into
 * one region in read order (on 2 MiB pages where the OS allows), the rest is read from its own
 * mmap of the safetensors files.
 */
export interface NativeDecoder {
  readonly isa: string;
  readonly layout: WeightLayout;
  /** Logits per row. */
  readonly vocab: number;
  /** A sequence starting from `past` (e.g. the ONNX prefill's present tensors) or empty. */
  sequence(past?: KvArrays): NativeSequence;
  /**
   * One step that advances many rows (continuous batching, prompts prefilled in chunks, a LoRA
   * adapter per row), reading each weight matrix once for all of them. Returns one logits array
   * per row with wantLogits, in order; each is bitwise what sequence.step would give.
   * `into`: where to write them (the arrays returned are views of it), for a caller that reads
   * them before its next step. Why: a fresh array a step is fresh memory a step, and the kernel
   * faulting in and zeroing its pages (2 MiB ones at 8 rows) cost 5-9% of an 8-row step.
   */
  stepBatch(rows: readonly BatchRow[], into?: Float32Array): Promise<Float32Array[]>;
  /** Copies the adapter's LoRA pairs next to the base weights; its rank may differ from the decoder's own. */
  loadAdapter(adapter: Adapter): NativeAdapter;
  /**
   * With `profile` (benchmarks): milliseconds spent so far in the base weights' matrix products,
   * and how many ran (one per matrix per step, however many rows); else null.
   */
  profile(): { matrixMs: number; matrixCalls: number } | null;
  release(): void;
}

/**
 * `quantized`: int8/int4 matrices from the compiled model (the same codes ONNX Runtime's
 * MatMulNBits reads); the embedding lookup and norms stay in the checkpoint's own precision.
 */
export function createNativeDecoder(
  addon: NativeAddon,
  cfg: DecoderConfig,
  modelDir: string,
  adapter: Adapter | null,
  quantized: QuantizedIndex | null = null,
  options: { profile?: boolean } = {},
): NativeDecoder {
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
    for (const m of LORA_MODULES) {
      w[m] = matrix(`${moduleName(l, m)}.weight`);
      const b = maybe(`${moduleName(l, m)}.bias`);
      if (b) bias[m] = b;
    }
    const lora = adapter ? loraSpec(adapter, l) : {};
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
    ...(options.profile ? { profile: 1 } : {}),
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
  /** The live slot of each sequence this decoder made (-1 once freed), for stepBatch. */
  const slotOf = new WeakMap<NativeSequence, () => number>();
  const adapterHandles = new WeakMap<NativeAdapter, AdapterHandle>();

  const wrap = (slot: number): NativeSequence => {
    let freed = false;
    const seq: NativeSequence = {
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
      fork(length) {
        return wrap(addon.cacheFork(handle, freed ? -1 : slot, length));
      },
      free() {
        if (freed) return;
        addon.cacheFree(handle, slot); // throws BUSY while this sequence's own step runs
        freed = true;
      },
    };
    slotOf.set(seq, () => (freed ? -1 : slot));
    return seq;
  };

  return {
    isa: addon.kernelInfo().isa,
    layout: (({ packedBytes, hugePages }) => ({ packedBytes, hugePages }))(addon.decoderInfo(handle)),
    vocab: cfg.vocabSize,
    sequence(past) {
      const slot = addon.cacheNew(handle);
      if (past) {
        try {
          addon.cacheImport(handle, slot, past.keys, past.values);
        } catch (e) {
          addon.cacheFree(handle, slot); // nothing else holds the slot yet
          throw e;
        }
      }
      return wrap(slot);
    },
    async stepBatch(rows, into) {
      const n = rows.length;
      const slots = new Int32Array(n);
      const tokens = new Int32Array(n);
      const positions = new Int32Array(n);
      const want = new Uint8Array(n);
      const adapters: (AdapterHandle | null)[] = [];
      rows.forEach((row, i) => {
        const slot = slotOf.get(row.sequence);
        if (!slot) throw new MorrisError('BAD_INPUT', `stepBatch: row ${i}'s sequence belongs to another decoder.`);
        slots[i] = slot();
        tokens[i] = row.token;
        positions[i] = row.position;
        want[i] = row.wantLogits ? 1 : 0;
        const a = row.adapter ? adapterHandles.get(row.adapter) : null;
        if (row.adapter && !a) throw new MorrisError('BAD_INPUT', `stepBatch: row ${i}'s adapter was loaded into another decoder.`);
        adapters.push(a ?? null);
      });
      const wanted = want.reduce((s, w) => s + w, 0);
      if (into && into.length < wanted * cfg.vocabSize) throw new MorrisError('INTERNAL', `stepBatch: the logits buffer holds ${into.length} values, ${wanted * cfg.vocabSize} are needed.`);
      const logits = into ? into.subarray(0, wanted * cfg.vocabSize) : new Float32Array(wanted * cfg.vocabSize);
      await addon.decodeBatch(handle, slots, tokens, positions, adapters, want, logits);
      return Array.from({ length: wanted }, (_, i) => logits.subarray(i * cfg.vocabSize, (i + 1) * cfg.vocabSize));
    },
    loadAdapter(adapter) {
      const h = addon.createAdapter(handle, { layer: Array.from({ length: L }, (_, l) => ({ lora: loraSpec(adapter, l) })) });
      const loaded: NativeAdapter = { release: () => addon.releaseAdapter(h) };
      adapterHandles.set(loaded, h);
      return loaded;
    },
    profile() {
      const { matrixMs, matrixCalls } = addon.decoderInfo(handle);
      return matrixMs === null || matrixCalls === null ? null : { matrixMs, matrixCalls };
    },
    release: () => addon.releaseDecoder(handle),
  };
}
