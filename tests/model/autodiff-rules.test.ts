/**
 * Every entry of the gradient-rule table checked against central finite differences, through real
 * ONNX Runtime sessions: for each op, a tiny graph y = op(x…), loss = Σ y ⊙ R (fixed random R),
 * the autodiff's d loss / d x versus (loss(x + ε) − loss(x − ε)) / 2ε, in float64.
 */
import { describe, expect, it } from 'vitest';
import { GraphBuilder, type DType } from '../../src/model/graph/builder.ts';
import { addGradients } from '../../src/model/autodiff/gradients.ts';
import { GRADIENT_RULES } from '../../src/model/autodiff/rules.ts';
import { createSession, Tensor, type OrtTensor } from '../../src/model/inference/runtime.ts';
import { MorrisError } from '../../src/errors.ts';
import { Rng } from '../../src/model/train/rng.ts';

type Build = (g: GraphBuilder, x: string[]) => string;

interface Case {
  op: string;
  /** Float inputs: shape and, optionally, a value generator (default N(0,1)). */
  inputs: { shape: number[]; gen?: (rng: Rng, i: number) => number; frozen?: boolean }[];
  build: Build;
  dtype?: DType;
}

const pos = (rng: Rng) => 0.5 + rng.next() * 1.5;

const CASES: Case[] = [
  // Composite with its own gradient (src/model/autodiff/composites.ts), x and the weight both trainable.
  {
    op: 'RMSNorm',
    inputs: [{ shape: [3, 5] }, { shape: [5] }],
    build: (g, [x, w]) => {
      const f = (v: number) => g.scalar(v, 'float64');
      const mean = g.op('ReduceMean', [g.op('Pow', [x!, f(2)])], { axes: [-1], keepdims: 1 });
      return g.op('Mul', [g.op('Div', [x!, g.op('Sqrt', [g.op('Add', [mean, f(1e-5)])])]), w!]);
    },
  },
  { op: 'Identity', inputs: [{ shape: [3, 2] }], build: (g, [a]) => g.op('Identity', [a!]) },
  { op: 'Neg', inputs: [{ shape: [3, 2] }], build: (g, [a]) => g.op('Neg', [a!]) },
  { op: 'Add', inputs: [{ shape: [2, 3, 4] }, { shape: [1, 4] }], build: (g, [a, b]) => g.op('Add', [a!, b!]) },
  { op: 'Sub', inputs: [{ shape: [2, 1, 4] }, { shape: [2, 3, 4] }], build: (g, [a, b]) => g.op('Sub', [a!, b!]) },
  { op: 'Mul', inputs: [{ shape: [2, 3, 4] }, { shape: [4] }], build: (g, [a, b]) => g.op('Mul', [a!, b!]) },
  { op: 'Div', inputs: [{ shape: [2, 3] }, { shape: [2, 1], gen: pos }], build: (g, [a, b]) => g.op('Div', [a!, b!]) },
  { op: 'Pow', inputs: [{ shape: [2, 3], gen: pos }, { shape: [1], gen: (r) => 1 + r.next() }], build: (g, [a, b]) => g.op('Pow', [a!, b!]) },
  { op: 'Pow', inputs: [{ shape: [2, 3] }], build: (g, [a]) => g.op('Pow', [a!, g.scalar(2, 'float64')]) }, // constant exponent 2
  { op: 'Pow', inputs: [{ shape: [2, 3], gen: pos }], build: (g, [a]) => g.op('Pow', [a!, g.scalar(-1.5, 'float64')]) },
  { op: 'Sqrt', inputs: [{ shape: [2, 3], gen: pos }], build: (g, [a]) => g.op('Sqrt', [a!]) },
  { op: 'Reciprocal', inputs: [{ shape: [2, 3], gen: pos }], build: (g, [a]) => g.op('Reciprocal', [a!]) },
  { op: 'Exp', inputs: [{ shape: [2, 3] }], build: (g, [a]) => g.op('Exp', [a!]) },
  { op: 'Log', inputs: [{ shape: [2, 3], gen: pos }], build: (g, [a]) => g.op('Log', [a!]) },
  { op: 'Sigmoid', inputs: [{ shape: [2, 3] }], build: (g, [a]) => g.op('Sigmoid', [a!]) },
  // float32: ONNX Runtime's CPU Softplus has no float64 kernel; large |x| checks the stable tails.
  { op: 'Softplus', dtype: 'float32', inputs: [{ shape: [2, 3], gen: (r, i) => (i % 3 === 2 ? 12 : 1) * (2 * r.next() - 1) }], build: (g, [a]) => g.op('Softplus', [a!]) },
  { op: 'Tanh', inputs: [{ shape: [2, 3] }], build: (g, [a]) => g.op('Tanh', [a!]) },
  { op: 'Relu', inputs: [{ shape: [2, 3], gen: (r) => (r.next() < 0.5 ? -1 : 1) * (0.1 + r.next()) }], build: (g, [a]) => g.op('Relu', [a!]) },
  { op: 'Erf', dtype: 'float32', inputs: [{ shape: [2, 3] }], build: (g, [a]) => g.op('Erf', [a!]) },
  { op: 'Sin', inputs: [{ shape: [2, 3] }], build: (g, [a]) => g.op('Sin', [a!]) },
  { op: 'Cos', inputs: [{ shape: [2, 3] }], build: (g, [a]) => g.op('Cos', [a!]) },
  { op: 'Softmax', inputs: [{ shape: [2, 5] }], build: (g, [a]) => g.op('Softmax', [a!], { axis: -1 }) },
  { op: 'LogSoftmax', inputs: [{ shape: [3, 4] }], build: (g, [a]) => g.op('LogSoftmax', [a!], { axis: 1 }) },
  { op: 'ReduceSum', inputs: [{ shape: [2, 3, 4] }], build: (g, [a]) => g.op('ReduceSum', [a!, g.ints([1])], { keepdims: 0 }) },
  { op: 'ReduceMean', inputs: [{ shape: [2, 3, 4] }], build: (g, [a]) => g.op('ReduceMean', [a!], { axes: [-1], keepdims: 1 }) },
  { op: 'MatMul', inputs: [{ shape: [2, 3, 4] }, { shape: [4, 5] }], build: (g, [a, b]) => g.op('MatMul', [a!, b!]) },
  { op: 'MatMul', inputs: [{ shape: [2, 2, 3, 4] }, { shape: [2, 1, 4, 3] }], build: (g, [a, b]) => g.op('MatMul', [a!, b!]) },
  { op: 'Gemm', inputs: [{ shape: [3, 4] }, { shape: [5, 4] }, { shape: [5] }], build: (g, [a, b, c]) => g.op('Gemm', [a!, b!, c!], { transB: 1, alpha: 0.7, beta: 1.3 }) },
  { op: 'Gemm', inputs: [{ shape: [4, 3] }, { shape: [4, 5] }], build: (g, [a, b]) => g.op('Gemm', [a!, b!], { transA: 1 }) },
  { op: 'Gemm', inputs: [{ shape: [4, 3] }, { shape: [5, 4] }], build: (g, [a, b]) => g.op('Gemm', [a!, b!], { transA: 1, transB: 1 }) },
  // A constant (frozen-weight) B takes the transposed route that keeps ORT from pre-packing it twice.
  {
    op: 'Gemm',
    inputs: [{ shape: [3, 4] }],
    build: (g, [a]) => g.op('Gemm', [a!, g.constant(Float64Array.from({ length: 20 }, (_, i) => Math.sin(i + 1)), 'float64', [5, 4])], { transB: 1, alpha: 1.5 }),
  },
  { op: 'Transpose', inputs: [{ shape: [2, 3, 4] }], build: (g, [a]) => g.op('Transpose', [a!], { perm: [1, 2, 0] }) },
  { op: 'Reshape', inputs: [{ shape: [2, 3, 4] }], build: (g, [a]) => g.op('Reshape', [a!, g.ints([6, 4])]) },
  { op: 'Flatten', inputs: [{ shape: [2, 3, 4] }], build: (g, [a]) => g.op('Flatten', [a!], { axis: 1 }) },
  { op: 'Unsqueeze', inputs: [{ shape: [2, 3] }], build: (g, [a]) => g.op('Unsqueeze', [a!, g.ints([1])]) },
  { op: 'Squeeze', inputs: [{ shape: [2, 1, 3] }], build: (g, [a]) => g.op('Squeeze', [a!, g.ints([1])]) },
  { op: 'Expand', inputs: [{ shape: [2, 1, 3] }], build: (g, [a]) => g.op('Expand', [a!, g.ints([4, 2, 5, 3])]) },
  // float32 → float64 → float32: exercises the rule in both directions.
  { op: 'Cast', dtype: 'float32', inputs: [{ shape: [2, 3] }], build: (g, [a]) => g.op('Cast', [g.op('Cast', [a!], { to: 11 })], { to: 1 }) },
  { op: 'Concat', inputs: [{ shape: [2, 3] }, { shape: [2, 2] }], build: (g, [a, b]) => g.op('Concat', [a!, b!], { axis: -1 }) },
  {
    op: 'Split',
    inputs: [{ shape: [2, 5] }],
    // only the second part reaches the loss: the first part's gradient is filled with zeros
    build: (g, [a]) => g.opMulti('Split', [a!, g.ints([2, 3])], 2, { axis: 1 })[1]!,
  },
  { op: 'Slice', inputs: [{ shape: [3, 6] }], build: (g, [a]) => g.op('Slice', [a!, g.ints([1, -4]), g.ints([99, -1]), g.ints([0, 1])]) },
  {
    op: 'Where',
    inputs: [{ shape: [2, 3] }, { shape: [3] }],
    build: (g, [a, b]) => g.op('Where', [g.constant([1, 0, 1, 0, 0, 1], 'bool', [2, 3]), a!, b!]),
  },
  { op: 'Gather', inputs: [{ shape: [5, 3] }], build: (g, [a]) => g.op('Gather', [a!, g.constant([4, 0, 4, 2], 'int64', [2, 2])], { axis: 0 }) },
  {
    op: 'GatherElements',
    inputs: [{ shape: [3, 4] }],
    build: (g, [a]) => g.op('GatherElements', [a!, g.constant([0, 3, 3, 1, 2, 2], 'int64', [3, 2])], { axis: 1 }),
  },
];

