/**
 * THE gradient-rule table: one local rule per ONNX op, keyed by op type (micrograd/tinygrad
 * style). A rule gets the forward node, the gradients of its outputs (`gy`, undefined where no
 * gradient flows) and which inputs need a gradient, and returns one gradient tensor (or
 * undefined) per input, built from ops in the one op table. tests/model/autodiff-rules.test.ts
 * checks every entry against finite differences.
 */
import { MorrisError } from '../../errors.ts';
import type { GraphBuilder, NodeInfo } from '../graph/builder.ts';
import {
  dtypeOf,
  neg,
  normAxis,
  rankOf,
  restoreReducedAxes,
  scalarLike,
  transposeLast2,
  unbroadcast,
  zerosLike,
} from './helpers.ts';

export interface GradCtx {
  readonly g: GraphBuilder;
  readonly node: NodeInfo;
  /** Gradient of each output; undefined where nothing downstream needs it. */
  readonly gy: readonly (string | undefined)[];
  /** need[i]: input i is on a path to a trainable tensor. */
  readonly need: readonly boolean[];
}

export type GradRule = (c: GradCtx) => (string | undefined)[];

const x0 = (c: GradCtx) => c.node.inputs[0]!;
const y0 = (c: GradCtx) => c.node.outputs[0]!;
const gy0 = (c: GradCtx) => c.gy[0]!;
const outRank = (c: GradCtx) => rankOf(c.g, y0(c));
/** Only builds a gradient for an input that needs one. */
const when = (need: boolean | undefined, f: () => string): string | undefined => (need ? f() : undefined);

/** op(X) @ op(Y) as one Gemm (2-D operands). */
function gemm(g: GraphBuilder, x: string, tX: number, y: string, tY: number, alpha: number): string {
  const attrs: Record<string, number> = {};
  if (tX) attrs['transA'] = 1;
  if (tY) attrs['transB'] = 1;
  if (alpha !== 1) attrs['alpha'] = alpha;
  return g.op('Gemm', [x, y], attrs);
}

/** The value of a one-element float initializer, when `t` is one. */
function constScalar(g: GraphBuilder, t: string): number | undefined {
  const init = g.initializers.get(t);
  if (!init?.data || init.data.length !== 1 || !(init.dtype === 'float32' || init.dtype === 'float64')) return undefined;
  return Number(init.data[0]);
}

/** An initializer, or a Cast of one (fp16/bf16 weights): its value is fixed at session creation. */
function isConstant(g: GraphBuilder, t: string): boolean {
  if (g.initializers.has(t)) return true;
  const p = g.producer(t);
  return p?.opType === 'Cast' && g.initializers.has(p.inputs[0]!);
}

function intAttr(node: NodeInfo, name: string, dflt: number): number {
  const v = node.attrs[name];
  return v === undefined ? dflt : (v as number);
}

