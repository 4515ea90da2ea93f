/**
 * Composite ops that build their own gradient instead of leaving it to the per-op rules, where a
 * whole-op derivative is much cheaper than the chain of local ones.
 *
 * lmHeadCrossEntropy: LM head + weighted cross-entropy, in row chunks. With z = h·Wᵀ,
 *   loss = Σ_n w_n · (logsumexp(z_n) − z_n[t_n])
 *   ∂loss/∂z_n = w_n · (softmax(z_n) − onehot(t_n)),   ∂loss/∂h = (∂loss/∂z)·W
 * so no log-softmax, gather/scatter chain or vocab-wide gradient temporaries are kept: each
 * chunk's [rows, V] tensors live only while that chunk is computed. The caller hands ∂loss/∂h to
 * the autodiff as a seed.
 */
import type { GraphBuilder, NodeInfo } from '../graph/builder.ts';

export interface LmHeadLoss {
  /** float32 scalar */
  readonly loss: string;
  /** ∂loss/∂hidden [N, H] (when asked for). */
  readonly dHidden?: string;
}

/**
 * hidden [N, H], weight [V, H] (a frozen initializer), targets int64 [N, 1], weights float [N, 1].
 * `chunks` equal row blocks (the caller pads N to a multiple).
 */
export function lmHeadCrossEntropy(
  g: GraphBuilder,
  hidden: string,
  weight: string,
  targets: string,
  weights: string,
  chunks: number,
  withGradient: boolean,
): LmHeadLoss {
  const split = (t: string): string[] => (chunks === 1 ? [t] : g.opMulti('Split', [t], chunks, { axis: 0 }));
  const hs = split(hidden);
  const ts = split(targets);
  const ws = split(weights);
  const losses: string[] = [];
  const grads: string[] = [];
  const last = g.ints([-1]);
  for (let c = 0; c < chunks; c++) {
    const z = g.op('Gemm', [hs[c]!, weight], { transB: 1 }); // [n, V]
    const m = g.op('ReduceMax', [z], { axes: [-1], keepdims: 1 }); // [n, 1]
    const e = g.op('Exp', [g.op('Sub', [z, m])]); // [n, V]
    const s = g.op('ReduceSum', [e, last], { keepdims: 1 }); // [n, 1]
    const lse = g.op('Add', [g.op('Log', [s]), m]); // [n, 1]
    const picked = g.op('GatherElements', [z, ts[c]!], { axis: 1 }); // [n, 1]
    losses.push(g.op('ReduceSum', [g.op('Mul', [g.op('Sub', [lse, picked]), ws[c]!])], { keepdims: 0 }));
    if (!withGradient) continue;
    const dz = g.op('Mul', [e, g.op('Div', [ws[c]!, s])]); // w · softmax   [n, V]
    const dzt = g.op('ScatterElements', [dz, ts[c]!, g.op('Neg', [ws[c]!])], { axis: 1, reduction: 'add' }); // − w at the target
    // (W·dzᵀ)ᵀ keeps the weight on the left, unpacked (see the Gemm gradient rule).
    grads.push(g.op('Transpose', [g.op('Gemm', [weight, dzt], { transA: 1, transB: 1 })], { perm: [1, 0] })); // [n, H]
  }
  let loss = losses[0]!;
  for (let c = 1; c < chunks; c++) loss = g.op('Add', [loss, losses[c]!]);
  g.setInfo(loss, 'float32', []);
  if (!withGradient) return { loss };
  const dHidden = chunks === 1 ? grads[0]! : g.op('Concat', grads, { axis: 0 });
  g.setInfo(dHidden, 'float32', g.tensor(hidden).shape);
  return { loss, dHidden };
}

/**
 * A composite recognised in a forward graph: `node` is its last op; `rule` returns gradient
 * contributions for the composite's real inputs, and the ops inside get no local rules.
 */
export interface CompositeMatch {
  readonly name: string;
  readonly inner: readonly NodeInfo[];
  readonly rule: (g: GraphBuilder, gy: string, need: (t: string) => boolean) => Map<string, string>;
}

