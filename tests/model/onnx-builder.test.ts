import { describe, expect, it } from 'vitest';
import { MorrisError } from '../../src/errors.ts';
import { GraphBuilder, onnx } from '../../src/model/graph/builder.ts';
import { OPS } from '../../src/model/graph/ops.ts';
import { createSession, float32Tensor } from '../../src/model/inference/runtime.ts';

function code(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return e instanceof MorrisError ? `${e.code}: ${e.message}` : `other: ${String(e)}`;
  }
  return undefined;
}

describe('GraphBuilder', () => {
  it('validates nodes against the one op table', () => {
    const g = new GraphBuilder();
    const x = g.input('x', 'float32', ['batch_size', 4]);
    expect(code(() => g.op('NoSuchOp', [x]))).toMatch(/GRAPH_ERROR: Op NoSuchOp is not in the op table/);
    expect(code(() => g.op('Add', [x]))).toMatch(/GRAPH_ERROR: Add takes 2..2 inputs/);
    expect(code(() => g.op('Cast', [x]))).toMatch(/needs attribute to/);
    expect(code(() => g.op('Softmax', [x], { dim: 1 }))).toMatch(/has no attribute dim/);
    expect(code(() => g.op('Softmax', [x], { axis: 1.5 }))).toMatch(/must be int/);
    expect(code(() => g.op('Relu', ['missing']))).toMatch(/unknown input tensor missing/);
    expect(code(() => g.input('x', 'float32', [1]))).toMatch(/defined twice/);
  });

  it('infers dtypes and shapes, including symbolic dims, and tracks producers/consumers', () => {
    const g = new GraphBuilder();
    const x = g.input('x', 'float32', ['batch_size', 'seq', 8]);
    const w = g.constant(new Float32Array(8 * 6), 'float32', [6, 8]);
    const flat = g.op('Reshape', [x, g.ints([-1, 8])]);
    const y = g.op('Gemm', [flat, w], { transB: 1 });
    expect(g.tensor(y)).toMatchObject({ dtype: 'float32', shape: ['reshape_0', 6] });
    const m = g.op('ReduceMean', [x], { axes: [-1], keepdims: 1 });
    expect(g.tensor(m).shape).toEqual(['batch_size', 'seq', 1]);
    const t = g.op('Transpose', [x], { perm: [0, 2, 1] });
    expect(g.tensor(t).shape).toEqual(['batch_size', 8, 'seq']);
    const b = g.op('Less', [x, g.scalar(0)]);
    expect(g.tensor(b)).toMatchObject({ dtype: 'bool', shape: ['batch_size', 'seq', 8] });
    expect(g.tensor(g.op('Cast', [b], { to: 1 })).dtype).toBe('float32');
    expect(g.tensor(g.op('Unsqueeze', [x, g.ints([1])])).shape).toEqual(['batch_size', 1, 'seq', 8]);
    expect(g.tensor(g.op('MatMul', [x, g.constant(new Float32Array(8 * 3), 'float32', [8, 3])])).shape).toEqual(['batch_size', 'seq', 3]);
    expect(g.producer(y)!.opType).toBe('Gemm');
    expect(g.consumers(x).map((n) => n.opType)).toEqual(['Reshape', 'ReduceMean', 'Transpose', 'Less', 'Unsqueeze', 'MatMul']);
    expect(code(() => g.op('Add', [g.constant(new Float32Array(3), 'float32', [3]), g.constant(new Float32Array(4), 'float32', [4])]))).toMatch(/do not broadcast/);
  });

  it('serializes external initializers and runs in ONNX Runtime; output() renames without a copy', async () => {
    const g = new GraphBuilder();
    const x = g.input('x', 'float32', ['batch_size', 2]);
    g.externalInitializer('w', 'float32', [2, 2], { location: 'weights.bin', offset: 16, length: 16 });
    const y = g.op('Mul', [x, g.scalar(3)]);
    g.output(y, 'y');
    expect(g.nodes.map((n) => n.opType)).toEqual(['Mul']);
    const proto = onnx.ModelProto.decode(g.serialize());
    const w = proto.graph!.initializer!.find((t) => t.name === 'w')!;
    expect(w.dataLocation).toBe(onnx.TensorProto.DataLocation.EXTERNAL);
    expect(Object.fromEntries(w.externalData!.map((e) => [e.key, e.value]))).toEqual({ location: 'weights.bin', offset: '16', length: '16' });
    expect(proto.graph!.input![0]!.type!.tensorType!.shape!.dim![0]!.dimParam).toBe('batch_size');

    const g2 = new GraphBuilder();
    const a = g2.input('a', 'float32', [2]);
    g2.output(g2.op('Sqrt', [a]), 'root');
    g2.output(a, 'copy'); // an input cannot be renamed: Identity
    const { session } = await createSession(g2.serialize());
    const out = await session.run({ a: float32Tensor(Float32Array.of(4, 9), [2]) });
    expect(Array.from(out['root']!.data as Float32Array)).toEqual([2, 3]);
    expect(Array.from(out['copy']!.data as Float32Array)).toEqual([4, 9]);
  });

  it('every op in the table names a real ONNX op that ONNX Runtime accepts', async () => {
    // a one-node model per unary/binary float op proves the spelling and domain
    const unary = Object.keys(OPS).filter((k) => OPS[k]!.inputs[0] === 1 && OPS[k]!.inputs[1] === 1 && !OPS[k]!.attrs && !['Not', 'Shape'].includes(k));
    for (const op of unary) {
      const g = new GraphBuilder();
      g.output(g.op(op, [g.input('x', 'float32', [2])]), 'y');
      const { session } = await createSession(g.serialize());
      await session.run({ x: float32Tensor(Float32Array.of(0.5, 0.25), [2]) });
      await session.release();
    }
    expect(unary.length).toBeGreaterThan(10);
  });
});
