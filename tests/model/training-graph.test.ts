/**
 * The whole training graph on a tiny random Llama: the LoRA gradients our autodiff builds equal
 * central finite differences of the graph's own loss; dropout is live in training and off in eval.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initTinyModel } from '../../src/model/tiny/index.ts';
import { TrainingSessions, type MicroBatch } from '../../src/model/train/step.ts';
import { Rng } from '../../src/model/train/rng.ts';

let root: string;
let modelDir: string;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'morris-tg-'));
  modelDir = join(root, 'tiny');
  initTinyModel(modelDir, { seed: 3, dims: { hidden: 32, intermediate: 48, layers: 2, heads: 4, kvHeads: 2, vocab: 300 } });
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

function batch(rng: Rng, B: number, S: number, vocab: number): MicroBatch {
  const ids: number[] = [];
  const targets: number[] = [];
  const counted = new Uint8Array(B * S);
  for (let i = 0; i < B * S; i++) {
    ids.push(Math.floor(rng.next() * vocab));
    targets.push(Math.floor(rng.next() * vocab));
    counted[i] = i % S >= 2 && i % S < S - 1 ? 1 : 0; // a prompt and a padding position per row
  }
  return { batch: B, seqLen: S, ids, targets, counted };
}

function randomLora(sessions: TrainingSessions, rng: Rng, scale: number): Map<string, Float32Array> {
  const w = new Map<string, Float32Array>();
  for (const t of sessions.lora) w.set(t.name, Float32Array.from({ length: t.shape[0] * t.shape[1] }, () => rng.normal() * scale));
  return w;
}

describe('training graph', () => {
  it('LoRA gradients match finite differences of the loss', async () => {
    const s = await TrainingSessions.open({ modelDir, rank: 4, alpha: 8, dropout: 0, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'down_proj'], device: 'cpu', threads: 1, cacheDir: join(root, 'cache') });
    const rng = new Rng(7);
    const mb = batch(rng, 2, 6, 300);
    const w = randomLora(s, rng, 0.3);
    const counted = mb.counted.reduce((a, b) => a + b, 0);
    const { loss, grads } = await s.step(mb, w, 1 / counted, rng);
    expect(Number.isFinite(loss)).toBe(true);
    expect(Math.abs(loss - (await s.evalLoss(mb, w, 1 / counted)))).toBeLessThan(1e-5);
    let worst = 0;
    let checked = 0;
    for (const t of s.lora) {
      const data = w.get(t.name)!;
      const g = grads.get(t.name)!;
      const scale = Math.max(...Array.from(g, Math.abs));
      expect(scale).toBeGreaterThan(0);
      for (let k = 0; k < 3; k++) {
        const i = Math.floor(rng.next() * data.length);
        const orig = data[i]!;
        const central = async (eps: number) => {
          data[i] = orig + eps;
          const lp = await s.evalLoss(mb, w, 1 / counted);
          data[i] = orig - eps;
          const lm = await s.evalLoss(mb, w, 1 / counted);
          data[i] = orig;
          return (lp - lm) / (2 * eps);
        };
        const numeric = await central(1e-2);
        worst = Math.max(worst, Math.abs(numeric - g[i]!) / scale);
        checked++;
      }
    }
    expect(checked).toBe(s.lora.length * 3);
    // In float32 the loss's rounding limits central differences to about 1 % of the largest
    // gradient per element; a second check takes the derivative along one random unit direction
    // through every LoRA tensor at once (Richardson-extrapolated), which sees the whole gradient.
    // The 1e-4 comparison against float64 autograd is check:torch.
    expect(worst).toBeLessThan(2e-2);
    const dir = new Map([...w].map(([k, v]) => [k, Float32Array.from(v, () => rng.normal())]));
    const norm = Math.sqrt([...dir.values()].reduce((a, d) => a + d.reduce((x, y) => x + y * y, 0), 0));
    for (const d of dir.values()) for (let i = 0; i < d.length; i++) d[i]! /= norm; // a unit direction
    const along = async (eps: number) => {
      const shifted = (sign: number) => new Map([...w].map(([k, v]) => [k, Float32Array.from(v, (x, i) => x + sign * eps * dir.get(k)![i]!)]));
      return ((await s.evalLoss(mb, shifted(1), 1 / counted)) - (await s.evalLoss(mb, shifted(-1), 1 / counted))) / (2 * eps);
    };
    const EPS = 3e-2;
    let analyticAlong = 0;
    for (const [k, g] of grads) for (let i = 0; i < g.length; i++) analyticAlong += g[i]! * dir.get(k)![i]!;
    const numericAlong = (4 * (await along(EPS)) - (await along(2 * EPS))) / 3; // Richardson: O(ε⁴)
    expect(Math.abs(numericAlong - analyticAlong) / Math.abs(analyticAlong)).toBeLessThan(1e-2);
    await s.release();
  });

  it('the chunked LM head + loss composite equals the plain op-by-op loss', async () => {
    const common = { modelDir, rank: 4, alpha: 8, dropout: 0, targets: ['q_proj', 'v_proj', 'down_proj'] as const, device: 'cpu' as const, threads: 1, cacheDir: join(root, 'cache') };
    const plain = await TrainingSessions.open({ ...common, plainLoss: true });
    const chunked = await TrainingSessions.open({ ...common, maxTokens: 100_000 }); // vocab 300 → 4 chunks
    const rng = new Rng(11);
    const mb = batch(rng, 2, 8, 300); // 10 counted rows: padded to 12 for the 4 chunks
    const w = randomLora(plain, rng, 0.3);
    const a = await plain.step(mb, w, 0.1, rng);
    const b = await chunked.step(mb, w, 0.1, rng);
    expect(Math.abs(a.loss - b.loss)).toBeLessThan(1e-5 * Math.abs(a.loss));
    for (const [k, ga] of a.grads) {
      const gb = b.grads.get(k)!;
      const scale = Math.max(...Array.from(ga, Math.abs));
      const diff = Math.max(...Array.from(ga, (x, i) => Math.abs(x - gb[i]!)));
      expect(diff).toBeLessThan(1e-4 * scale);
    }
    expect(Math.abs((await chunked.evalLoss(mb, w, 0.1)) - a.loss)).toBeLessThan(1e-5 * Math.abs(a.loss));
    await plain.release();
    await chunked.release();
  });

  it('dropout changes the training loss and never the eval loss', async () => {
    const s = await TrainingSessions.open({ modelDir, rank: 4, alpha: 8, dropout: 0.5, targets: ['q_proj', 'v_proj'], device: 'cpu', threads: 1, cacheDir: join(root, 'cache') });
    const rng = new Rng(9);
    const mb = batch(rng, 1, 8, 300);
    const w = randomLora(s, rng, 0.5);
    const a = (await s.step(mb, w, 0.1, new Rng(1))).loss;
    const b = (await s.step(mb, w, 0.1, new Rng(2))).loss;
    const a2 = (await s.step(mb, w, 0.1, new Rng(1))).loss;
    expect(a).not.toBe(b); // different masks
    expect(a2).toBe(a); // masks come only from the RNG we pass: reproducible
    const separate = await s.evalLoss(mb, w, 0.1);
    expect(await s.evalLoss(mb, w, 0.1)).toBe(separate);
    s.evalThroughTrainGraph = true; // all-keep masks, scale 1: the same loss without a second session
    expect(Math.abs((await s.evalLoss(mb, w, 0.1)) - separate)).toBeLessThan(1e-6);
    await s.release();
  });
});
