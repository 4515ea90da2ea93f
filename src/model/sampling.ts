/**
 * Token choice from one row of logits: repetition penalty (HF semantics: divide positive, multiply
 * negative logits of tokens already present), then greedy when temperature is 0, else
 * temperature → top-k → top-p → a draw from a seeded generator. Pure apart from the generator,
 * so the same seed gives the same tokens on every run and never touches a global RNG that
 * concurrent generations would share.
 */
export interface SamplingOptions {
  maxNewTokens: number;
  temperature: number;
  topP: number;
  topK: number;
  repetitionPenalty: number;
  seed?: number;
}

/** Uniform [0, 1) source. */
export type Rng = () => number;

export function applyRepetitionPenalty(logits: Float32Array, seen: Iterable<number>, penalty: number): void {
  if (penalty === 1) return;
  for (const t of new Set(seen)) {
    const v = logits[t];
    if (v === undefined) continue;
    logits[t] = v < 0 ? v * penalty : v / penalty;
  }
}

export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[best]!) best = i;
  return best;
}

export function chooseToken(logits: Float32Array, seen: Iterable<number>, opts: SamplingOptions, rng: Rng): number {
  applyRepetitionPenalty(logits, seen, opts.repetitionPenalty);
  if (!(opts.temperature > 0)) return argmax(logits);
  const cand = opts.topK > 0 && opts.topK < logits.length ? topKIndices(logits, opts.topK) : Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]! || a - b);
  const max = logits[cand[0]!]! / opts.temperature;
  const probs = cand.map((t) => Math.exp(logits[t]! / opts.temperature - max));
  const total = probs.reduce((a, b) => a + b, 0);
  // top-p: smallest prefix whose mass reaches topP (always at least one token)
  let keep = cand.length;
  if (opts.topP > 0 && opts.topP < 1) {
    let mass = 0;
    for (let i = 0; i < cand.length; i++) {
      mass += probs[i]! / total;
      if (mass >= opts.topP) {
        keep = i + 1;
        break;
      }
    }
  }
  const kept = probs.slice(0, keep);
  const keptTotal = kept.reduce((a, b) => a + b, 0);
  let r = rng() * keptTotal;
  for (let i = 0; i < keep; i++) {
    r -= kept[i]!;
    if (r < 0) return cand[i]!;
  }
  return cand[keep - 1]!;
}

/**
 * Indices of the k largest values, largest first (ties: lower index first), in O(V log k) with a
 * min-heap: sorting a 50k vocabulary every step would cost more than the decode step itself.
 */
export function topKIndices(x: Float32Array, k: number): number[] {
  const heap: number[] = []; // min-heap of indices by (value, -index)
  const less = (a: number, b: number) => x[a]! < x[b]! || (x[a] === x[b] && a > b);
  const swap = (i: number, j: number) => ([heap[i], heap[j]] = [heap[j]!, heap[i]!]);
  const down = (i: number) => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < heap.length && less(heap[l]!, heap[m]!)) m = l;
      if (r < heap.length && less(heap[r]!, heap[m]!)) m = r;
      if (m === i) return;
      swap(i, m);
      i = m;
    }
  };
  for (let i = 0; i < x.length; i++) {
    if (heap.length < k) {
      heap.push(i);
      for (let c = heap.length - 1; c > 0; ) {
        const p = (c - 1) >> 1;
        if (!less(heap[c]!, heap[p]!)) break;
        swap(c, p);
        c = p;
      }
    } else if (less(heap[0]!, i)) {
      heap[0] = i;
      down(0);
    }
  }
  return heap.sort((a, b) => x[b]! - x[a]! || a - b);
}
