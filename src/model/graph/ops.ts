/**
 * THE op table: every ONNX op the project emits, with its input/output arity, attributes and a
 * best-effort type/shape rule. The graph builder validates each node against this table (an op or
 * attribute that is not here throws GRAPH_ERROR naming it) and uses `infer` to record dtype and
 * shape of outputs, which the autodiff reads. Shapes use numbers for known dims and strings for
 * symbolic ones; `undefined` shape means "not known at build time" (the graph is still valid).
 *
 * Opset 17 semantics (default domain): ReduceMean/ReduceMax take `axes` as an attribute,
 * ReduceSum/Squeeze/Unsqueeze/Split take it as an input.
 */
import { MorrisError } from '../../errors.ts';

export type DType = 'float32' | 'float16' | 'bfloat16' | 'float64' | 'int64' | 'int32' | 'int8' | 'uint8' | 'bool';
export type Dim = number | string;
export type Shape = readonly Dim[];

export interface TensorInfo {
  readonly name: string;
  dtype?: DType;
  shape?: Shape;
}

export type AttrType = 'int' | 'ints' | 'float' | 'floats' | 'string' | 'tensor';
export type AttrValue = number | readonly number[] | string | { tensor: import('./builder.ts').ConstTensor };
export type Attrs = Readonly<Record<string, AttrValue>>;

export interface InferCtx {
  /** Values of constant int64 tensors (initializers/Constant nodes), for Reshape/Unsqueeze/... */
  constInts(name: string): readonly number[] | undefined;
}

export interface OpSpec {
  readonly domain?: string;
  /** [min, max] number of inputs (max Infinity for variadic); optional inputs may be ''. */
  readonly inputs: readonly [number, number];
  readonly outputs?: readonly [number, number];
  readonly attrs?: Readonly<Record<string, { type: AttrType; required?: boolean }>>;
  /** dtype/shape of each output from inputs and attributes; fields left out stay unknown. */
  readonly infer?: (ins: readonly (TensorInfo | undefined)[], attrs: Attrs, ctx: InferCtx) => Array<Partial<TensorInfo>>;
}

type Out = Partial<TensorInfo>;

const same = (ins: readonly (TensorInfo | undefined)[]): Out[] => [{ dtype: ins[0]?.dtype, shape: ins[0]?.shape }];

/** Numpy broadcasting of known shapes; a symbolic dim against 1 wins, two different symbols stay the first. */
export function broadcastShapes(shapes: readonly (Shape | undefined)[]): Shape | undefined {
  if (shapes.some((s) => s === undefined)) return undefined;
  const rank = Math.max(...shapes.map((s) => s!.length));
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    let d: Dim = 1;
    for (const s of shapes) {
      const k = s!.length - rank + i;
      if (k < 0) continue;
      const e = s![k]!;
      if (e === 1) continue;
      if (d === 1) d = e;
      else if (typeof d === 'number' && typeof e === 'number' && d !== e) {
        throw new MorrisError('GRAPH_ERROR', `Shapes [${shapes.map((x) => x!.join(',')).join('] and [')}] do not broadcast.`);
      }
    }
    out.push(d);
  }
  return out;
}

const binary = (ins: readonly (TensorInfo | undefined)[]): Out[] => [
  { dtype: ins[0]?.dtype ?? ins[1]?.dtype, shape: broadcastShapes(ins.map((i) => i?.shape)) },
];
const compare = (ins: readonly (TensorInfo | undefined)[]): Out[] => [{ dtype: 'bool', shape: broadcastShapes(ins.map((i) => i?.shape)) }];

const normAxis = (a: number, rank: number): number => (a < 0 ? a + rank : a);

function reduce(shape: Shape | undefined, axes: readonly number[] | undefined, keep: boolean): Shape | undefined {
  if (!shape) return undefined;
  const ax = new Set((axes ?? shape.map((_, i) => i)).map((a) => normAxis(a, shape.length)));
  const out: Dim[] = [];
  shape.forEach((d, i) => {
    if (!ax.has(i)) out.push(d);
    else if (keep) out.push(1);
  });
  return out;
}

