/**
 * The Llama-family decoder written with the GraphBuilder.
 *
 * - `buildDecoderForward(g, cfg, weights, io)` emits the forward pass into any graph: embeddings,
 *   RMSNorm (Pow→ReduceMean→Add→Sqrt→Div→Mul, which ORT fuses), RoPE with scaling, grouped-query
 *   attention without repeating K/V, SiLU MLP, LM head. Optional past K/V (inference) and
 *   attention mask; optional LoRA side paths per (layer, module) whose A/B are any graph tensors
 *   (initializers for inference, graph inputs for training). The training graph calls this
 *   without past/mask and reads `hidden`/`logits`.
 * - `buildInferenceGraph(...)` wraps it in the transformers.js v4 decoder contract.
 *
 * The residual stream is kept 2-D [N = B·S, H] so every projection is one Gemm with transB=1
 * against the checkpoint's [out, in] weight (no transposed copy).
 */
import { MorrisError } from '../../errors.ts';
import { ropeInvFreq, type DecoderConfig } from '../checkpoint/config.ts';
import { DTYPE_CODE, GraphBuilder, type DType } from './builder.ts';
import type { TensorEntry } from '../checkpoint/safetensors.ts';

export const LORA_MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
export type LoraModule = (typeof LORA_MODULES)[number];

/** HF name prefix of a projection, e.g. `model.layers.3.self_attn.q_proj`. */
export function moduleName(layer: number, m: LoraModule): string {
  const block = m === 'gate_proj' || m === 'up_proj' || m === 'down_proj' ? 'mlp' : 'self_attn';
  return `model.layers.${layer}.${block}.${m}`;
}

/** Float32 graph tensors for HF weight names. */
export interface WeightProvider {
  get(hfName: string): string;
  has(hfName: string): boolean;
  entry(hfName: string): TensorEntry | undefined;
}

const ST_TO_DTYPE: Record<string, DType> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

/**
 * Weights as external-data initializers pointing into safetensors files (never copied). `location`
 * maps a tensor's file to its path relative to the .onnx folder. fp16/bf16 weights get a Cast to
 * float32 that ORT folds when the session is created.
 */
export function externalWeights(g: GraphBuilder, tensors: ReadonlyMap<string, TensorEntry>, location: (file: string) => string, prefix = ''): WeightProvider {
  const made = new Map<string, string>();
  return {
    has: (n) => tensors.has(n),
    entry: (n) => tensors.get(n),
    get(n) {
      const done = made.get(n);
      if (done) return done;
      const e = tensors.get(n);
      if (!e) throw new MorrisError('MODEL_INVALID', `Checkpoint lacks tensor ${n}.`);
      const dtype = ST_TO_DTYPE[e.dtype];
      if (!dtype) throw new MorrisError('MODEL_UNSUPPORTED', `Tensor ${n} has dtype ${e.dtype}.`);
      let t = g.externalInitializer(prefix + n, dtype, e.shape, { location: location(e.file), offset: e.offset, length: e.length });
      if (dtype !== 'float32') t = g.op('Cast', [t], { to: DTYPE_CODE.float32 }, { outputs: [`${prefix}${n}.f32`] });
      made.set(n, t);
      return t;
    },
  };
}

export interface LinearSpec {
  /** HF name prefix (`….q_proj`, or `lm_head`); the weight is `<name>.weight`, [out, in]. */
  readonly name: string;
  readonly weight: string;
  readonly bias?: string;
  readonly inFeatures: number;
  readonly outFeatures: number;
}

/** y[N, out] = x[N, in] · Wᵀ (+ b). Swapped for a quantized implementation by the compiler. */
export type LinearImpl = (g: GraphBuilder, x2d: string, spec: LinearSpec, w: WeightProvider) => string;

export const gemmLinear: LinearImpl = (g, x, spec, w) => {
  const ins = [x, w.get(spec.weight)];
  if (spec.bias) ins.push(w.get(spec.bias));
  return g.op('Gemm', ins, { transB: 1 });
};

/** A/B tensors (float32, A [r, in], B [out, r]) and the alpha/r scale of one LoRA side path. */
export interface LoraTensors {
  readonly a: string;
  readonly b: string;
  readonly scale: number;
  /** Training only: LoRA dropout applied to the side path's input (the base path sees it undropped). */
  readonly dropout?: (input: string) => string;
}

