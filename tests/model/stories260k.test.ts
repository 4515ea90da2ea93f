import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { compileModel } from '../../src/model/graph/compile.ts';
import { loadModel } from '../../src/model/inference/engine.ts';
import { createSession } from '../../src/model/inference/runtime.ts';
import { fullLogits } from './graph-helpers.ts';

/** Real pretrained weights with golden outputs from llama2.c (see its README). */
const MODEL_DIR = resolve(import.meta.dirname, '../../../shared/models/stories260K');
const present = existsSync(join(MODEL_DIR, 'GOLDEN.json'));
if (!present) console.warn(`stories260K tests skipped: ${MODEL_DIR} is missing (CI always has ../shared).`);

interface Golden {
  tolerance: { logit_abs: number };
  prompts: { prompt: string; input_ids: number[]; continuation_ids: number[]; continuation_text: string; first_generated_position: number; top5_first_generated: { id: number; logit: number }[] }[];
}

const cacheDir = mkdtempSync(join(tmpdir(), 'morris-s260-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

describe.skipIf(!present)('stories260K (real weights, llama2.c goldens)', () => {
  const golden: Golden = present ? JSON.parse(readFileSync(join(MODEL_DIR, 'GOLDEN.json'), 'utf8')) : { tolerance: { logit_abs: 0 }, prompts: [] };

  it('reproduces every golden greedy continuation through the engine, token for token', async () => {
    expect(golden.prompts.length).toBeGreaterThan(0); // an empty golden file would pass every loop below
    const model = await loadModel({ modelDir: MODEL_DIR, cacheDir, device: 'cpu' });
    try {
      for (const p of golden.prompts) {
        let text = '';
        for await (const piece of model.stream({ text: p.prompt }, { maxNewTokens: p.continuation_ids.length, temperature: 0, topP: 1, topK: 0, repetitionPenalty: 1 })) text += piece;
        expect(text).toBe(p.continuation_text);
        // same ids, not just the same text
        expect(model.countTokens(p.prompt + text)).toBe(p.input_ids.length - 1 + p.continuation_ids.length);
      }
    } finally {
      await model.dispose();
    }
  });

  it('reproduces every golden continuation while batched with the others and with sampled requests, each in the same steps', async () => {
    expect(golden.prompts.length).toBeGreaterThan(0);
    const model = await loadModel({ modelDir: MODEL_DIR, cacheDir, device: 'cpu', decodeKernel: 'native', maxBatch: 8 });
    try {
      expect(model.info.maxBatch).toBe(8);
      const run = async (prompt: string, opts: Parameters<typeof model.stream>[1]) => {
        let text = '';
        for await (const piece of model.stream({ text: prompt }, opts)) text += piece;
        return text;
      };
      const greedy = { temperature: 0, topP: 1, topK: 0, repetitionPenalty: 1 };
      const noise = [0, 1, 2].map((i) => run(`Once upon a time ${i}`, { maxNewTokens: 60, temperature: 1, topP: 0.9, topK: 40, repetitionPenalty: 1.1, seed: i }));
      const texts = await Promise.all(golden.prompts.map((p) => run(p.prompt, { ...greedy, maxNewTokens: p.continuation_ids.length })));
      await Promise.all(noise);
      golden.prompts.forEach((p, i) => expect(texts[i], p.prompt).toBe(p.continuation_text));
    } finally {
      await model.dispose();
    }
  });

  it('matches the stored top-5 logits within tolerance and greedy ids exactly (direct ONNX Runtime)', async () => {
    const compiled = await compileModel({ modelDir: MODEL_DIR, cacheDir });
    const { session } = await createSession(compiled.onnxFile);
    try {
      for (const p of golden.prompts) {
        const ids = [...p.input_ids, ...p.continuation_ids];
        const rows = await fullLogits(session, compiled.config, ids.slice(0, -1)); // teacher forcing over the golden ids
        const first = rows[p.first_generated_position]!;
        expect(p.top5_first_generated).toHaveLength(5);
        for (const t of p.top5_first_generated) expect(Math.abs(first[t.id]! - t.logit)).toBeLessThanOrEqual(golden.tolerance.logit_abs);
        const greedy = rows.slice(p.input_ids.length - 1).map((r) => r.indexOf(Math.max(...r)));
        expect(greedy).toEqual(p.continuation_ids);
      }
    } finally {
      await session.release();
    }
  });
});
