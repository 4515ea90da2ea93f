/**
 * Reverse-mode autodiff over a GraphBuilder graph: one reverse topological walk that applies the
 * local rule of each node (./rules.ts) — or of a recognised composite (./composites.ts) — to the
 * nodes between the trainable tensors and the loss.
 * Frozen tensors (base weights, inputs, constants) get no gradient, and nodes whose outputs do
 * not depend on a trainable tensor emit nothing, so their activations are freed as soon as the
 * forward pass is done with them.
 */
import { MorrisError } from '../../errors.ts';
import type { GraphBuilder, NodeInfo } from '../graph/builder.ts';
import { COMPOSITE_MATCHERS } from './composites.ts';
import { addAll } from './helpers.ts';
import { gradientRule } from './rules.ts';

const FLOAT_TYPES = new Set(['float32', 'float64', 'float16', 'bfloat16']);

/**
 * Appends gradient nodes to `g` for d(loss)/d(t) of every tensor in `wrt` and returns the name
 * of each gradient tensor (an all-zero tensor when `t` does not reach the loss). `loss` is a
 * scalar tensor (seeded with 1), or a map from tensors to gradients already computed for them.
 */
export function addGradients(g: GraphBuilder, loss: string | ReadonlyMap<string, string>, wrt: readonly string[]): Map<string, string> {
  // A loss name seeds d loss/d loss = 1; a map seeds given gradients of intermediate tensors
  // (a composite op that computed its own input gradient, e.g. the chunked LM head + loss).
  const nodes = g.nodes.slice(); // snapshot: the walk appends nodes to g
  const seeds = typeof loss === 'string' ? new Map([[loss, seedGradient(g, loss)]]) : loss;
  fillUnknownRanks(g, nodes);
  // 1) forward: tensors that depend on a trainable tensor
  const dependsOnTrainable = new Set<string>(wrt);
  for (const n of nodes) {
    if (n.inputs.some((i) => dependsOnTrainable.has(i))) {
      for (const o of n.outputs) if (isFloat(g, o)) dependsOnTrainable.add(o);
    }
  }
  // 2) backward: of those, the ones the loss depends on
  const onPath = new Set<string>();
  for (const t of seeds.keys()) if (dependsOnTrainable.has(t)) onPath.add(t);
  const pathNodes: NodeInfo[] = [];
  for (let k = nodes.length - 1; k >= 0; k--) {
    const n = nodes[k]!;
    if (!n.outputs.some((o) => onPath.has(o))) continue;
    pathNodes.push(n);
    for (const i of n.inputs) if (i !== '' && dependsOnTrainable.has(i)) onPath.add(i);
  }
  // 3) the walk, loss first: each tensor's gradient is the sum of its consumers' contributions
  const contributions = new Map<string, string[]>();
  const gradOf = (t: string): string | undefined => {
    const parts = contributions.get(t);
    if (!parts || parts.length === 0) return undefined;
    if (parts.length > 1) contributions.set(t, [addAll(g, parts)]);
    return contributions.get(t)![0];
  };
  for (const [t, grad] of seeds) contributions.set(t, [grad]);
  const inComposite = new Set<NodeInfo>();
  for (const n of pathNodes) {
    if (inComposite.has(n)) continue; // differentiated as part of a composite below it
    const composite = COMPOSITE_MATCHERS.map((m) => m(g, n)).find((m) => m !== undefined);
    if (composite) {
      const gy = gradOf(n.outputs[0]!);
      if (gy === undefined) continue;
      for (const inner of composite.inner) inComposite.add(inner);
      for (const [t, gt] of composite.rule(g, gy, (t) => onPath.has(t))) {
        recordLike(g, gt, t);
        contributions.set(t, [...(contributions.get(t) ?? []), gt]);
      }
      continue;
    }
    const rule = gradientRule(n.opType);
    if (!rule) {
      throw new MorrisError('NO_GRADIENT_RULE', `No gradient rule for op ${n.opType} (node ${n.name}) on the path from the trainable tensors to the loss.`, {
        hint: 'Add a rule for it to GRADIENT_RULES in src/model/autodiff/rules.ts (with a finite-difference test).',
      });
    }
    const gy = n.outputs.map((o) => (onPath.has(o) ? gradOf(o) : undefined));
    if (gy.every((x) => x === undefined)) continue;
    const need = n.inputs.map((i) => i !== '' && onPath.has(i));
    const gx = rule({ g, node: n, gy, need });
    n.inputs.forEach((i, k) => {
      if (!need[k] || gx[k] === undefined) return;
      recordLike(g, gx[k]!, i);
      const list = contributions.get(i) ?? [];
      list.push(gx[k]!);
      contributions.set(i, list);
    });
  }
  const out = new Map<string, string>();
  for (const t of wrt) {
    const gt = gradOf(t);
    if (gt) recordLike(g, gt, t);
    out.set(t, gt ?? zerosFor(g, t));
  }
  return out;
}

