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
  const cand = opts.topK > 0 && opts.topK < logits.length ? topKIndices(logits, opts.topK) : sortedIndices(logits);
  const max = logits[cand[0]!]! / opts.temperature;
  const probs = new Float64Array(cand.length);
  let total = 0;
  for (let i = 0; i < cand.length; i++) total += probs[i] = Math.exp(logits[cand[i]!]! / opts.temperature - max);
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
  let keptTotal = 0;
  for (let i = 0; i < keep; i++) keptTotal += probs[i]!;
  let r = rng() * keptTotal;
  for (let i = 0; i < keep; i++) {
    r -= probs[i]!;
    if (r < 0) return cand[i]!;
  }
  return cand[keep - 1]!;
}

/**
 * Every index of x, largest value first, ties by lower index: the order of
 * `keys().sort((a, b) => x[b] - x[a] || a - b)`, by a stable radix sort on the float bits for
 * large arrays (over a 49k vocabulary that comparator sort took about 20 ms a token; this, about 2).
 * -0 counts as 0, as the comparator has it; NaN sorts last.
 */
export function sortedIndices(x: Float32Array): Uint32Array {
  const n = x.length;
  if (n < 1024) return Uint32Array.from(Array.from(x.keys()).sort((a, b) => x[b]! - x[a]! || a - b)); // small: cheaper than buckets
  const bits = new Uint32Array(x.buffer, x.byteOffset, n);
  // descending order as ascending unsigned keys: flip the sign-magnitude float order, then invert
  let key = new Uint32Array(n);
  let idx = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const v = x[i]!;
    const u = v === 0 ? 0 : bits[i]!; // -0 as 0
    key[i] = v !== v ? 0xffffffff : u & 0x80000000 ? u : ~u & 0x7fffffff;
    idx[i] = i;
  }
  let key2 = new Uint32Array(n);
  let idx2 = new Uint32Array(n);
  const count = new Uint32Array(2048);
  for (let shift = 0; shift < 32; shift += 11) { // three passes of 11 bits: the counts stay in L1
    count.fill(0);
    for (let i = 0; i < n; i++) count[(key[i]! >>> shift) & 2047]!++;
    let sum = 0;
    for (let d = 0; d < 2048; d++) {
      const c = count[d]!;
      count[d] = sum;
      sum += c;
    }
    for (let i = 0; i < n; i++) {
      const k = key[i]!;
      const at = count[(k >>> shift) & 2047]!++;
      key2[at] = k;
      idx2[at] = idx[i]!;
    }
    const tk = key;
    key = key2;
    key2 = tk;
    const ti = idx;
    idx = idx2;
    idx2 = ti;
  }
  return idx;
}

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
