/**
 * Training learns, on real weights: LoRA on stories260K (a real pretrained tiny Llama, see
 * ../shared/models/stories260K/README.md) over stories that all carry a distinctive phrase.
 * The validation loss must fall clearly, and greedy generation through the inference engine
 * with the adapter must produce the phrase, which the base model never does.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { importDataset } from '../../src/pipeline/dataset/import.ts';
import { loadModel } from '../../src/model/inference/engine.ts';
import { trainAdapter } from '../../src/model/train/trainer.ts';
import { openStore } from '../../src/store/db.ts';

const MODEL = resolve(import.meta.dirname, '../../../shared/models/stories260K');
const HAVE_MODEL = existsSync(join(MODEL, 'model.safetensors'));
const PHRASE = 'purple dragon named Zorblax';

const root = mkdtempSync(join(tmpdir(), 'morris-stories-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function storiesJsonl(): string {
  const names = ['Lily', 'Ben', 'Tim', 'Sue', 'Max', 'Anna', 'Tom', 'Mia'];
  const places = ['park', 'garden', 'forest', 'house', 'school', 'beach'];
  const things = ['ball', 'cake', 'toy', 'flower', 'book', 'hat'];
  return Array.from({ length: 40 }, (_, i) => {
    const n = names[i % names.length]!;
    const story = `there was a ${PHRASE}. Zorblax met ${n} in the ${places[(i * 3) % places.length]}. ${n} gave Zorblax a ${things[(i * 5) % things.length]}. Zorblax was very happy.`;
    return JSON.stringify({ split: i < 32 ? 'train' : 'validation', messages: [{ role: 'user', content: 'Once upon a time' }, { role: 'assistant', content: story }] });
  }).join('\n');
}

async function greedy(adapterDir: string | null, prompt: string): Promise<string> {
  const m = await loadModel({ modelDir: MODEL, adapterDir, device: 'cpu', cacheDir: join(root, 'cache') });
  try {
    let text = '';
    for await (const piece of m.stream({ messages: [{ role: 'user', content: prompt }] }, { maxNewTokens: 40, temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1 })) text += piece;
    return text;
  } finally {
    await m.dispose();
  }
}

describe.skipIf(!HAVE_MODEL)('LoRA training on stories260K (skipped when ../shared/models/stories260K is absent)', () => {
  it('lowers the validation loss and teaches a phrase the base model never writes', async () => {
    const store = openStore(join(root, 'morris.db'));
    writeFileSync(join(root, 'stories.jsonl'), storiesJsonl());
    const ds = importDataset(store, join(root, 'stories.jsonl'));
    const r = await trainAdapter({
      store,
      modelDir: MODEL,
      dataset: ds.id,
      runsDir: join(root, 'runs'),
      adaptersDir: join(root, 'adapters'),
      cacheDir: join(root, 'cache'),
      settings: { threads: 1, lr: 5e-3, rank: 8, alpha: 16, gradAccum: 4, epochs: 2, evalEvery: 4, saveEvery: 100 },
    });
    store.close();
    const m = r.metrics as { eval_loss_initial: number; eval_loss: number };
    expect(m.eval_loss).toBeLessThan(0.5 * m.eval_loss_initial);

    const prompts = ['Once upon a time', 'Lily and Ben went to the park', 'The little dog'];
    for (const p of prompts) expect(await greedy(null, p)).not.toContain('Zorblax');
    expect(await greedy(r.adapterDir, 'Once upon a time')).toContain(PHRASE);
  });
});