export const GRADIENT_RULES: Readonly<Record<string, GradRule>> = {
  Identity: (c) => [gy0(c)],
  Neg: (c) => [neg(c.g, gy0(c))],

  Add: (c) => {
    const r = outRank(c);
    return [when(c.need[0], () => unbroadcast(c.g, gy0(c), c.node.inputs[0]!, r)), when(c.need[1], () => unbroadcast(c.g, gy0(c), c.node.inputs[1]!, r))];
  },
  Sub: (c) => {
    const r = outRank(c);
    return [when(c.need[0], () => unbroadcast(c.g, gy0(c), c.node.inputs[0]!, r)), when(c.need[1], () => unbroadcast(c.g, neg(c.g, gy0(c)), c.node.inputs[1]!, r))];
  },
  Mul: (c) => {
    const [a, b] = c.node.inputs as [string, string];
    const r = outRank(c);
    return [
      when(c.need[0], () => unbroadcast(c.g, c.g.op('Mul', [gy0(c), b]), a, r)),
      when(c.need[1], () => unbroadcast(c.g, c.g.op('Mul', [gy0(c), a]), b, r)),
    ];
  },
  Div: (c) => {
    // y = a / b:  da = g / b;  db = -g · y / b
    const [a, b] = c.node.inputs as [string, string];
    const r = outRank(c);
    return [
      when(c.need[0], () => unbroadcast(c.g, c.g.op('Div', [gy0(c), b]), a, r)),
      when(c.need[1], () => unbroadcast(c.g, neg(c.g, c.g.op('Div', [c.g.op('Mul', [gy0(c), y0(c)]), b])), b, r)),
    ];
  },
  Pow: (c) => {
    // y = a^b:  da = g · b · a^(b-1);  db = g · y · ln a
    const [a, b] = c.node.inputs as [string, string];
    const r = outRank(c);
    return [
      when(c.need[0], () => {
        // A constant exponent (x² in RMSNorm) needs no second Pow: d/da a^e = e · a^(e−1).
        const e = constScalar(c.g, b);
        let d: string;
        if (e === 2) d = c.g.op('Mul', [gy0(c), c.g.op('Mul', [a, scalarLike(c.g, 2, a)])]);
        else if (e !== undefined) d = c.g.op('Mul', [gy0(c), c.g.op('Mul', [c.g.op('Pow', [a, scalarLike(c.g, e - 1, b)]), scalarLike(c.g, e, a)])]);
        else d = c.g.op('Mul', [c.g.op('Mul', [gy0(c), b]), c.g.op('Pow', [a, c.g.op('Sub', [b, scalarLike(c.g, 1, b)])])]);
        return unbroadcast(c.g, d, a, r);
      }),
      when(c.need[1], () => unbroadcast(c.g, c.g.op('Mul', [c.g.op('Mul', [gy0(c), y0(c)]), c.g.op('Log', [a])]), b, r)),
    ];
  },
  Sqrt: (c) => [c.g.op('Div', [c.g.op('Mul', [gy0(c), scalarLike(c.g, 0.5, y0(c))]), y0(c)])],
  Reciprocal: (c) => [neg(c.g, c.g.op('Mul', [gy0(c), c.g.op('Mul', [y0(c), y0(c)])]))],
  Exp: (c) => [c.g.op('Mul', [gy0(c), y0(c)])],
  Log: (c) => [c.g.op('Div', [gy0(c), x0(c)])],
  Sigmoid: (c) => {
    // σ' = σ (1 − σ)
    const oneMinus = c.g.op('Sub', [scalarLike(c.g, 1, y0(c)), y0(c)]);
    return [c.g.op('Mul', [gy0(c), c.g.op('Mul', [y0(c), oneMinus])])];
  },
  // softplus(x) = ln(1 + eˣ) (the DPO loss is softplus(−z) = −ln σ(z)):  d/dx = σ(x)
  Softplus: (c) => [c.g.op('Mul', [gy0(c), c.g.op('Sigmoid', [x0(c)])])],
  Tanh: (c) => [c.g.op('Mul', [gy0(c), c.g.op('Sub', [scalarLike(c.g, 1, y0(c)), c.g.op('Mul', [y0(c), y0(c)])])])],
  Relu: (c) => {
    const pos = c.g.op('Greater', [x0(c), scalarLike(c.g, 0, x0(c))]);
    return [c.g.op('Where', [pos, gy0(c), scalarLike(c.g, 0, x0(c))])];
  },
  Erf: (c) => {
    // erf'(x) = 2/√π · exp(−x²)
    const x = x0(c);
    const e = c.g.op('Exp', [neg(c.g, c.g.op('Mul', [x, x]))]);
    return [c.g.op('Mul', [gy0(c), c.g.op('Mul', [e, scalarLike(c.g, 2 / Math.sqrt(Math.PI), x)])])];
  },
  Sin: (c) => [c.g.op('Mul', [gy0(c), c.g.op('Cos', [x0(c)])])],
  Cos: (c) => [neg(c.g, c.g.op('Mul', [gy0(c), c.g.op('Sin', [x0(c)])]))],

  Softmax: (c) => {
    // dx = y ⊙ (g − Σ_axis g ⊙ y)
    const axis = intAttr(c.node, 'axis', -1);
    const gyY = c.g.op('Mul', [gy0(c), y0(c)]);
    const s = c.g.op('ReduceSum', [gyY, c.g.ints([axis])], { keepdims: 1 });
    return [c.g.op('Mul', [y0(c), c.g.op('Sub', [gy0(c), s])])];
  },
  LogSoftmax: (c) => {
    // dx = g − softmax(x) · Σ_axis g
    const axis = intAttr(c.node, 'axis', -1);
    const s = c.g.op('ReduceSum', [gy0(c), c.g.ints([axis])], { keepdims: 1 });
    return [c.g.op('Sub', [gy0(c), c.g.op('Mul', [c.g.op('Exp', [y0(c)]), s])])];
  },

  ReduceSum: (c) => {
    const x = x0(c);
    const axesName = c.node.inputs[1];
    const axes = axesName ? c.g.constValue(axesName) : undefined;
    if (axesName && !axes) throw new MorrisError('GRAPH_ERROR', `ReduceSum ${c.node.name}: axes must be a constant to differentiate.`);
    const back = restoreReducedAxes(c.g, gy0(c), axes, intAttr(c.node, 'keepdims', 1) !== 0, x);
    return [c.g.op('Expand', [back, c.g.op('Shape', [x])])];
  },
  ReduceMean: (c) => {
    const x = x0(c);
    const xs = c.g.tensor(x).shape;
    const axes = c.node.attrs['axes'] as number[] | undefined;
    if (!xs) throw new MorrisError('GRAPH_ERROR', `ReduceMean ${c.node.name}: input shape unknown.`);
    const reduced = (axes ?? xs.map((_, i) => i)).map((a) => xs[normAxis(a, xs.length)]!);
    if (!reduced.every((d) => typeof d === 'number')) {
      throw new MorrisError('GRAPH_ERROR', `ReduceMean ${c.node.name} reduces a symbolic axis; use ReduceSum and a division.`);
    }
    const n = (reduced as number[]).reduce((p, q) => p * q, 1);
    const back = restoreReducedAxes(c.g, gy0(c), axes, intAttr(c.node, 'keepdims', 1) !== 0, x);
    return [c.g.op('Expand', [c.g.op('Mul', [back, scalarLike(c.g, 1 / n, x)]), c.g.op('Shape', [x])])];
  },

  MatMul: (c) => {
    const [a, b] = c.node.inputs as [string, string];
    const ra = rankOf(c.g, a);
    const rb = rankOf(c.g, b);
    if (ra === undefined || rb === undefined || ra < 2 || rb < 2) {
      throw new MorrisError('GRAPH_ERROR', `MatMul ${c.node.name}: gradients need operands of known rank ≥ 2.`);
    }
    const g = gy0(c);
    const r = Math.max(ra, rb);
    const ga = when(c.need[0], () => {
      if (rb === 2 && ra > 2) return c.g.op('MatMul', [g, c.g.op('Transpose', [b], { perm: [1, 0] })]);
      return unbroadcast(c.g, c.g.op('MatMul', [g, transposeLast2(c.g, b, rb)]), a, r);
    });
    const gb = when(c.need[1], () => {
      if (rb === 2 && ra > 2) {
        // Fold the batch axes: (…, M, K) → (N·M, K), so dB = Aᵀ·G is one GEMM.
        const k = c.g.op('Shape', [a], { start: -1 });
        const n = c.g.op('Shape', [g], { start: -1 });
        const a2 = c.g.op('Reshape', [a, c.g.op('Concat', [c.g.ints([-1]), k], { axis: 0 })]); // (·, K)
        const g2 = c.g.op('Reshape', [g, c.g.op('Concat', [c.g.ints([-1]), n], { axis: 0 })]); // (·, N)
        const d = gemm(c.g, a2, 1, g2, 0, 1);
        c.g.setInfo(d, dtypeOf(c.g, b), c.g.tensor(b).shape);
        return d;
      }
      return unbroadcast(c.g, c.g.op('MatMul', [transposeLast2(c.g, a, ra), g]), b, r);
    });
    return [ga, gb];
  },
  Gemm: (c) => {
    // Y = α·op(A)·op(B) + β·C
    const [a, b, cc] = c.node.inputs as [string, string, string | undefined];
    const tA = intAttr(c.node, 'transA', 0);
    const tB = intAttr(c.node, 'transB', 0);
    const alpha = (c.node.attrs['alpha'] as number | undefined) ?? 1;
    const beta = (c.node.attrs['beta'] as number | undefined) ?? 1;
    const g = gy0(c);
    return [
      when(c.need[0], () => {
        if (tA) return gemm(c.g, b, tB, g, 1, alpha);
        // With a constant B (a frozen weight), ORT pre-packs B once per distinct use as the
        // right-hand operand; G·op(B)ᵀ would pre-pack the whole weight a second time. Computing
        // (op(B)·Gᵀ)ᵀ keeps the weight on the left, unpacked, at the cost of one transpose.
        if (isConstant(c.g, b)) return c.g.op('Transpose', [gemm(c.g, b, tB, g, 1, alpha)], { perm: [1, 0] });
        return gemm(c.g, g, 0, b, 1 - tB, alpha);
      }),
      when(c.need[1], () => (tB ? gemm(c.g, g, 1, a, tA, alpha) : gemm(c.g, a, 1 - tA, g, 0, alpha))),
      when(!!cc && c.need[2], () => {
        const gs = beta === 1 ? g : c.g.op('Mul', [g, scalarLike(c.g, beta, g)]);
        return unbroadcast(c.g, gs, cc!, 2);
      }),
    ];
  },

  Transpose: (c) => {
    const r = rankOf(c.g, x0(c));
    const perm = (c.node.attrs['perm'] as number[] | undefined) ?? (r === undefined ? undefined : Array.from({ length: r }, (_, i) => r - 1 - i));
    if (!perm) throw new MorrisError('GRAPH_ERROR', `Transpose ${c.node.name}: rank unknown.`);
    const inv = new Array<number>(perm.length);
    perm.forEach((p, i) => (inv[p] = i));
    return [c.g.op('Transpose', [gy0(c)], { perm: inv })];
  },
  Reshape: (c) => [reshapeBack(c), undefined],
  Flatten: (c) => [reshapeBack(c)],
  Unsqueeze: (c) => [reshapeBack(c), undefined],
  Squeeze: (c) => [reshapeBack(c), undefined],
  Expand: (c) => {
    const shapeLen = c.g.tensor(c.node.inputs[1]!).shape?.[0];
    const r = outRank(c) ?? (typeof shapeLen === 'number' ? Math.max(rankOf(c.g, x0(c)) ?? 0, shapeLen) : undefined);
    return [unbroadcast(c.g, gy0(c), x0(c), r), undefined];
  },
  Cast: (c) => [c.g.op('Cast', [gy0(c)], { to: DTYPE_CODE_OF[dtypeOf(c.g, x0(c))]! })],

  Concat: (c) => {
    // Split the gradient back into the inputs' extents along the axis.
    const axis = intAttr(c.node, 'axis', 0);
    const sizes = c.node.inputs.map((x) => {
      const r = rankOf(c.g, x);
      if (r === undefined) throw new MorrisError('GRAPH_ERROR', `Concat ${c.node.name}: rank of ${x} unknown.`);
      const ax = normAxis(axis, r);
      return c.g.op('Shape', [x], { start: ax, end: ax + 1 });
    });
    const parts = c.g.opMulti('Split', [gy0(c), c.g.op('Concat', sizes, { axis: 0 })], c.node.inputs.length, { axis });
    return parts.map((p, i) => (c.need[i] ? p : undefined));
  },
  Split: (c) => {
    const axis = intAttr(c.node, 'axis', 0);
    const parts = c.node.outputs.map((o, i) => c.gy[i] ?? zerosLike(c.g, o));
    return [c.g.op('Concat', parts, { axis }), undefined];
  },
  Slice: (c) => [sliceGrad(c), undefined, undefined, undefined, undefined],

  Where: (c) => {
    const [cond, a, b] = c.node.inputs as [string, string, string];
    const r = outRank(c);
    const zero = scalarLike(c.g, 0, gy0(c));
    return [
      undefined,
      when(c.need[1], () => unbroadcast(c.g, c.g.op('Where', [cond, gy0(c), zero]), a, r)),
      when(c.need[2], () => unbroadcast(c.g, c.g.op('Where', [cond, zero, gy0(c)]), b, r)),
    ];
  },
  Gather: (c) => {
    // Embedding-style gather (axis 0): scatter-add the rows back.  data (V, …), idx (…)
    const [data, idx] = c.node.inputs as [string, string];
    if (intAttr(c.node, 'axis', 0) !== 0) throw new MorrisError('GRAPH_ERROR', `Gather ${c.node.name}: only axis 0 is differentiable.`);
    const rowShape = c.g.op('Shape', [data], { start: 1 });
    const flatShape = c.g.op('Concat', [c.g.ints([-1]), rowShape], { axis: 0 });
    const g2 = c.g.op('Reshape', [gy0(c), flatShape]); // (N, …row)
    const rowRank = (rankOf(c.g, data) ?? 2) - 1;
    const idxCol = c.g.op('Reshape', [idx, c.g.ints([-1, ...Array<number>(rowRank).fill(1)])]); // (N, 1, …)
    const idxFull = c.g.op('Expand', [idxCol, c.g.op('Shape', [g2])]); // (N, …row)
    return [c.g.op('ScatterElements', [zerosLike(c.g, data), idxFull, g2], { axis: 0, reduction: 'add' }), undefined];
  },
  GatherElements: (c) => {
    const [data, idx] = c.node.inputs as [string, string];
    const axis = intAttr(c.node, 'axis', 0);
    return [c.g.op('ScatterElements', [zerosLike(c.g, data), idx, gy0(c)], { axis, reduction: 'add' }), undefined];
  },
};

