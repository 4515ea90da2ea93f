/**
 * Small graph-building helpers shared by the gradient rules: constants in a tensor's dtype,
 * zeros like a tensor, and `unbroadcast` (sum a gradient back down to the shape of an input that
 * numpy-broadcast into the output).
 */
import { MorrisError } from '../../errors.ts';
import type { DType, GraphBuilder, Shape } from '../graph/builder.ts';

export function dtypeOf(g: GraphBuilder, t: string): DType {
  return g.tensor(t).dtype ?? 'float32';
}

export function rankOf(g: GraphBuilder, t: string): number | undefined {
  return g.tensor(t).shape?.length;
}

/** A scalar constant in `like`'s dtype. */
export function scalarLike(g: GraphBuilder, v: number, like: string): string {
  return g.scalar(v, dtypeOf(g, like));
}

export function zerosLike(g: GraphBuilder, like: string): string {
  const dtype = dtypeOf(g, like);
  const data = dtype === 'float64' ? new Float64Array(1) : new Float32Array(1);
  const z = g.op('ConstantOfShape', [g.op('Shape', [like])], { value: { tensor: { dtype, shape: [1], data } } });
  g.setInfo(z, dtype, g.tensor(like).shape);
  return z;
}

export function neg(g: GraphBuilder, t: string): string {
  return g.op('Neg', [t]);
}

/** Sums several gradient contributions to the same tensor. */
export function addAll(g: GraphBuilder, parts: readonly string[]): string {
  let acc = parts[0]!;
  for (let i = 1; i < parts.length; i++) acc = g.op('Add', [acc, parts[i]!]);
  return acc;
}

function sameShape(a: Shape | undefined, b: Shape | undefined): boolean {
  return !!a && !!b && a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * Reduces `grad` (the gradient of a broadcast result) to the shape of input `x`: sums over the
 * leading axes `x` lacks and over the axes where `x` has a literal 1. Needs `x`'s static shape
 * (symbolic dims are fine: only a literal 1 can broadcast) and the rank of the result.
 */
export function unbroadcast(g: GraphBuilder, grad: string, x: string, outRank?: number): string {
  const xs = g.tensor(x).shape;
  const gs = g.tensor(grad).shape;
  if (sameShape(xs, gs)) return grad;
  const rank = gs?.length ?? outRank;
  if (!xs || rank === undefined) {
    throw new MorrisError('GRAPH_ERROR', `Cannot differentiate a broadcast into ${x}: its shape or the result's rank is unknown.`, {
      hint: 'Give the forward graph static ranks (the builder records shapes of inputs and initializers).',
    });
  }
  const lead = rank - xs.length;
  const axes: number[] = [];
  for (let i = 0; i < rank; i++) {
    if (i < lead) axes.push(i);
    else if (xs[i - lead] === 1 && gs?.[i] !== 1) axes.push(i);
  }
  if (axes.length === 0) return grad;
  const summed = g.op('ReduceSum', [grad, g.ints(axes)], { keepdims: 1 });
  // (…, 1, …) → x's own shape: drops the leading axes x never had.
  const out = lead > 0 ? g.op('Reshape', [summed, g.op('Shape', [x])]) : summed;
  g.setInfo(out, dtypeOf(g, x), xs);
  return out;
}

/** Swaps the last two axes: (…, M, N) → (…, N, M). */
export function transposeLast2(g: GraphBuilder, t: string, rank: number): string {
  const perm = Array.from({ length: rank }, (_, i) => i);
  [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1]!, perm[rank - 2]!];
  return g.op('Transpose', [t], { perm });
}

export function normAxis(a: number, rank: number): number {
  return a < 0 ? a + rank : a;
}

/** Re-inserts reduced axes so a reduction's gradient broadcasts back over its input. */
export function restoreReducedAxes(g: GraphBuilder, gy: string, axes: readonly number[] | undefined, keepdims: boolean, x: string): string {
  if (keepdims) return gy;
  const r = rankOf(g, x);
  if (axes === undefined) return gy; // full reduction to a scalar broadcasts as is
  if (r === undefined) throw new MorrisError('GRAPH_ERROR', `Rank of ${x} unknown; cannot differentiate its reduction.`);
  return g.op('Unsqueeze', [gy, g.ints([...axes].map((a) => normAxis(a, r)).sort((p, q) => p - q))]);
}