export interface ForwardIO {
  /** int64 [B, S] */
  inputIds: string;
  /** int64 [B, S] */
  positionIds: string;
  /** int64 [B, T] with T = past + S; absent = every key is real (training without padding). */
  attentionMask?: string;
  /** Per layer K/V cache, float32 [B, nKV, P, headDim]. */
  past?: readonly { key: string; value: string }[];
  /** int64 scalar: keep logits of only the last n positions (0 = all). */
  logitsToKeep?: string;
  lora?: (layer: number, m: LoraModule) => LoraTensors | undefined;
  linear?: LinearImpl;
  /** Which linear implementation the LM head uses (defaults to `linear`). */
  lmHeadLinear?: LinearImpl;
  /**
   * Use ONNX Runtime's fused RotaryEmbedding (com.microsoft) with cos/sin tables for positions
   * < maxPositionEmbeddings: 2 ops per layer instead of 12, for decode speed. Inference only (the
   * autodiff has no rule for it).
   */
  fusedRope?: boolean;
  /** Training: stop at the final norm (`logits` is ''); the loss computes the LM head in chunks with its own gradient. */
  skipLmHead?: boolean;
}

/** Largest cos+sin table (elements) embedded for the fused RoPE; bigger contexts use the op chain. */
const MAX_ROPE_TABLE = 8 * 1024 * 1024;

export interface ForwardResult {
  /** float32 [B, S', V] (S' = S, or the kept positions). */
  logits: string;
  /** Final normed hidden states, float32 [B, S, H]. */
  hidden: string;
  /** Residual stream after each layer, float32 [N, H]. */
  layerOutputs: string[];
  /** Per layer K/V including the new positions, [B, nKV, T, headDim]. */
  presents: { key: string; value: string }[];
}

/** Most negative float32: masked scores stay finite so fully masked (padding) rows give no NaN. */
const MASK_MIN = -3.4028234663852886e38;

export function rmsNorm(g: GraphBuilder, x: string, weight: string, eps: number): string {
  const sq = g.op('Pow', [x, g.scalar(2)]);
  const mean = g.op('ReduceMean', [sq], { axes: [-1], keepdims: 1 });
  const rms = g.op('Sqrt', [g.op('Add', [mean, g.scalar(eps)])]);
  return g.op('Mul', [g.op('Div', [x, rms]), weight]);
}