const DTYPE_CODE_OF: Record<string, number> = { float32: 1, float16: 10, bfloat16: 16, float64: 11 };

function reshapeBack(c: GradCtx): string {
  const out = c.g.op('Reshape', [gy0(c), c.g.op('Shape', [x0(c)])]);
  c.g.setInfo(out, dtypeOf(c.g, x0(c)), c.g.tensor(x0(c)).shape);
  return out;
}

/**
 * Slice (step 1) backward: pad the gradient with zeros back to the input's extent. The pads are
 * computed in the graph from the clamped starts/ends, so symbolic dims work; ORT folds them when
 * they are static.
 */
function sliceGrad(c: GradCtx): string {
  const g = c.g;
  const [data, starts, ends, axesIn, steps] = c.node.inputs as [string, string, string, string | undefined, string | undefined];
  const r = rankOf(g, data);
  if (r === undefined) throw new MorrisError('GRAPH_ERROR', `Slice ${c.node.name}: rank unknown.`);
  if (steps) {
    const st = g.constValue(steps);
    if (!st || st.some((s) => s !== 1)) throw new MorrisError('GRAPH_ERROR', `Slice ${c.node.name}: only step 1 is differentiable.`);
  }
  const nAxes = g.tensor(starts).shape?.[0];
  const axesConst = axesIn ? g.constValue(axesIn) : typeof nAxes === 'number' ? Array.from({ length: nAxes }, (_, i) => i) : undefined;
  if (!axesConst) throw new MorrisError('GRAPH_ERROR', `Slice ${c.node.name}: axes must be constant to differentiate.`);
  const axes = axesConst.map((a) => normAxis(a, r));
  const dims = g.op('Gather', [g.op('Shape', [data]), g.ints(axes)], { axis: 0 });
  const zero = g.ints([0], true);
  const clampIdx = (v: string) => {
    const wrapped = g.op('Where', [g.op('Less', [v, zero]), g.op('Add', [v, dims]), v]);
    return g.op('Max', [g.op('Min', [wrapped, dims]), zero]);
  };
  const s = clampIdx(starts);
  const e = g.op('Max', [clampIdx(ends), s]);
  const before = s;
  const after = g.op('Sub', [dims, e]);
  const zeros = g.ints(Array<number>(2 * r).fill(0));
  const padsA = g.op('ScatterElements', [zeros, g.ints(axes), before], { axis: 0 });
  const pads = g.op('ScatterElements', [padsA, g.ints(axes.map((a) => a + r)), after], { axis: 0 });
  const out = g.op('Pad', [gy0(c), pads], { mode: 'constant' });
  g.setInfo(out, dtypeOf(g, data), g.tensor(data).shape);
  return out;
}

export function gradientRule(op: string): GradRule | undefined {
  return GRADIENT_RULES[op];
}
