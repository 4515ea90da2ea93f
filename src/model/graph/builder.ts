/**
 * GraphBuilder: builds an ONNX graph node by node over the ONNX protobuf (onnx-proto), validating
 * every node against the one op table (./ops.ts) and recording dtype/shape of each tensor.
 *
 * API (used by the Llama decoder and by the training graph / autodiff):
 *   const g = new GraphBuilder({ name: 'decoder' });
 *   const ids = g.input('input_ids', 'int64', ['batch_size', 'sequence_length']);
 *   const w = g.externalInitializer('w', 'float32', [4, 8], { location: 'model.safetensors', offset, length });
 *   const y = g.op('Gemm', [x, w], { transB: 1 });           // first output's name
 *   const [a, b] = g.opMulti('Split', [x, sizes], 2, { axis: 1 }); // several outputs
 *   const c = g.constant(new Float32Array([1]), 'float32', []);   // small inline initializer
 *   g.output(y, 'logits');   // marks as graph output; renames y (or adds an Identity for inputs/initializers)
 *   g.tensor(y)  -> { name, dtype?, shape? }  g.producer(y) -> NodeInfo | undefined  g.consumers(y) -> NodeInfo[]
 *   g.nodes / g.inputs / g.outputs / g.initializers are readable; g.removeOutput(name) drops an output;
 *   g.setInfo(name, dtype, shape) overrides inferred info; g.constValue(name) reads int64 constants.
 *   g.toModelProto() / g.serialize() -> Uint8Array (opset 17 + com.microsoft 1, IR 8)
 * Tensor names are unique; auto names are `<opType>_<n>`. Shapes: numbers for fixed dims, strings
 * for symbolic ones (e.g. 'batch_size'); unknown shapes are left undefined.
 */
import onnxPkg from 'onnx-proto';
import { MorrisError } from '../../errors.ts';
import { opSpec, type AttrType, type AttrValue, type Attrs, type DType, type Shape, type TensorInfo } from './ops.ts';

const { onnx } = onnxPkg;
export { onnx };
export type { DType, Dim, Shape, TensorInfo, Attrs } from './ops.ts';

export const DTYPE_CODE: Readonly<Record<DType, number>> = {
  float32: 1, uint8: 2, int8: 3, int32: 6, int64: 7, bool: 9, float16: 10, float64: 11, bfloat16: 16,
};

export interface ConstTensor {
  dtype: DType;
  shape: readonly number[];
  data: Float32Array | BigInt64Array | Int32Array | Uint8Array | Int8Array | Float64Array | Uint16Array;
}

export interface ExternalData {
  /** Path relative to the folder of the .onnx file (ORT rejects `..`, absolute paths and symlinks). */
  location: string;
  offset: number;
  length: number;
}

export interface NodeInfo {
  readonly opType: string;
  readonly name: string;
  readonly domain: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly attrs: Attrs;
}

export interface InitializerInfo {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly external?: ExternalData;
  readonly data?: ConstTensor['data'];
}

export class GraphBuilder {
  readonly name: string;
  readonly opset: number;
  private readonly info = new Map<string, TensorInfo>();
  private readonly producers = new Map<string, NodeInfo>();
  private readonly consumerMap = new Map<string, NodeInfo[]>();
  private readonly constInts = new Map<string, readonly number[]>();
  private readonly _nodes: NodeInfo[] = [];
  private readonly _inputs: string[] = [];
  private readonly _outputs: string[] = [];
  private readonly _inits = new Map<string, InitializerInfo>();
  private counter = 0;

  constructor(opts: { name?: string; opset?: number } = {}) {
    this.name = opts.name ?? 'graph';
    this.opset = opts.opset ?? 17;
  }

  get nodes(): readonly NodeInfo[] { return this._nodes; }
  get inputs(): readonly string[] { return this._inputs; }
  get outputs(): readonly string[] { return this._outputs; }
  get initializers(): ReadonlyMap<string, InitializerInfo> { return this._inits; }

  /** A fresh tensor name with the given prefix. */
  fresh(prefix: string): string {
    let n: string;
    do n = `${prefix}_${this.counter++}`;
    while (this.info.has(n));
    return n;
  }

