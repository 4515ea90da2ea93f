/**
 * DPO learns on real weights (issue 17's must-show): stories260K (a real pretrained tiny Llama, see
 * ../shared/models/stories260K/README.md). The reference is an SFT adapter trained on stories that
 * mostly name "a cat named Tom", so it writes that phrase; readers' pairs prefer the same stories
 * with "a dog named Spot". After DPO against that reference, held-out preference accuracy (the
 * share of held-out pairs whose implicit reward β·(log πθ − log πref) prefers the chosen story)
 * rises from 0.5 (policy = reference: every pair a tie) to ≥ 0.9, and greedy continuations write
 * the chosen phrase and never the rejected one.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { importDataset } from '../../src/pipeline/dataset/import.ts';
import { loadModel } from '../../src/model/inference/engine.ts';
import { trainAdapter } from '../../src/model/train/trainer.ts';
import { trainDpo } from '../../src/model/train/dpo.ts';
import type { PreferenceRecord } from '../../src/model/train/pairs.ts';
import { openStore } from '../../src/store/db.ts';

const MODEL = resolve(import.meta.dirname, '../../../shared/models/stories260K');
const HAVE_MODEL = existsSync(join(MODEL, 'model.safetensors'));
const CHOSEN = 'dog named Spot';
const REJECTED = 'cat named Tom';
const STARTS = ['Once upon a time', 'Tell me a story', 'Once upon a time, there was', 'Here is a story', 'A bedtime story'];
const PLACES = ['park', 'garden', 'forest', 'house', 'school', 'beach'];
const THINGS = ['ball', 'cake', 'toy', 'flower', 'book', 'hat'];
const story = (i: number, phrase: string) => `One day, a ${phrase} went to the ${PLACES[(i * 3) % 6]}. There was a big ${THINGS[(i * 5) % 6]}. Everyone was happy.`;

const root = mkdtempSync(join(tmpdir(), 'morris-dpo-stories-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function greedy(adapterDir: string, prompt: string): Promise<string> {
  const m = await loadModel({ modelDir: MODEL, adapterDir, device: 'cpu', cacheDir: join(root, 'cache') });
  try {
    let text = '';
    // The chat template joins turns with a newline: the prompt as training rendered it.
    for await (const piece of m.stream({ messages: [{ role: 'user', content: `${prompt}\n` }] }, { maxNewTokens: 16, temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1 })) text += piece;
    return text;
  } finally {
    await m.dispose();
  }
}

describe.skipIf(!HAVE_MODEL)('DPO on stories260K (skipped when ../shared/models/stories260K is absent)', () => {
  it('raises held-out preference accuracy from 0.5 to ≥ 0.9 and makes greedy text write the chosen phrase', async () => {
    const store = openStore(join(root, 'morris.db'));
    // The reference: SFT on stories, nine in ten naming the phrase readers will reject.
    const sft = Array.from({ length: 40 }, (_, i) =>
      JSON.stringify({ split: i < 34 ? 'train' : 'validation', messages: [{ role: 'user', content: STARTS[i % 5] }, { role: 'assistant', content: story(i, i % 10 < 9 ? REJECTED : CHOSEN) }] }),
    );
    writeFileSync(join(root, 'sft.jsonl'), sft.join('\n'));
    const ds = importDataset(store, join(root, 'sft.jsonl'));
    const common = { store, modelDir: MODEL, runsDir: join(root, 'runs'), adaptersDir: join(root, 'adapters'), cacheDir: join(root, 'cache') };
    const ref = await trainAdapter({ ...common, dataset: ds.id, settings: { threads: 1, lr: 5e-3, rank: 8, alpha: 16, gradAccum: 4, epochs: 2, evalEvery: 4, saveEvery: 100, dropout: 0 } });
    for (const p of STARTS.slice(0, 3)) {
      const text = await greedy(ref.adapterDir, p);
      expect(text).toContain(REJECTED);
      expect(text).not.toContain(CHOSEN);
    }

    // Readers' pairs: the same stories (other places and things than SFT's), the chosen phrase against the rejected one.
    const records: PreferenceRecord[] = Array.from({ length: 60 }, (_, i) => ({
      prompt: [{ role: 'user', content: STARTS[i % 5]! }],
      chosen: [{ role: 'assistant', content: story(i + 1000, CHOSEN) }],
      rejected: [{ role: 'assistant', content: story(i + 1000, REJECTED) }],
    }));
    const r = await trainDpo({
      ...common,
      referenceDir: ref.adapterDir,
      records,
      pairsSource: 'test',
      settings: { threads: 1, lr: 3e-4, dpoBeta: 0.1, gradAccum: 4, epochs: 2, evalEvery: 4, saveEvery: 100, dropout: 0 },
    });
    store.close();
    expect(r.verdict.status).toBe('candidate');
    expect(r.preference.heldOut).toBeGreaterThanOrEqual(5);
    expect(r.preference.initial).toBe(0.5);
    expect(r.preference.final).toBeGreaterThanOrEqual(0.9);
    const m = r.metrics as { eval_loss_initial: number; eval_loss: number };
    expect(m.eval_loss_initial).toBeCloseTo(Math.LN2, 5);
    expect(m.eval_loss).toBeLessThan(0.7 * Math.LN2);
    for (const p of STARTS.slice(0, 3)) {
      const text = await greedy(r.adapterDir, p);
      expect(text).toContain(CHOSEN);
      expect(text).not.toContain(REJECTED);
    }
    console.log(`DPO on stories260K: held-out preference accuracy ${r.preference.initial} → ${r.preference.final} over ${r.preference.heldOut} pairs; held-out DPO loss ${m.eval_loss_initial.toFixed(4)} → ${m.eval_loss.toFixed(4)}`);
  });
});