function values(n: number, rng: Rng, gen?: (r: Rng, i: number) => number): number[] {
  return Array.from({ length: n }, (_, i) => (gen ? gen(rng, i) : rng.normal()));
}

function typed(dtype: DType, v: ArrayLike<number>): Float32Array | Float64Array {
  return dtype === 'float64' ? Float64Array.from(v) : Float32Array.from(v);
}

async function checkCase(c: Case, seed: number): Promise<number> {
  const dtype = c.dtype ?? 'float64';
  const rng = new Rng(seed);
  const xs = c.inputs.map((inp) => values(inp.shape.reduce((a, b) => a * b, 1), rng, inp.gen));

  // First pass: the output's shape, for a fixed random weighting R.
  const build = (r?: number[], rShape?: number[]) => {
    const g = new GraphBuilder({ name: `grad_${c.op}` });
    const names = c.inputs.map((inp, i) => g.input(`x${i}`, dtype, inp.shape));
    const y = c.build(g, names);
    if (!g.tensor(y).dtype) g.setInfo(y, dtype);
    if (!r) {
      g.output(y, 'y');
      return { g, names };
    }
    // The probe run told us y's shape; record it where the op table's inference cannot.
    if (!g.tensor(y).shape) g.setInfo(y, undefined, rShape);
    const rc = g.constant(typed(dtype, r), dtype, rShape!);
    const loss = g.op('ReduceSum', [g.op('Mul', [y, rc])], { keepdims: 0 });
    g.output(loss, 'loss');
    const trainable = names.filter((_, i) => !c.inputs[i]!.frozen);
    const grads = addGradients(g, 'loss', trainable);
    trainable.forEach((t) => g.output(grads.get(t)!, `grad_${t}`));
    return { g, names };
  };
  const feeds = (vals: number[][]): Record<string, OrtTensor> =>
    Object.fromEntries(vals.map((v, i) => [`x${i}`, new Tensor(dtype as 'float32', typed(dtype, v) as Float32Array, c.inputs[i]!.shape)]));

  const probe = build();
  const { session: s0 } = await createSession(probe.g.serialize(), { device: 'cpu' });
  const yT = (await s0.run(feeds(xs)))['y']!;
  const rShape = [...yT.dims];
  const r = values(yT.data.length, rng);

  const full = build(r, rShape);
  const { session } = await createSession(full.g.serialize(), { device: 'cpu' });
  const out = await session.run(feeds(xs));
  const lossAt = async (vals: number[][]) => Number((await session.run(feeds(vals)))['loss']!.data[0]);
  const eps = dtype === 'float64' ? 1e-6 : 1e-2;
  let worst = 0;
  for (let i = 0; i < c.inputs.length; i++) {
    if (c.inputs[i]!.frozen) continue;
    const analytic = out[`grad_x${i}`]!.data as Float64Array;
    expect(analytic.length).toBe(xs[i]!.length);
    const scale = Math.max(1e-3, ...Array.from(analytic, Math.abs));
    for (let k = 0; k < xs[i]!.length; k++) {
      const plus = xs.map((v) => v.slice());
      const minus = xs.map((v) => v.slice());
      plus[i]![k]! += eps;
      minus[i]![k]! -= eps;
      const numeric = ((await lossAt(plus)) - (await lossAt(minus))) / (2 * eps);
      worst = Math.max(worst, Math.abs(numeric - analytic[k]!) / scale);
    }
  }
  return worst;
}