const unary = { inputs: [1, 1], infer: same } as const;
const bin = { inputs: [2, 2], infer: binary } as const;
const cmp = { inputs: [2, 2], infer: compare } as const;

const DTYPE_OF_ONNX: Record<number, DType> = { 1: 'float32', 10: 'float16', 16: 'bfloat16', 11: 'float64', 7: 'int64', 6: 'int32', 3: 'int8', 2: 'uint8', 9: 'bool' };

export const OPS: Readonly<Record<string, OpSpec>> = {
  Identity: unary,
  Neg: unary,
  Abs: unary,
  Sqrt: unary,
  Reciprocal: unary,
  Exp: unary,
  Log: unary,
  Sin: unary,
  Cos: unary,
  Tanh: unary,
  Erf: unary,
  Relu: unary,
  Sigmoid: unary,
  Softplus: unary,
  Not: unary,
  Softmax: { inputs: [1, 1], attrs: { axis: { type: 'int' } }, infer: same },
  LogSoftmax: { inputs: [1, 1], attrs: { axis: { type: 'int' } }, infer: same },
  Add: bin,
  Sub: bin,
  Mul: bin,
  Div: bin,
  Pow: { inputs: [2, 2], infer: (ins) => [{ dtype: ins[0]?.dtype, shape: broadcastShapes([ins[0]?.shape, ins[1]?.shape]) }] },
  Max: { inputs: [1, Infinity], infer: binary },
  Min: { inputs: [1, Infinity], infer: binary },
  Equal: cmp,
  Less: cmp,
  LessOrEqual: cmp,
  Greater: cmp,
  GreaterOrEqual: cmp,
  And: cmp,
  Or: cmp,
  Where: {
    inputs: [3, 3],
    infer: (ins) => [{ dtype: ins[1]?.dtype ?? ins[2]?.dtype, shape: broadcastShapes(ins.map((i) => i?.shape)) }],
  },
  Cast: {
    inputs: [1, 1],
    attrs: { to: { type: 'int', required: true } },
    infer: (ins, a) => [{ dtype: DTYPE_OF_ONNX[a['to'] as number], shape: ins[0]?.shape }],
  },
  MatMul: {
    inputs: [2, 2],
    infer: (ins) => {
      const [a, b] = [ins[0]?.shape, ins[1]?.shape];
      if (!a || !b || a.length < 2 || b.length < 2) return [{ dtype: ins[0]?.dtype }];
      const batch = broadcastShapes([a.slice(0, -2), b.slice(0, -2)]);
      return [{ dtype: ins[0]?.dtype, shape: [...batch!, a[a.length - 2]!, b[b.length - 1]!] }];
    },
  },
  Gemm: {
    inputs: [2, 3],
    attrs: { alpha: { type: 'float' }, beta: { type: 'float' }, transA: { type: 'int' }, transB: { type: 'int' } },
    infer: (ins, a) => {
      const [x, w] = [ins[0]?.shape, ins[1]?.shape];
      if (!x || !w) return [{ dtype: ins[0]?.dtype }];
      const m = a['transA'] ? x[1]! : x[0]!;
      const n = a['transB'] ? w[0]! : w[1]!;
      return [{ dtype: ins[0]?.dtype, shape: [m, n] }];
    },
  },
  Transpose: {
    inputs: [1, 1],
    attrs: { perm: { type: 'ints' } },
    infer: (ins, a) => {
      const s = ins[0]?.shape;
      const perm = (a['perm'] as number[] | undefined) ?? s?.map((_, i) => s.length - 1 - i);
      return [{ dtype: ins[0]?.dtype, shape: s && perm ? perm.map((p) => s[p]!) : undefined }];
    },
  },
  Reshape: {
    inputs: [2, 2],
    attrs: { allowzero: { type: 'int' } },
    infer: (ins, _a, ctx) => {
      const target = ins[1] ? ctx.constInts(ins[1].name) : undefined;
      const s = ins[0]?.shape;
      if (!target) return [{ dtype: ins[0]?.dtype }];
      const out: Dim[] = target.map((d, i) => (d === 0 ? (s?.[i] ?? `?`) : d));
      const minus = out.indexOf(-1);
      if (minus >= 0) {
        const total = s?.every((d) => typeof d === 'number') ? (s as number[]).reduce((x, y) => x * y, 1) : undefined;
        const rest = out.filter((_, i) => i !== minus);
        if (total !== undefined && rest.every((d) => typeof d === 'number')) {
          out[minus] = total / (rest as number[]).reduce((x, y) => x * y, 1);
        } else return [{ dtype: ins[0]?.dtype, shape: out.map((d, i) => (i === minus ? `reshape_${i}` : d)) }];
      }
      return [{ dtype: ins[0]?.dtype, shape: out.some((d) => d === '?') ? undefined : out }];
    },
  },
  Flatten: { inputs: [1, 1], attrs: { axis: { type: 'int' } }, infer: (ins) => [{ dtype: ins[0]?.dtype }] },
  Unsqueeze: {
    inputs: [2, 2],
    infer: (ins, _a, ctx) => {
      const s = ins[0]?.shape;
      const axes = ins[1] ? ctx.constInts(ins[1].name) : undefined;
      if (!s || !axes) return [{ dtype: ins[0]?.dtype }];
      const rank = s.length + axes.length;
      const ax = new Set(axes.map((x) => normAxis(x, rank)));
      const out: Dim[] = [];
      let k = 0;
      for (let i = 0; i < rank; i++) out.push(ax.has(i) ? 1 : s[k++]!);
      return [{ dtype: ins[0]?.dtype, shape: out }];
    },
  },
  Squeeze: {
    inputs: [1, 2],
    infer: (ins, _a, ctx) => {
      const s = ins[0]?.shape;
      const axes = ins[1] ? ctx.constInts(ins[1].name) : undefined;
      if (!s || !axes) return [{ dtype: ins[0]?.dtype }];
      const ax = new Set(axes.map((x) => normAxis(x, s.length)));
      return [{ dtype: ins[0]?.dtype, shape: s.filter((_, i) => !ax.has(i)) }];
    },
  },
  Concat: {
    inputs: [1, Infinity],
    attrs: { axis: { type: 'int', required: true } },
    infer: (ins, a) => {
      const shapes = ins.map((i) => i?.shape);
      if (shapes.some((s) => !s)) return [{ dtype: ins[0]?.dtype }];
      const axis = normAxis(a['axis'] as number, shapes[0]!.length);
      const dims = shapes.map((s) => s![axis]!);
      const total = dims.every((d) => typeof d === 'number') ? (dims as number[]).reduce((x, y) => x + y, 0) : dims.join('+');
      return [{ dtype: ins[0]?.dtype, shape: shapes[0]!.map((d, i) => (i === axis ? total : d)) }];
    },
  },
  Split: {
    inputs: [1, 2],
    outputs: [1, Infinity],
    attrs: { axis: { type: 'int' } },
    infer: (ins) => [{ dtype: ins[0]?.dtype }],
  },
  Slice: { inputs: [3, 5], infer: (ins) => [{ dtype: ins[0]?.dtype }] },
  Pad: { inputs: [2, 4], attrs: { mode: { type: 'string' } }, infer: (ins) => [{ dtype: ins[0]?.dtype }] },
  Gather: {
    inputs: [2, 2],
    attrs: { axis: { type: 'int' } },
    infer: (ins, a) => {
      const [d, i] = [ins[0]?.shape, ins[1]?.shape];
      if (!d || !i) return [{ dtype: ins[0]?.dtype }];
      const axis = normAxis((a['axis'] as number | undefined) ?? 0, d.length);
      return [{ dtype: ins[0]?.dtype, shape: [...d.slice(0, axis), ...i, ...d.slice(axis + 1)] }];
    },
  },
  GatherElements: { inputs: [2, 2], attrs: { axis: { type: 'int' } }, infer: (ins) => [{ dtype: ins[0]?.dtype, shape: ins[1]?.shape }] },
  ScatterElements: {
    inputs: [3, 3],
    attrs: { axis: { type: 'int' }, reduction: { type: 'string' } },
    infer: same,
  },
  Expand: { inputs: [2, 2], infer: (ins) => [{ dtype: ins[0]?.dtype }] },
  Tile: { inputs: [2, 2], infer: (ins) => [{ dtype: ins[0]?.dtype }] },
  Trilu: { inputs: [1, 2], attrs: { upper: { type: 'int' } }, infer: same },
  CumSum: { inputs: [2, 2], attrs: { exclusive: { type: 'int' }, reverse: { type: 'int' } }, infer: same },
  Shape: {
    inputs: [1, 1],
    attrs: { start: { type: 'int' }, end: { type: 'int' } },
    infer: (ins, a) => {
      const s = ins[0]?.shape;
      if (!s || a['start'] !== undefined || a['end'] !== undefined) return [{ dtype: 'int64' }];
      return [{ dtype: 'int64', shape: [s.length] }];
    },
  },
  Range: { inputs: [3, 3], infer: (ins) => [{ dtype: ins[0]?.dtype }] },
  ConstantOfShape: { inputs: [1, 1], attrs: { value: { type: 'tensor' } }, infer: () => [{}] },
  ReduceMean: { inputs: [1, 1], attrs: { axes: { type: 'ints' }, keepdims: { type: 'int' } }, infer: (ins, a) => [{ dtype: ins[0]?.dtype, shape: reduce(ins[0]?.shape, a['axes'] as number[] | undefined, a['keepdims'] !== 0) }] },
  ReduceMax: { inputs: [1, 1], attrs: { axes: { type: 'ints' }, keepdims: { type: 'int' } }, infer: (ins, a) => [{ dtype: ins[0]?.dtype, shape: reduce(ins[0]?.shape, a['axes'] as number[] | undefined, a['keepdims'] !== 0) }] },
  ReduceSum: {
    inputs: [1, 2],
    attrs: { keepdims: { type: 'int' }, noop_with_empty_axes: { type: 'int' } },
    infer: (ins, a, ctx) => {
      const axes = ins[1] ? ctx.constInts(ins[1].name) : undefined;
      if (ins[1] && !axes) return [{ dtype: ins[0]?.dtype }];
      return [{ dtype: ins[0]?.dtype, shape: reduce(ins[0]?.shape, axes, a['keepdims'] !== 0) }];
    },
  },
  Dropout: { inputs: [1, 3], outputs: [1, 2], attrs: { seed: { type: 'int' } }, infer: same },
  /**
   * Rotary position embedding, rotate_half convention when interleaved = 0: input
   * [B, S, heads·hd] (with num_heads) or [B, heads, S, hd]; cos/sin caches [maxPos, hd/2].
   */
  RotaryEmbedding: {
    domain: 'com.microsoft',
    inputs: [4, 4],
    attrs: { interleaved: { type: 'int' }, num_heads: { type: 'int' }, rotary_embedding_dim: { type: 'int' }, scale: { type: 'float' } },
    infer: same,
  },
  /** Weight-only quantized MatMul: A[..., K] × dequant(B)[K, N] (B stored [N, K/block, block·bits/8]). */
  MatMulNBits: {
    domain: 'com.microsoft',
    inputs: [3, 6],
    attrs: {
      K: { type: 'int', required: true },
      N: { type: 'int', required: true },
      bits: { type: 'int', required: true },
      block_size: { type: 'int', required: true },
      accuracy_level: { type: 'int' },
    },
    infer: (ins, a) => {
      const s = ins[0]?.shape;
      return [{ dtype: ins[0]?.dtype, shape: s ? [...s.slice(0, -1), a['N'] as number] : undefined }];
    },
  },
};

export function opSpec(opType: string): OpSpec {
  const spec = OPS[opType];
  if (!spec) throw new MorrisError('GRAPH_ERROR', `Op ${opType} is not in the op table (src/model/graph/ops.ts).`);
  return spec;
}