export function buildDecoderForward(g: GraphBuilder, cfg: DecoderConfig, w: WeightProvider, io: ForwardIO): ForwardResult {
  const { hiddenSize: H, numHeads: nH, numKvHeads: nKV, headDim: hd } = cfg;
  const linear = io.linear ?? gemmLinear;
  if (io.past && io.past.length !== cfg.numLayers) throw new MorrisError('GRAPH_ERROR', `Expected ${cfg.numLayers} past K/V pairs, got ${io.past.length}.`);

  const idsShape = g.op('Shape', [io.inputIds]); // [2] = (B, S)
  const batchDim = g.op('Slice', [idsShape, g.ints([0]), g.ints([1])]); // [1] = (B)
  const seqLen = g.op('Gather', [idsShape, g.ints([1], true)]); // scalar S
  const zero = g.ints([0], true);
  const one = g.ints([1], true);

  // RoPE shared by all layers
  const invFreqs = ropeInvFreq(cfg);
  let rope: (x: string) => string; // [B, n, S, hd] → same
  if (io.fusedRope && cfg.maxPositionEmbeddings * hd <= MAX_ROPE_TABLE) {
    const cosT = new Float32Array(cfg.maxPositionEmbeddings * (hd / 2));
    const sinT = new Float32Array(cfg.maxPositionEmbeddings * (hd / 2));
    for (let p = 0; p < cfg.maxPositionEmbeddings; p++) {
      for (let i = 0; i < hd / 2; i++) {
        cosT[p * (hd / 2) + i] = Math.cos(p * Math.fround(invFreqs[i]!));
        sinT[p * (hd / 2) + i] = Math.sin(p * Math.fround(invFreqs[i]!));
      }
    }
    const cosCache = g.constant(cosT, 'float32', [cfg.maxPositionEmbeddings, hd / 2]); // [maxPos, hd/2]
    const sinCache = g.constant(sinT, 'float32', [cfg.maxPositionEmbeddings, hd / 2]);
    rope = (x) => g.op('RotaryEmbedding', [x, io.positionIds, cosCache, sinCache], { interleaved: 0 });
  } else {
    const invFreq = g.constant(Float32Array.from(invFreqs), 'float32', [hd / 2]);
    const pos = g.op('Unsqueeze', [g.op('Cast', [io.positionIds], { to: DTYPE_CODE.float32 }), g.ints([-1])]); // [B, S, 1]
    const freqs = g.op('Mul', [pos, invFreq]); // [B, S, hd/2]
    const emb = g.op('Unsqueeze', [g.op('Concat', [freqs, freqs], { axis: -1 }), g.ints([1])]); // [B, 1, S, hd]
    const cos = g.op('Cos', [emb]);
    const sin = g.op('Sin', [emb]);
    const halves = g.ints([hd / 2, hd / 2]);
    rope = (x) => {
      const [x1, x2] = g.opMulti('Split', [x, halves], 2, { axis: -1 });
      const rotated = g.op('Concat', [g.op('Neg', [x2!]), x1!], { axis: -1 }); // rotate_half
      return g.op('Add', [g.op('Mul', [x, cos]), g.op('Mul', [rotated, sin])]);
    };
  }

  // Additive mask [B or 1, 1, S, T]: causal over absolute positions (+ padding, + sliding window)
  const totalLen = io.attentionMask
    ? g.op('Gather', [g.op('Shape', [io.attentionMask]), g.ints([1], true)])
    : io.past
      ? g.op('Add', [g.op('Gather', [g.op('Shape', [io.past[0]!.key]), g.ints([2], true)]), seqLen])
      : seqLen;
  const keyPos = g.op('Range', [zero, totalLen, one]); // [T]
  const queryPos = g.op('Unsqueeze', [g.op('Range', [g.op('Sub', [totalLen, seqLen]), totalLen, one]), g.ints([-1])]); // [S, 1]
  let allowed = g.op('LessOrEqual', [keyPos, queryPos]); // [S, T]
  if (cfg.slidingWindow) {
    const lowest = g.op('Sub', [queryPos, g.ints([cfg.slidingWindow], true)]);
    allowed = g.op('And', [allowed, g.op('Greater', [keyPos, lowest])]);
  }
  if (io.attentionMask) {
    const pad = g.op('Unsqueeze', [g.op('Cast', [io.attentionMask], { to: DTYPE_CODE.bool }), g.ints([1, 2])]); // [B, 1, 1, T]
    allowed = g.op('And', [allowed, pad]); // [B, 1, S, T]
  }
  const mask = g.op('Where', [allowed, g.scalar(0), g.scalar(MASK_MIN)]);

  const embed = w.get('model.embed_tokens.weight');
  let x = g.op('Reshape', [g.op('Gather', [embed, io.inputIds]), g.ints([-1, H])]); // [N, H]

  const headsShape = (n: number) => g.op('Concat', [idsShape, g.ints([n, hd])], { axis: 0 }); // (B, S, n, hd)
  const qShape = headsShape(nH);
  const kvShape = headsShape(nKV);
  const scale = g.scalar(1 / Math.sqrt(hd));

  const proj = (layer: number, m: LoraModule, input: string, inF: number, outF: number, withBias: boolean): string => {
    const name = moduleName(layer, m);
    const spec: LinearSpec = { name, weight: `${name}.weight`, bias: withBias ? `${name}.bias` : undefined, inFeatures: inF, outFeatures: outF };
    let y = linear(g, input, spec, w);
    const l = io.lora?.(layer, m);
    if (l) {
      const down = g.op('Gemm', [l.dropout ? l.dropout(input) : input, l.a], { transB: 1 }); // [N, r]
      y = g.op('Add', [y, g.op('Gemm', [down, l.b], { transB: 1, alpha: l.scale })]);
    }
    return y;
  };

  const layerOutputs: string[] = [];
  const presents: { key: string; value: string }[] = [];
  for (let i = 0; i < cfg.numLayers; i++) {
    const p = `model.layers.${i}.`;
    const h = rmsNorm(g, x, w.get(`${p}input_layernorm.weight`), cfg.rmsNormEps);
    const toHeads = (t: string, shape: string) => g.op('Transpose', [g.op('Reshape', [t, shape])], { perm: [0, 2, 1, 3] }); // [B, n, S, hd]
    const q = rope(toHeads(proj(i, 'q_proj', h, H, nH * hd, cfg.qkvBias), qShape));
    let k = rope(toHeads(proj(i, 'k_proj', h, H, nKV * hd, cfg.qkvBias), kvShape));
    let v = toHeads(proj(i, 'v_proj', h, H, nKV * hd, cfg.qkvBias), kvShape);
    if (io.past) {
      k = g.op('Concat', [io.past[i]!.key, k], { axis: 2 }); // [B, nKV, T, hd]
      v = g.op('Concat', [io.past[i]!.value, v], { axis: 2 });
    }
    presents.push({ key: k, value: v });
    // GQA: heads sharing a KV head are contiguous, so fold them into the query axis
    const qg = g.op('Reshape', [g.op('Mul', [q, scale]), g.ints([0, nKV, -1, hd])]); // [B, nKV, g·S, hd]
    const scores = g.op('MatMul', [qg, g.op('Transpose', [k], { perm: [0, 1, 3, 2] })]); // [B, nKV, g·S, T]
    const masked = g.op('Add', [g.op('Reshape', [scores, g.ints([0, nH, -1, 0])]), mask]); // [B, nH, S, T]
    const probs = g.op('Reshape', [g.op('Softmax', [masked], { axis: -1 }), g.ints([0, nKV, -1, 0])]); // [B, nKV, g·S, T]
    const ctx = g.op('Reshape', [g.op('MatMul', [probs, v]), g.ints([0, nH, -1, hd])]); // [B, nH, S, hd]
    const ctx2d = g.op('Reshape', [g.op('Transpose', [ctx], { perm: [0, 2, 1, 3] }), g.ints([-1, nH * hd])]); // [N, nH·hd]
    x = g.op('Add', [x, proj(i, 'o_proj', ctx2d, nH * hd, H, cfg.oBias)]);

    const h2 = rmsNorm(g, x, w.get(`${p}post_attention_layernorm.weight`), cfg.rmsNormEps);
    const gate = proj(i, 'gate_proj', h2, H, cfg.intermediateSize, cfg.mlpBias);
    const up = proj(i, 'up_proj', h2, H, cfg.intermediateSize, cfg.mlpBias);
    const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]); // SiLU(gate) · up
    x = g.op('Add', [x, proj(i, 'down_proj', act, cfg.intermediateSize, H, cfg.mlpBias)]);
    layerOutputs.push(x);
  }

  const normed = rmsNorm(g, x, w.get('model.norm.weight'), cfg.rmsNormEps); // [N, H]
  const hidden = g.op('Reshape', [normed, g.op('Concat', [idsShape, g.ints([H])], { axis: 0 })]); // [B, S, H]
  let kept = normed;
  if (io.logitsToKeep) {
    const start = g.op('Unsqueeze', [g.op('Neg', [io.logitsToKeep]), g.ints([0])]); // [1]; -0 keeps all
    const tail = g.op('Slice', [hidden, start, g.ints([Number.MAX_SAFE_INTEGER]), g.ints([1])]); // [B, S', H]
    kept = g.op('Reshape', [tail, g.ints([-1, H])]);
  }
  if (io.skipLmHead) return { logits: '', hidden, layerOutputs, presents };
  const headWeight = cfg.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
  const headSpec: LinearSpec = { name: 'lm_head', weight: headWeight, inFeatures: H, outFeatures: cfg.vocabSize };
  const logits2d = (io.lmHeadLinear ?? linear)(g, kept, headSpec, w); // [N', V]
  const logits = g.op('Reshape', [logits2d, g.op('Concat', [batchDim, g.ints([-1, cfg.vocabSize])], { axis: 0 })]); // [B, S', V]
  return { logits, hidden, layerOutputs, presents };
}

