/**
 * AdamW (decoupled weight decay, Loshchilov & Hutter; the same update as torch.optim.AdamW) over
 * named Float32Array parameters, plus global-norm gradient clipping. The state is plain arrays so
 * a checkpoint can save and restore it exactly.
 */
export interface AdamWOptions {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
}

export interface AdamWState {
  /** Number of updates done so far. */
  t: number;
  m: Map<string, Float32Array>;
  v: Map<string, Float32Array>;
}

export function newAdamWState(params: ReadonlyMap<string, Float32Array>): AdamWState {
  const m = new Map<string, Float32Array>();
  const v = new Map<string, Float32Array>();
  for (const [k, p] of params) {
    m.set(k, new Float32Array(p.length));
    v.set(k, new Float32Array(p.length));
  }
  return { t: 0, m, v };
}

/** Global L2 norm over all gradients (computed in float64). */
export function globalNorm(grads: ReadonlyMap<string, Float32Array>): number {
  let sq = 0;
  for (const g of grads.values()) for (let i = 0; i < g.length; i++) sq += g[i]! * g[i]!;
  return Math.sqrt(sq);
}

/** Scales gradients in place so their global norm is at most maxNorm; returns the norm before. */
export function clipGradNorm(grads: ReadonlyMap<string, Float32Array>, maxNorm: number): number {
  const norm = globalNorm(grads);
  if (maxNorm > 0 && norm > maxNorm) {
    const scale = maxNorm / (norm + 1e-6);
    for (const g of grads.values()) for (let i = 0; i < g.length; i++) g[i]! *= scale;
  }
  return norm;
}

/** One AdamW update of every parameter in place. */
export function adamwStep(
  params: ReadonlyMap<string, Float32Array>,
  grads: ReadonlyMap<string, Float32Array>,
  state: AdamWState,
  lr: number,
  o: AdamWOptions,
): void {
  state.t += 1;
  const bc1 = 1 - o.beta1 ** state.t;
  const bc2 = 1 - o.beta2 ** state.t;
  for (const [k, p] of params) {
    const g = grads.get(k);
    if (!g) throw new Error(`no gradient for ${k}`);
    const m = state.m.get(k)!;
    const v = state.v.get(k)!;
    const decay = 1 - lr * o.weightDecay;
    for (let i = 0; i < p.length; i++) {
      const gi = g[i]!;
      m[i] = o.beta1 * m[i]! + (1 - o.beta1) * gi;
      v[i] = o.beta2 * v[i]! + (1 - o.beta2) * gi * gi;
      const mHat = m[i]! / bc1;
      const vHat = v[i]! / bc2;
      p[i] = p[i]! * decay - (lr * mHat) / (Math.sqrt(vHat) + o.eps);
    }
  }
}