const singleUse = (g: GraphBuilder, t: string): boolean => g.consumers(t).length === 1;

function constValueOf(g: GraphBuilder, t: string): number | undefined {
  const init = g.initializers.get(t);
  return init?.data && init.data.length === 1 ? Number(init.data[0]) : undefined;
}

/**
 * RMSNorm as the decoder writes it: Pow(x,2) → ReduceMean(−1) → Add(ε) → Sqrt → Div(x, ·) → Mul(·, w).
 * Its own gradient (r = √(mean x² + ε), gw = g ⊙ w):
 *   dx = (gw − x · mean(gw ⊙ x) / r²) / r
 * needs only x, so the forward chain keeps no extra activations and ORT can fuse it into one
 * kernel. r is recomputed from x·x (not Pow) so common-subexpression elimination cannot merge the
 * recomputation back into the forward chain and undo that fusion.
 */
export function matchRmsNorm(g: GraphBuilder, mul: NodeInfo): CompositeMatch | undefined {
  if (mul.opType !== 'Mul') return undefined;
  const div = g.producer(mul.inputs[0]!);
  if (div?.opType !== 'Div' || !singleUse(g, div.outputs[0]!)) return undefined;
  const x = div.inputs[0]!;
  const sqrt = g.producer(div.inputs[1]!);
  if (sqrt?.opType !== 'Sqrt' || !singleUse(g, sqrt.outputs[0]!)) return undefined;
  const add = g.producer(sqrt.inputs[0]!);
  if (add?.opType !== 'Add' || !singleUse(g, add.outputs[0]!)) return undefined;
  const eps = constValueOf(g, add.inputs[1]!);
  const mean = g.producer(add.inputs[0]!);
  const axes = mean?.attrs['axes'] as number[] | undefined;
  if (eps === undefined || mean?.opType !== 'ReduceMean' || axes?.length !== 1 || axes[0] !== -1 || mean.attrs['keepdims'] === 0 || !singleUse(g, mean.outputs[0]!)) return undefined;
  const pow = g.producer(mean.inputs[0]!);
  if (pow?.opType !== 'Pow' || pow.inputs[0] !== x || constValueOf(g, pow.inputs[1]!) !== 2 || !singleUse(g, pow.outputs[0]!)) return undefined;
  const w = mul.inputs[1]!;
  return {
    name: 'RMSNorm',
    inner: [pow, mean, add, sqrt, div],
    rule: (gb, gy, need) => {
      const out = new Map<string, string>();
      if (!need(x)) return out;
      const dtype = gb.tensor(x).dtype ?? 'float32';
      const k = (v: number) => gb.scalar(v, dtype);
      const r2 = gb.op('Add', [gb.op('ReduceMean', [gb.op('Mul', [x, x])], { axes: [-1], keepdims: 1 }), k(eps)]); // [N, 1]
      const inv = gb.op('Reciprocal', [gb.op('Sqrt', [r2])]); // 1/r
      const gw = gb.op('Mul', [gy, w]);
      const proj = gb.op('ReduceMean', [gb.op('Mul', [gw, x])], { axes: [-1], keepdims: 1 }); // mean(gw ⊙ x)
      const coeff = gb.op('Mul', [proj, gb.op('Mul', [inv, inv])]); // mean(gw ⊙ x) / r²
      out.set(x, gb.op('Mul', [gb.op('Sub', [gw, gb.op('Mul', [x, coeff])]), inv]));
      if (need(w)) {
        // dw = Σ_rows g ⊙ x / r (summed over every leading axis)
        const r = gb.tensor(x).shape?.length ?? 2;
        const normalized = gb.op('Mul', [x, inv]);
        out.set(w, gb.op('ReduceSum', [gb.op('Mul', [gy, normalized]), gb.ints(Array.from({ length: r - 1 }, (_, i) => i))], { keepdims: 0 }));
      }
      return out;
    },
  };
}

export const COMPOSITE_MATCHERS: readonly ((g: GraphBuilder, n: NodeInfo) => CompositeMatch | undefined)[] = [matchRmsNorm];