describe('gradient rules', () => {
  it('has a finite-difference case for every rule in the table and every composite', () => {
    const covered = new Set(CASES.map((c) => c.op));
    expect([...Object.keys(GRADIENT_RULES), 'RMSNorm'].filter((op) => !covered.has(op))).toEqual([]);
  });

  it('differentiates RMSNorm as one composite: no local rules run inside it', () => {
    const g = new GraphBuilder();
    const x = g.input('x', 'float32', [4, 8]);
    const mean = g.op('ReduceMean', [g.op('Pow', [x, g.scalar(2)])], { axes: [-1], keepdims: 1 });
    const y = g.op('Mul', [g.op('Div', [x, g.op('Sqrt', [g.op('Add', [mean, g.scalar(1e-6)])])]), g.constant(new Float32Array(8).fill(1.5), 'float32', [8])]);
    const before = g.nodes.length;
    addGradients(g, g.op('ReduceSum', [y], { keepdims: 0 }), [x]);
    const ops = g.nodes.slice(before + 1).map((n) => n.opType);
    expect(ops).not.toContain('Pow');
    expect(ops).not.toContain('Div');
  });

  it('every rule matches central finite differences', async () => {
    const report: string[] = [];
    for (const [k, c] of CASES.entries()) {
      let worst: number;
      try {
        worst = await checkCase(c, 100 + k);
      } catch (e) {
        report.push(`${c.op}#${k}: ${(e as Error).message}`);
        continue;
      }
      const tol = (c.dtype ?? 'float64') === 'float64' ? 1e-6 : 2e-3;
      if (!(worst <= tol)) report.push(`${c.op}#${k}: ${worst.toExponential(2)}`);
    }
    expect(report).toEqual([]);
  });

  it('names the op that has no rule', () => {
    const g = new GraphBuilder();
    const x = g.input('x', 'float32', [2, 2]);
    const y = g.op('Abs', [x]);
    const loss = g.op('ReduceSum', [y], { keepdims: 0 });
    let err: unknown;
    try {
      addGradients(g, loss, [x]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MorrisError);
    expect((err as MorrisError).code).toBe('NO_GRADIENT_RULE');
    expect((err as MorrisError).message).toMatch(/Abs/);
  });

  it('emits nothing for frozen branches', () => {
    const g = new GraphBuilder();
    const x = g.input('x', 'float32', [2, 3]);
    const w = g.input('w', 'float32', [3, 3]);
    const frozen = g.input('frozen', 'float32', [3, 3]);
    // An op without a rule on the frozen side must not matter: no gradient flows there.
    const side = g.op('Abs', [g.op('MatMul', [x, frozen])]);
    const y = g.op('Add', [g.op('MatMul', [x, w]), side]);
    const loss = g.op('ReduceSum', [y], { keepdims: 0 });
    const before = g.nodes.length;
    const grads = addGradients(g, loss, [w]);
    expect(grads.has('w')).toBe(true);
    const added = g.nodes.slice(before);
    expect(added.some((n) => n.inputs.includes(frozen))).toBe(false);
  });
});