  has(name: string): boolean { return this.info.has(name); }

  tensor(name: string): TensorInfo {
    const t = this.info.get(name);
    if (!t) throw new MorrisError('GRAPH_ERROR', `Unknown tensor ${name}.`);
    return t;
  }

  producer(name: string): NodeInfo | undefined { return this.producers.get(name); }
  consumers(name: string): readonly NodeInfo[] { return this.consumerMap.get(name) ?? []; }
  /** Values of a constant int64 tensor, when known at build time. */
  constValue(name: string): readonly number[] | undefined { return this.constInts.get(name); }

  private declare(name: string, dtype?: DType, shape?: Shape): string {
    if (this.info.has(name)) throw new MorrisError('GRAPH_ERROR', `Tensor ${name} is defined twice.`);
    this.info.set(name, { name, dtype, shape });
    return name;
  }

  input(name: string, dtype: DType, shape: Shape): string {
    this._inputs.push(name);
    return this.declare(name, dtype, shape);
  }

  /**
   * Marks `tensor` as a graph output. With `as`, the tensor is renamed when a node produces it and
   * it is not an output yet (no extra op: an Identity feeding a graph output is a real copy at
   * run time); otherwise an Identity gives the second name.
   */
  output(tensor: string, as?: string): string {
    let name = tensor;
    if (as !== undefined && as !== tensor) {
      if (this.producers.has(tensor) && !this._outputs.includes(tensor)) name = this.rename(tensor, as);
      else name = this.op('Identity', [tensor], {}, { outputs: [as] });
    }
    this.tensor(name);
    if (!this._outputs.includes(name)) this._outputs.push(name);
    return name;
  }

  /** Renames a node-produced tensor everywhere it is used; returns the new name. */
  rename(from: string, to: string): string {
    const producer = this.producers.get(from);
    if (!producer) throw new MorrisError('GRAPH_ERROR', `Only node outputs can be renamed (${from}).`);
    if (this.info.has(to)) throw new MorrisError('GRAPH_ERROR', `Tensor ${to} is defined twice.`);
    const t = this.info.get(from)!;
    this.info.delete(from);
    this.info.set(to, { name: to, dtype: t.dtype, shape: t.shape });
    const swap = (names: readonly string[]) => names.map((n) => (n === from ? to : n));
    const replaceNode = (n: NodeInfo): NodeInfo => ({ ...n, inputs: swap(n.inputs), outputs: swap(n.outputs) });
    const fresh = new Map<NodeInfo, NodeInfo>();
    for (const n of [producer, ...(this.consumerMap.get(from) ?? [])]) if (!fresh.has(n)) fresh.set(n, replaceNode(n));
    for (let i = 0; i < this._nodes.length; i++) {
      const r = fresh.get(this._nodes[i]!);
      if (r) this._nodes[i] = r;
    }
    for (const [k, v] of this.producers) if (fresh.has(v)) this.producers.set(k, fresh.get(v)!);
    this.producers.delete(from);
    this.producers.set(to, fresh.get(producer)!);
    for (const [k, list] of this.consumerMap) this.consumerMap.set(k, list.map((n) => fresh.get(n) ?? n));
    const consumers = this.consumerMap.get(from);
    this.consumerMap.delete(from);
    if (consumers) this.consumerMap.set(to, consumers);
    return to;
  }

  removeOutput(name: string): void {
    const i = this._outputs.indexOf(name);
    if (i >= 0) this._outputs.splice(i, 1);
  }

  /** An initializer whose bytes stay in another file (e.g. a safetensors file). */
  externalInitializer(name: string, dtype: DType, shape: readonly number[], external: ExternalData): string {
    this._inits.set(name, { name, dtype, shape, external });
    return this.declare(name, dtype, shape);
  }

  /** A small initializer stored inside the model. */
  initializer(name: string, t: ConstTensor): string {
    this._inits.set(name, { name, dtype: t.dtype, shape: t.shape, data: t.data });
    if (t.dtype === 'int64') this.constInts.set(name, Array.from(t.data as BigInt64Array, Number));
    return this.declare(name, t.dtype, t.shape);
  }