/**
 * Gradient rules need ranks (broadcasting, transposes), and the op table's inference leaves some
 * shapes unknown, e.g. a Reshape to a shape computed in the graph. Ranks always follow from the
 * node; the dims stay unknown (a symbol unique to the tensor, so never mistaken for a literal 1).
 */
function fillUnknownRanks(g: GraphBuilder, nodes: readonly NodeInfo[]): void {
  const rank = (t: string): number | undefined => (t === '' ? undefined : g.tensor(t).shape?.length);
  const maxRank = (ts: readonly string[]): number | undefined => {
    const rs = ts.map(rank);
    return rs.some((r) => r === undefined) ? undefined : Math.max(...(rs as number[]));
  };
  for (const n of nodes) {
    const i0 = n.inputs[0] ?? '';
    let r: number | undefined;
    switch (n.opType) {
      case 'Reshape':
      case 'Expand': {
        const len = g.tensor(n.inputs[1]!).shape?.[0];
        r = typeof len === 'number' ? (n.opType === 'Expand' ? Math.max(rank(i0) ?? 0, len) : len) : undefined;
        break;
      }
      case 'Gemm':
        r = 2;
        break;
      case 'Unsqueeze': {
        const axes = g.constValue(n.inputs[1]!);
        const ri = rank(i0);
        r = axes && ri !== undefined ? ri + axes.length : undefined;
        break;
      }
      case 'Add': case 'Sub': case 'Mul': case 'Div': case 'Pow': case 'Where': case 'MatMul': case 'Max': case 'Min':
      case 'Equal': case 'Less': case 'LessOrEqual': case 'Greater': case 'GreaterOrEqual': case 'And': case 'Or':
        r = maxRank(n.inputs.filter((x) => x !== ''));
        break;
      case 'Range': case 'Shape':
        r = 1;
        break;
      case 'ConstantOfShape': {
        const len = g.tensor(i0).shape?.[0];
        r = typeof len === 'number' ? len : undefined;
        break;
      }
      case 'Gather': {
        const rd = rank(i0);
        const ri = rank(n.inputs[1]!);
        r = rd !== undefined && ri !== undefined ? rd - 1 + ri : undefined;
        break;
      }
      case 'Transpose': case 'Softmax': case 'LogSoftmax': case 'Cast': case 'Neg': case 'Sqrt': case 'Exp':
      case 'Log': case 'Sigmoid': case 'Softplus': case 'Tanh': case 'Relu': case 'Erf': case 'Sin': case 'Cos': case 'Reciprocal':
      case 'Identity': case 'Not': case 'Trilu': case 'CumSum': case 'Concat': case 'Split': case 'Slice': case 'Pad': case 'GatherElements': case 'ScatterElements':
        r = rank(i0);
        break;
      default:
        r = undefined;
    }
    if (r === undefined) continue;
    for (const o of n.outputs) {
      if (!g.tensor(o).shape) g.setInfo(o, undefined, Array.from({ length: r }, (_, k) => `${o}#${k}`));
    }
  }
}

/** A gradient has its tensor's dtype and shape; record them where inference left them unknown. */
function recordLike(g: GraphBuilder, grad: string, like: string): void {
  const gi = g.tensor(grad);
  const li = g.tensor(like);
  g.setInfo(grad, gi.dtype ?? li.dtype, gi.shape ?? li.shape);
}

function isFloat(g: GraphBuilder, t: string): boolean {
  const d = g.tensor(t).dtype;
  return d === undefined || FLOAT_TYPES.has(d);
}

/** d(loss)/d(loss) = 1, shaped like the loss. */
function seedGradient(g: GraphBuilder, loss: string): string {
  const dtype = g.tensor(loss).dtype ?? 'float32';
  const data = dtype === 'float64' ? new Float64Array([1]) : new Float32Array([1]);
  const one = g.op('ConstantOfShape', [g.op('Shape', [loss])], { value: { tensor: { dtype, shape: [1], data } } });
  g.setInfo(one, dtype, g.tensor(loss).shape);
  return one;
}

function zerosFor(g: GraphBuilder, t: string): string {
  const dtype = g.tensor(t).dtype ?? 'float32';
  const data = dtype === 'float64' ? new Float64Array(1) : new Float32Array(1);
  const z = g.op('ConstantOfShape', [g.op('Shape', [t])], { value: { tensor: { dtype, shape: [1], data } } });
  g.setInfo(z, dtype, g.tensor(t).shape);
  return z;
}