/**
 * The inference graph under the transformers.js v4 decoder contract: inputs input_ids,
 * attention_mask, position_ids, past_key_values.N.key|value, num_logits_to_keep; outputs logits
 * and present.N.key|value. The batch dim is named `batch_size` and nKV/head_dim are fixed numbers,
 * because transformers.js builds the empty cache from this metadata.
 */
export type InferenceSetup = (g: GraphBuilder) => { weights: WeightProvider } & Pick<ForwardIO, 'lora' | 'linear' | 'lmHeadLinear' | 'fusedRope'>;

export function buildInferenceGraph(cfg: DecoderConfig, setup: InferenceSetup): GraphBuilder {
  const g = new GraphBuilder({ name: `morris_${cfg.modelType}_decoder` });
  const B = 'batch_size';
  const inputIds = g.input('input_ids', 'int64', [B, 'sequence_length']);
  const attentionMask = g.input('attention_mask', 'int64', [B, 'total_sequence_length']);
  const positionIds = g.input('position_ids', 'int64', [B, 'sequence_length']);
  const past = Array.from({ length: cfg.numLayers }, (_, i) => ({
    key: g.input(`past_key_values.${i}.key`, 'float32', [B, cfg.numKvHeads, 'past_sequence_length', cfg.headDim]),
    value: g.input(`past_key_values.${i}.value`, 'float32', [B, cfg.numKvHeads, 'past_sequence_length', cfg.headDim]),
  }));
  const logitsToKeep = g.input('num_logits_to_keep', 'int64', []);
  const { weights, ...opts } = setup(g);
  const out = buildDecoderForward(g, cfg, weights, { fusedRope: true, ...opts, inputIds, attentionMask, positionIds, past, logitsToKeep });
  g.output(out.logits, 'logits');
  g.setInfo('logits', 'float32', [B, 'logits_length', cfg.vocabSize]);
  out.presents.forEach((p, i) => {
    for (const kind of ['key', 'value'] as const) {
      const name = g.output(p[kind], `present.${i}.${kind}`);
      g.setInfo(name, 'float32', [B, cfg.numKvHeads, 'total_sequence_length', cfg.headDim]);
    }
  });
  return g;
}
