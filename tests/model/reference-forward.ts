/**
 * A deliberately plain float64 forward pass of a Llama-family decoder (HF semantics), written
 * without the graph builder or ONNX Runtime, as the independent reference the compiled graphs are
 * tested against. It recomputes everything for every position: slow, obvious, easy to check.
 * RoPE scaling is re-derived here from the raw formulas rather than shared with the graph code.
 */
import type { DecoderConfig } from '../../src/model/checkpoint/config.ts';
import type { LoraModule } from '../../src/model/graph/llama.ts';
import type { Adapter } from '../../src/model/checkpoint/lora.ts';
import { pairKey } from '../../src/model/checkpoint/lora.ts';
import { readTensorF32, type TensorEntry } from '../../src/model/checkpoint/safetensors.ts';

type Vec = Float64Array;

export interface ReferenceWeights {
  get(name: string): Vec;
  has(name: string): boolean;
  /** What matrix `name` multiplies instead of x, where the kernel transforms its input (the native
   * int8/int4 kernels quantize it); x itself when absent. */
  input?(name: string, x: Vec): Vec;
}

export function referenceWeights(tensors: ReadonlyMap<string, TensorEntry>): ReferenceWeights {
  const cache = new Map<string, Vec>();
  return {
    has: (n) => tensors.has(n),
    get(n) {
      let v = cache.get(n);
      if (!v) {
        v = Float64Array.from(readTensorF32(tensors.get(n)!));
        cache.set(n, v);
      }
      return v;
    },
  };
}

/** y = W x (+ b) for W [out, in] row-major. */
function matvec(w: Vec, x: Vec, out: number, bias?: Vec): Vec {
  const inF = x.length;
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = bias ? bias[o]! : 0;
    for (let i = 0; i < inF; i++) s += w[o * inF + i]! * x[i]!;
    y[o] = s;
  }
  return y;
}

function rmsnorm(x: Vec, w: Vec, eps: number): Vec {
  let ss = 0;
  for (const v of x) ss += v * v;
  const inv = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * inv * w[i]!);
}

function invFreqs(c: DecoderConfig): number[] {
  const half = c.headDim / 2;
  const base = Array.from({ length: half }, (_, i) => Math.pow(c.ropeTheta, (-2 * i) / c.headDim));
  const s = c.ropeScaling;
  if (!s) return base;
  if (s.type === 'linear') return base.map((f) => f / s.factor);
  return base.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    const lowWl = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
    const highWl = s.originalMaxPositionEmbeddings / s.highFreqFactor;
    if (wavelen > lowWl) return f / s.factor;
    if (wavelen < highWl) return f;
    const t = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    return (1 - t) * (f / s.factor) + t * f;
  });
}

/** rotate_half convention: pairs (i, i + hd/2). */
function applyRope(v: Vec, offset: number, hd: number, pos: number, freqs: number[]): void {
  const half = hd / 2;
  for (let i = 0; i < half; i++) {
    const a = pos * freqs[i]!;
    const c = Math.cos(a);
    const s = Math.sin(a);
    const x1 = v[offset + i]!;
    const x2 = v[offset + i + half]!;
    v[offset + i] = x1 * c - x2 * s;
    v[offset + i + half] = x2 * c + x1 * s;
  }
}

export interface ReferenceLora {
  adapter: Adapter;
  weights: ReferenceWeights;
}

/** Logits [S][V] for one sequence (positions 0..S-1). */
export function referenceForward(c: DecoderConfig, w: ReferenceWeights, ids: readonly number[], lora?: ReferenceLora): Vec[] {
  const H = c.hiddenSize;
  const hd = c.headDim;
  const group = c.numHeads / c.numKvHeads;
  const freqs = invFreqs(c);
  const emb = w.get('model.embed_tokens.weight');
  let xs: Vec[] = ids.map((t) => emb.slice(t * H, (t + 1) * H));

  const linear = (layer: number, block: string, m: LoraModule, x: Vec, out: number): Vec => {
    const name = `model.layers.${layer}.${block}.${m}`;
    const y = matvec(w.get(`${name}.weight`), w.input?.(`${name}.weight`, x) ?? x, out, w.has(`${name}.bias`) ? w.get(`${name}.bias`) : undefined);
    const pair = lora?.adapter.pairs.get(pairKey(layer, m));
    if (pair) {
      const down = matvec(lora!.weights.get(pair.a.name), x, lora!.adapter.r);
      const up = matvec(lora!.weights.get(pair.b.name), down, out);
      for (let i = 0; i < out; i++) y[i]! += up[i]! * lora!.adapter.scale;
    }
    return y;
  };

  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}.`;
    const qs: Vec[] = [];
    const ks: Vec[] = [];
    const vs: Vec[] = [];
    for (let t = 0; t < xs.length; t++) {
      const h = rmsnorm(xs[t]!, w.get(`${p}input_layernorm.weight`), c.rmsNormEps);
      const q = linear(l, 'self_attn', 'q_proj', h, c.numHeads * hd);
      const k = linear(l, 'self_attn', 'k_proj', h, c.numKvHeads * hd);
      for (let hh = 0; hh < c.numHeads; hh++) applyRope(q, hh * hd, hd, t, freqs);
      for (let hh = 0; hh < c.numKvHeads; hh++) applyRope(k, hh * hd, hd, t, freqs);
      qs.push(q);
      ks.push(k);
      vs.push(linear(l, 'self_attn', 'v_proj', h, c.numKvHeads * hd));
    }
    const next: Vec[] = [];
    for (let t = 0; t < xs.length; t++) {
      const ctx = new Float64Array(c.numHeads * hd);
      for (let hh = 0; hh < c.numHeads; hh++) {
        const kv = Math.floor(hh / group);
        const first = c.slidingWindow ? Math.max(0, t - c.slidingWindow + 1) : 0;
        const scores: number[] = [];
        for (let j = first; j <= t; j++) {
          let s = 0;
          for (let d = 0; d < hd; d++) s += qs[t]![hh * hd + d]! * ks[j]![kv * hd + d]!;
          scores.push(s / Math.sqrt(hd));
        }
        const mx = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - mx));
        const z = e.reduce((a, b) => a + b, 0);
        for (let j = first; j <= t; j++) {
          const pj = e[j - first]! / z;
          for (let d = 0; d < hd; d++) ctx[hh * hd + d]! += pj * vs[j]![kv * hd + d]!;
        }
      }
      const o = linear(l, 'self_attn', 'o_proj', ctx, H);
      const x1 = xs[t]!.map((v, i) => v + o[i]!);
      const h2 = rmsnorm(x1, w.get(`${p}post_attention_layernorm.weight`), c.rmsNormEps);
      const gate = linear(l, 'mlp', 'gate_proj', h2, c.intermediateSize);
      const up = linear(l, 'mlp', 'up_proj', h2, c.intermediateSize);
      const act = gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]!);
      const down = linear(l, 'mlp', 'down_proj', act, H);
      next.push(x1.map((v, i) => v + down[i]!));
    }
    xs = next;
  }
  const headName = c.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
  const head = w.get(headName);
  return xs.map((x) => {
    const h = rmsnorm(x, w.get('model.norm.weight'), c.rmsNormEps);
    return matvec(head, w.input?.(headName, h) ?? h, c.vocabSize);
  });
}
