/**
 * The DPO training graph on a tiny random Llama: its per-sequence log-probs equal the SFT graph's
 * summed token log-probs, its loss is −log σ(β·(margin − reference margin)) of those, and its LoRA
 * gradients equal central finite differences of its own loss.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initTinyModel } from '../../src/model/tiny/index.ts';
import { TrainingSessions, type MicroBatch, type PairMicroBatch } from '../../src/model/train/step.ts';
import { Rng } from '../../src/model/train/rng.ts';

let root: string;
let modelDir: string;
const VOCAB = 300;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'morris-dpo-graph-'));
  modelDir = join(root, 'tiny');
  initTinyModel(modelDir, { seed: 3, dims: { hidden: 32, intermediate: 48, layers: 2, heads: 4, kvHeads: 2, vocab: VOCAB } });
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** P pairs: chosen rows then rejected rows, each with a shared 3-token prompt and its own answer. */
function pairBatch(rng: Rng, P: number, S: number): PairMicroBatch {
  const B = 2 * P;
  const ids: number[] = [];
  const targets: number[] = [];
  const counted = new Uint8Array(B * S);
  for (let b = 0; b < B; b++) {
    const len = S - (b % 3); // rows of different lengths: the rest is padding
    for (let t = 0; t < S; t++) {
      ids.push(Math.floor(rng.next() * VOCAB));
      targets.push(Math.floor(rng.next() * VOCAB));
      counted[b * S + t] = t >= 2 && t < len - 1 ? 1 : 0;
    }
  }
  const refMargin = Float32Array.from({ length: P }, () => rng.normal() * 2);
  return { mb: { batch: B, seqLen: S, ids, targets, counted }, refMargin };
}

function randomLora(s: TrainingSessions, rng: Rng, scale: number): Map<string, Float32Array> {
  return new Map(s.lora.map((t) => [t.name, Float32Array.from({ length: t.shape[0] * t.shape[1] }, () => rng.normal() * scale)]));
}

const softplus = (x: number) => Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x)));

describe('DPO training graph', () => {
  const common = { get modelDir() { return modelDir; }, rank: 4, alpha: 8, dropout: 0, device: 'cpu' as const, threads: 1 };

  it('sums token log-probs per sequence and computes −log σ(β·(margin − reference margin))', async () => {
    const targets = ['q_proj', 'v_proj'] as const;
    const dpo = await TrainingSessions.open({ ...common, targets, objective: 'dpo', cacheDir: join(root, 'cache') });
    const sft = await TrainingSessions.open({ ...common, targets, plainLoss: true, cacheDir: join(root, 'cache') });
    const rng = new Rng(5);
    const P = 3;
    const pb = pairBatch(rng, P, 7);
    const w = randomLora(dpo, rng, 0.3);
    const beta = 0.7;
    const r = await dpo.dpoEval(pb, w, 1 / P, beta);
    // Each sequence alone through the SFT graph with weight 1 per token: its loss is −Σ log p.
    for (let q = 0; q < 2 * P; q++) {
      const S = pb.mb.seqLen;
      const one: MicroBatch = {
        batch: 1,
        seqLen: S,
        ids: pb.mb.ids.slice(q * S, (q + 1) * S),
        targets: pb.mb.targets.slice(q * S, (q + 1) * S),
        counted: pb.mb.counted.slice(q * S, (q + 1) * S),
      };
      const nll = await sft.evalLoss(one, w, 1);
      expect(Math.abs(r.seqLogp[q]! + nll)).toBeLessThan(1e-4 * Math.abs(nll));
    }
    let expected = 0;
    for (let p = 0; p < P; p++) expected += softplus(-beta * (r.seqLogp[p]! - r.seqLogp[P + p]! - pb.refMargin[p]!)) / P;
    expect(Math.abs(r.loss - expected)).toBeLessThan(1e-5);
    // The policy equal to the reference: every pair is a coin toss, loss ln 2.
    const same = { mb: pb.mb, refMargin: Float32Array.from({ length: P }, (_, p) => r.seqLogp[p]! - r.seqLogp[P + p]!) };
    expect(Math.abs((await dpo.dpoEval(same, w, 1 / P, beta)).loss - Math.LN2)).toBeLessThan(1e-5);
    await dpo.release();
    await sft.release();
  });

  it('LoRA gradients match finite differences of the DPO loss', async () => {
    const s = await TrainingSessions.open({ ...common, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'down_proj'], objective: 'dpo', cacheDir: join(root, 'cache') });
    const rng = new Rng(9);
    const P = 2;
    const pb = pairBatch(rng, P, 6);
    const w = randomLora(s, rng, 0.3);
    const beta = 0.5;
    const loss = async (weights: Map<string, Float32Array>) => (await s.dpoEval(pb, weights, 1 / P, beta)).loss;
    const r = await s.dpoStep(pb, w, 1 / P, beta, rng);
    expect(Math.abs(r.loss - (await loss(w)))).toBeLessThan(1e-6);
    let worst = 0;
    for (const t of s.lora) {
      const data = w.get(t.name)!;
      const g = r.grads!.get(t.name)!;
      const scale = Math.max(...Array.from(g, Math.abs));
      expect(scale).toBeGreaterThan(0);
      for (let k = 0; k < 3; k++) {
        const i = Math.floor(rng.next() * data.length);
        const orig = data[i]!;
        data[i] = orig + 1e-2;
        const lp = await loss(w);
        data[i] = orig - 1e-2;
        const lm = await loss(w);
        data[i] = orig;
        worst = Math.max(worst, Math.abs((lp - lm) / 2e-2 - g[i]!) / scale);
      }
    }
    // float32 rounding limits per-element central differences (see training-graph.test.ts); the
    // directional derivative through every tensor at once sees the whole gradient.
    expect(worst).toBeLessThan(2e-2);
    const dir = new Map([...w].map(([k, v]) => [k, Float32Array.from(v, () => rng.normal())]));
    const norm = Math.sqrt([...dir.values()].reduce((a, d) => a + d.reduce((x, y) => x + y * y, 0), 0));
    for (const d of dir.values()) for (let i = 0; i < d.length; i++) d[i]! /= norm;
    const along = async (eps: number) => {
      const shifted = (sign: number) => new Map([...w].map(([k, v]) => [k, Float32Array.from(v, (x, i) => x + sign * eps * dir.get(k)![i]!)]));
      return ((await loss(shifted(1))) - (await loss(shifted(-1)))) / (2 * eps);
    };
    let analytic = 0;
    for (const [k, g] of r.grads!) for (let i = 0; i < g.length; i++) analytic += g[i]! * dir.get(k)![i]!;
    const numeric = (4 * (await along(3e-2)) - (await along(6e-2))) / 3; // Richardson: O(ε⁴)
    expect(Math.abs(numeric - analytic) / Math.abs(analytic)).toBeLessThan(1e-2);
    await s.release();
  });
});