  constant(values: ConstTensor['data'] | readonly number[], dtype: DType, shape: readonly number[] = [(values as ArrayLike<number>).length], name?: string): string {
    const data = Array.isArray(values) ? typedFrom(values as number[], dtype) : (values as ConstTensor['data']);
    return this.initializer(name ?? this.fresh('const'), { dtype, shape, data });
  }

  /** int64 1-D constant (axes, shapes, starts/ends); `scalar` makes a 0-d tensor. */
  ints(values: readonly number[], scalar = false): string {
    return this.constant(values, 'int64', scalar ? [] : [values.length]);
  }

  /** float32 scalar constant. */
  scalar(v: number, dtype: DType = 'float32'): string {
    return this.constant([v], dtype, []);
  }

  /** Adds one node; returns its first output's name. */
  op(opType: string, inputs: readonly string[], attrs: Attrs = {}, opts: { name?: string; outputs?: readonly string[] } = {}): string {
    return this.opMulti(opType, inputs, opts.outputs ?? 1, attrs, opts.name)[0]!;
  }

  /** Adds one node with `outputs` outputs (a count, or explicit names). */
  opMulti(opType: string, inputs: readonly string[], outputs: number | readonly string[], attrs: Attrs = {}, nodeName?: string): string[] {
    const spec = opSpec(opType);
    const [minIn, maxIn] = spec.inputs;
    if (inputs.length < minIn || inputs.length > maxIn) {
      throw new MorrisError('GRAPH_ERROR', `${opType} takes ${minIn}..${maxIn} inputs, got ${inputs.length}.`);
    }
    for (const i of inputs) if (i !== '' && !this.info.has(i)) throw new MorrisError('GRAPH_ERROR', `${opType}: unknown input tensor ${i}.`);
    for (const [k, v] of Object.entries(attrs)) {
      const a = spec.attrs?.[k];
      if (!a) throw new MorrisError('GRAPH_ERROR', `${opType} has no attribute ${k}.`);
      checkAttr(opType, k, a.type, v);
    }
    for (const [k, a] of Object.entries(spec.attrs ?? {})) {
      if (a.required && attrs[k] === undefined) throw new MorrisError('GRAPH_ERROR', `${opType} needs attribute ${k}.`);
    }
    const outNames = typeof outputs === 'number' ? Array.from({ length: outputs }, () => this.fresh(opType)) : [...outputs];
    const [minOut, maxOut] = spec.outputs ?? [1, 1];
    if (outNames.length < minOut || outNames.length > maxOut) {
      throw new MorrisError('GRAPH_ERROR', `${opType} has ${minOut}..${maxOut} outputs, asked for ${outNames.length}.`);
    }
    const ins = inputs.map((i) => (i === '' ? undefined : this.info.get(i)));
    const inferred = spec.infer?.(ins, attrs, { constInts: (n) => this.constInts.get(n) }) ?? [];
    outNames.forEach((o, k) => this.declare(o, inferred[k]?.dtype, inferred[k]?.shape));
    const node: NodeInfo = { opType, name: nodeName ?? this.fresh(`n_${opType}`), domain: spec.domain ?? '', inputs: [...inputs], outputs: outNames, attrs };
    this._nodes.push(node);
    for (const o of outNames) this.producers.set(o, node);
    for (const i of inputs) if (i !== '') this.consumerMap.set(i, [...(this.consumerMap.get(i) ?? []), node]);
    return outNames;
  }

  /** Overrides the recorded dtype/shape of a tensor (e.g. when the caller knows better than inference). */
  setInfo(name: string, dtype?: DType, shape?: Shape): void {
    const t = this.tensor(name);
    if (dtype) t.dtype = dtype;
    if (shape) t.shape = shape;
  }

