import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../../src/model/checkpoint/random-checkpoint.ts';
import { applyRepetitionPenalty, chooseToken, sortedIndices, topKIndices } from '../../src/model/inference/sampling.ts';

const opts = { maxNewTokens: 1, temperature: 1, topP: 1, topK: 0, repetitionPenalty: 1 };

describe('sampling', () => {
  it('top-k selection equals a full sort, ties by lower index', () => {
    const rng = mulberry32(3);
    const x = Float32Array.from({ length: 5000 }, () => Math.round(rng() * 300));
    const sorted = Array.from(x.keys()).sort((a, b) => x[b]! - x[a]! || a - b);
    for (const k of [1, 7, 50, 4999]) expect(topKIndices(x, k)).toEqual(sorted.slice(0, k));
  });

  it('the full order (top-k off) equals the comparator sort: ties by lower index, -0 as 0, infinities, tiny and huge arrays', () => {
    const rng = mulberry32(4);
    const x = Float32Array.from({ length: 49152 }, () => (rng() < 0.3 ? Math.round(rng() * 20) - 10 : (rng() - 0.5) * 40));
    x.set([-0, 0, -Infinity, Infinity, -0, 1e-40, -1e-40, 3.5, 3.5], 100);
    const expected = Array.from(x.keys()).sort((a, b) => x[b]! - x[a]! || a - b);
    expect(Array.from(sortedIndices(x))).toEqual(expected);
    expect(Array.from(sortedIndices(x.subarray(7, 70)))).toEqual(Array.from(x.subarray(7, 70).keys()).sort((a, b) => x[7 + b]! - x[7 + a]! || a - b));
    const wide = x.subarray(1, 3001); // radix path on an offset view
    expect(Array.from(sortedIndices(wide))).toEqual(Array.from(wide.keys()).sort((a, b) => wide[b]! - wide[a]! || a - b));
  });

  it('temperature 0 is argmax after the HF repetition penalty', () => {
    const logits = Float32Array.of(2, 1.9, -1, 0.5);
    expect(chooseToken(logits.slice(), [], { ...opts, temperature: 0 }, Math.random)).toBe(0);
    expect(chooseToken(logits.slice(), [0], { ...opts, temperature: 0, repetitionPenalty: 1.2 }, Math.random)).toBe(1); // 2/1.2 < 1.9
    const neg = Float32Array.of(-1, 2);
    applyRepetitionPenalty(neg, [0, 0], 2);
    expect(Array.from(neg)).toEqual([-2, 2]);
  });

  it('draws follow the softmax, restricted by top-k and top-p, and are reproducible per seed', () => {
    const logits = Float32Array.of(Math.log(0.5), Math.log(0.3), Math.log(0.15), Math.log(0.05));
    const counts = [0, 0, 0, 0];
    const rng = mulberry32(1);
    for (let i = 0; i < 20000; i++) counts[chooseToken(logits.slice(), [], opts, rng)]!++;
    [0.5, 0.3, 0.15, 0.05].forEach((p, i) => expect(counts[i]! / 20000).toBeCloseTo(p, 1));
    const r2 = mulberry32(2);
    for (let i = 0; i < 200; i++) expect(chooseToken(logits.slice(), [], { ...opts, topK: 2 }, r2)).toBeLessThan(2);
    for (let i = 0; i < 200; i++) expect(chooseToken(logits.slice(), [], { ...opts, topP: 0.75 }, r2)).toBeLessThan(2); // 0.5 + 0.3 reaches 0.75
    const seq = (seed: number) => { const r = mulberry32(seed); return Array.from({ length: 30 }, () => chooseToken(logits.slice(), [], opts, r)); };
    expect(seq(9)).toEqual(seq(9));
    expect(seq(9)).not.toEqual(seq(10));
  });
});
