/**
 * Dedupe stage (pure). Exact duplicates share a content hash (of the body with case and whitespace
 * folded). Near-duplicates — the same column syndicated with a new intro, a corrected paragraph,
 * a different headline — are found with MinHash over word 3-shingles and LSH banding for candidate
 * pairs, then confirmed with the exact Jaccard similarity of the shingle sets against the
 * threshold. Of each group the earliest-published article is kept.
 */
import { createHash } from 'node:crypto';
import type { ArticleInput } from './clean-text.ts';

export interface DedupeOptions {
  /** Jaccard similarity of word 3-shingles at or above which two articles are near-duplicates. */
  nearDupThreshold: number;
}

export interface Duplicate {
  id: number;
  url: string;
  duplicateOf: number;
  kind: 'exact' | 'near';
  similarity: number;
}

export interface DedupeResult {
  articles: ArticleInput[];
  duplicates: Duplicate[];
  counts: { input: number; kept: number; exact: number; near: number };
}

const SHINGLE = 3;
const BANDS = 32;
const ROWS = 4;
const NUM_HASHES = BANDS * ROWS;
/**
 * 32 bands of 4 rows make a pair with Jaccard J a candidate with probability 1 − (1 − J⁴)³²:
 * 0.999 at 0.7, 0.87 at 0.5, 0.32 at 0.33. Below this threshold every kept article is compared
 * instead, so a low setting is slow but never misses.
 */
const LSH_MIN_THRESHOLD = 0.6;
/** Fixed seeds: signatures must not change between runs, or dataset ids would. */
const SEEDS = Uint32Array.from({ length: NUM_HASHES }, (_, i) => fmix32((i + 1) * 0x9e3779b1));

export function contentHash(body: string): string {
  return createHash('sha256').update(body.toLowerCase().replace(/\s+/g, ' ').trim()).digest('hex');
}

/** Set of hashed word 3-shingles of a text. */
export function shingles(text: string): Set<number> {
  const words = text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
  const out = new Set<number>();
  if (words.length < SHINGLE) {
    if (words.length) out.add(fnv1a(words.join(' ')));
    return out;
  }
  for (let i = 0; i + SHINGLE <= words.length; i++) out.add(fnv1a(words.slice(i, i + SHINGLE).join(' ')));
  return out;
}

export function jaccard(a: Set<number>, b: Set<number>): number {
  if (a.size === 0 && b.size === 0) return 1;
  let inter = 0;
  const [small, big] = a.size < b.size ? [a, b] : [b, a];
  for (const x of small) if (big.has(x)) inter++;
  return inter / (a.size + b.size - inter);
}

export function minhash(sh: Set<number>): Uint32Array {
  const sig = new Uint32Array(NUM_HASHES).fill(0xffffffff);
  for (const x of sh) {
    for (let i = 0; i < NUM_HASHES; i++) {
      const h = fmix32(x ^ SEEDS[i]);
      if (h < sig[i]) sig[i] = h;
    }
  }
  return sig;
}

export function dedupeArticles(input: ArticleInput[], opts: DedupeOptions): DedupeResult {
  // Earliest published first (undated last), then oldest id: the original wins over its copies.
  const order = [...input].sort(
    (a, b) => (a.published ?? '\uffff').localeCompare(b.published ?? '\uffff') || a.id - b.id,
  );
  const byHash = new Map<string, ArticleInput>();
  const buckets = new Map<string, number[]>();
  const keptShingles = new Map<number, Set<number>>();
  const kept: ArticleInput[] = [];
  const duplicates: Duplicate[] = [];
  for (const a of order) {
    const h = contentHash(a.body);
    const same = byHash.get(h);
    if (same) {
      duplicates.push({ id: a.id, url: a.url, duplicateOf: same.id, kind: 'exact', similarity: 1 });
      continue;
    }
    const sh = shingles(a.body);
    const sig = minhash(sh);
    const keys = Array.from({ length: BANDS }, (_, b) => `${b}:${sig.subarray(b * ROWS, (b + 1) * ROWS).join(',')}`);
    const candidates = opts.nearDupThreshold < LSH_MIN_THRESHOLD ? keptShingles.keys() : new Set(keys.flatMap((k) => buckets.get(k) ?? []));
    let best: { id: number; sim: number } | null = null;
    for (const id of candidates) {
      const sim = jaccard(sh, keptShingles.get(id) as Set<number>);
      if (sim >= opts.nearDupThreshold && (!best || sim > best.sim)) best = { id, sim };
    }
    if (best) {
      duplicates.push({ id: a.id, url: a.url, duplicateOf: best.id, kind: 'near', similarity: round3(best.sim) });
      continue;
    }
    byHash.set(h, a);
    keptShingles.set(a.id, sh);
    for (const k of keys) {
      const list = buckets.get(k);
      if (list) list.push(a.id);
      else buckets.set(k, [a.id]);
    }
    kept.push(a);
  }
  // Hand the survivors back in input order so later stages see a stable sequence.
  const keptIds = new Set(kept.map((a) => a.id));
  return {
    articles: input.filter((a) => keptIds.has(a.id)),
    duplicates,
    counts: {
      input: input.length,
      kept: kept.length,
      exact: duplicates.filter((d) => d.kind === 'exact').length,
      near: duplicates.filter((d) => d.kind === 'near').length,
    },
  };
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** MurmurHash3's finaliser: a cheap, well-mixed 32-bit permutation. */
function fmix32(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