  toModelProto(opts: { irVersion?: number; producerName?: string; docString?: string } = {}): InstanceType<typeof onnx.ModelProto> {
    const valueInfo = (name: string) => {
      const t = this.tensor(name);
      if (!t.dtype) throw new MorrisError('GRAPH_ERROR', `Graph input/output ${name} has no known dtype.`);
      return onnx.ValueInfoProto.create({
        name,
        type: {
          tensorType: {
            elemType: DTYPE_CODE[t.dtype],
            shape: t.shape ? { dim: t.shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } : undefined,
          },
        },
      });
    };
    const initializer = [...this._inits.values()].map((init) => {
      const base = { name: init.name, dims: [...init.shape], dataType: DTYPE_CODE[init.dtype] };
      if (init.external) {
        return onnx.TensorProto.create({
          ...base,
          dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
          externalData: [
            { key: 'location', value: init.external.location },
            { key: 'offset', value: String(init.external.offset) },
            { key: 'length', value: String(init.external.length) },
          ],
        });
      }
      const d = init.data!;
      return onnx.TensorProto.create({ ...base, rawData: new Uint8Array(d.buffer, d.byteOffset, d.byteLength) });
    });
    const node = this._nodes.map((n) =>
      onnx.NodeProto.create({
        opType: n.opType,
        name: n.name,
        domain: n.domain || undefined,
        input: [...n.inputs],
        output: [...n.outputs],
        attribute: Object.entries(n.attrs).map(([k, v]) => attrProto(n.opType, k, v)),
      }),
    );
    const graph = onnx.GraphProto.create({
      name: this.name,
      node,
      initializer,
      input: this._inputs.map(valueInfo),
      output: this._outputs.map(valueInfo),
    });
    const domains = new Set(this._nodes.map((n) => n.domain).filter((d) => d !== ''));
    return onnx.ModelProto.create({
      irVersion: opts.irVersion ?? 8,
      producerName: opts.producerName ?? 'morris',
      docString: opts.docString,
      opsetImport: [{ domain: '', version: this.opset }, ...[...domains].map((domain) => ({ domain, version: 1 }))],
      graph,
    });
  }

  serialize(opts?: Parameters<GraphBuilder['toModelProto']>[0]): Uint8Array {
    return onnx.ModelProto.encode(this.toModelProto(opts)).finish();
  }
}

function typedFrom(values: readonly number[], dtype: DType): ConstTensor['data'] {
  switch (dtype) {
    case 'float32': return Float32Array.from(values);
    case 'float64': return Float64Array.from(values);
    case 'int64': return BigInt64Array.from(values, (v) => BigInt(v));
    case 'int32': return Int32Array.from(values);
    case 'int8': return Int8Array.from(values);
    case 'uint8':
    case 'bool': return Uint8Array.from(values);
    default: throw new MorrisError('GRAPH_ERROR', `Cannot make a ${dtype} constant from numbers.`);
  }
}

function checkAttr(opType: string, name: string, type: AttrType, v: AttrValue): void {
  const ok =
    type === 'int' ? Number.isInteger(v) :
    type === 'float' ? typeof v === 'number' :
    type === 'ints' ? Array.isArray(v) && v.every((x) => Number.isInteger(x)) :
    type === 'floats' ? Array.isArray(v) && v.every((x) => typeof x === 'number') :
    type === 'string' ? typeof v === 'string' :
    typeof v === 'object' && v !== null && 'tensor' in v;
  if (!ok) throw new MorrisError('GRAPH_ERROR', `${opType}.${name} must be ${type}, got ${JSON.stringify(v)}.`);
}

function attrProto(opType: string, name: string, v: AttrValue) {
  const T = onnx.AttributeProto.AttributeType;
  const type = opSpec(opType).attrs![name]!.type;
  switch (type) {
    case 'int': return { name, type: T.INT, i: v as number };
    case 'float': return { name, type: T.FLOAT, f: v as number };
    case 'ints': return { name, type: T.INTS, ints: [...(v as number[])] };
    case 'floats': return { name, type: T.FLOATS, floats: [...(v as number[])] };
    case 'string': return { name, type: T.STRING, s: new TextEncoder().encode(v as string) };
    case 'tensor': {
      const t = (v as { tensor: ConstTensor }).tensor;
      return { name, type: T.TENSOR, t: { dims: [...t.shape], dataType: DTYPE_CODE[t.dtype], rawData: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) } };
    }
  }
}
