/**
 * The gate's preference measure on a tiny random model: the base model scores 0.5 (every pair a
 * tie), an adapter DPO-trained on readers' pairs scores above it on the held-out ones, and one
 * trained on the pairs the other way round scores below it — which the gate then refuses.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { preferenceMeasurer } from '../../../src/jobs/gate/preference.ts';
import { decidePromotion, type ModelMeasure } from '../../../src/jobs/gate/evaluate.ts';
import { initTinyModel } from '../../../src/model/tiny/index.ts';
import { trainDpo } from '../../../src/model/train/dpo.ts';
import { splitPairs, type PreferenceRecord } from '../../../src/model/train/pairs.ts';
import { openStore, type Store } from '../../../src/store/db.ts';

let root: string;
let modelDir: string;
let store: Store;

const records: PreferenceRecord[] = Array.from({ length: 40 }, (_, i) => ({
  prompt: [{ role: 'user', content: `Write a column about the ${i}th train.` }],
  chosen: [{ role: 'assistant', content: `The ${i}th train was bright and early.` }],
  rejected: [{ role: 'assistant', content: `The ${i}th train was grey and late.` }],
}));
const swapped = records.map((r) => ({ ...r, chosen: r.rejected, rejected: r.chosen }));

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'morris-gate-pref-'));
  modelDir = join(root, 'tiny');
  initTinyModel(modelDir, { seed: 7, dims: { hidden: 32, intermediate: 64, layers: 2, heads: 4, kvHeads: 2 } });
  store = openStore(join(root, 'morris.db'));
});
afterAll(() => {
  store.close();
  rmSync(root, { recursive: true, force: true });
});

describe("the gate's preference measure", () => {
  it('base 0.5, a DPO adapter above, one trained the other way below; the gate refuses the latter', async () => {
    expect(splitPairs(records).heldOut.length).toBeGreaterThanOrEqual(2);
    const train = (name: string, rs: PreferenceRecord[]) =>
      trainDpo({ store, modelDir, referenceDir: null, records: rs, pairsSource: name, runsDir: join(root, name, 'runs'), adaptersDir: join(root, name, 'adapters'), settings: { threads: 1, rank: 4, alpha: 8, lr: 1e-2, dpoBeta: 0.5, dropout: 0, maxSteps: 12, gradAccum: 2 } });
    const good = await train('good', records);
    // Trained on the reversed pairs: what readers rejected, preferred.
    const bad = await train('bad', swapped);
    const measure = preferenceMeasurer({ modelDir, records, maxSeqLen: 512, threads: 1, device: 'cpu' });
    const base = await measure(null);
    const up = await measure(good.adapterDir);
    const down = await measure(bad.adapterDir);
    expect(base).toEqual({ accuracy: 0.5, pairs: splitPairs(records).heldOut.length });
    expect(up!.accuracy).toBeGreaterThan(0.9);
    expect(down!.accuracy).toBeLessThan(0.1);
    const m = (adapterId: string | null, preference: typeof base): ModelMeasure => ({ adapterId, valLoss: 2, perplexity: Math.exp(2), style: 0.5, longestVerbatimRun: 0, samples: [], preference });
    const d = decidePromotion({ ...m('bad', down), valLoss: 1 }, m('good', up), m(null, base), { margin: 0.01 });
    expect(d.promote).toBe(false);
    expect(d.reason).toMatch(/^readers' held-out preferences: accuracy 0\.\d{3} is below good's 1\.000/);
    expect(await preferenceMeasurer({ modelDir, records: [], maxSeqLen: 512, threads: 1, device: 'cpu' })(null)).toBeNull();
  });
});
