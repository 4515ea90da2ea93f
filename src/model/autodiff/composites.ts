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
import type { GraphBuilder } from '../onnx/builder.ts';

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
