import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { MorrisError } from '../../src/errors.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AutoTokenizer } from '@huggingface/transformers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileModel } from '../../src/model/graph/compile.ts';
import { loadModel, type LoadedModel, type SamplingOptions } from '../../src/model/inference/engine.ts';
import { createSession } from '../../src/model/inference/runtime.ts';
import { writeRandomAdapter, writeRandomCheckpoint } from '../../src/model/checkpoint/random-checkpoint.ts';
import { greedyIds } from './graph-helpers.ts';

const root = mkdtempSync(join(tmpdir(), 'morris-engine-'));
const modelDir = join(root, 'tiny');
const cacheDir = join(root, 'cache');
const config = {
  model_type: 'llama', hidden_size: 48, intermediate_size: 96, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2,
  vocab_size: 300, max_position_embeddings: 256, rms_norm_eps: 1e-5, tie_word_embeddings: true, eos_token_id: 258,
};
const PROMPT = 'The quick brown fox';
/** Greedy continuation of PROMPT by the seed-1234 model (byte tokenizer: one id per byte). */
const PINNED_IDS = [127, 29, 269, 68, 184, 280, 274, 246, 140, 269, 44, 262];
const greedy: SamplingOptions = { maxNewTokens: 12, temperature: 0, topP: 1, topK: 0, repetitionPenalty: 1 };

let model: LoadedModel;
beforeAll(async () => {
  writeRandomCheckpoint(modelDir, { config, seed: 1234, std: 0.3 }, { tokenizer: true });
  model = await loadModel({ modelDir, cacheDir, device: 'cpu' });
});
afterAll(async () => {
  await model?.dispose();
  rmSync(root, { recursive: true, force: true });
});

async function collect(it: AsyncIterable<string>): Promise<string> {
  let s = '';
  for await (const piece of it) s += piece;
  return s;
}

describe('engine on a seeded tiny random model', () => {
  it('greedy output is pinned as exact token ids, and the engine streams their text', async () => {
    const compiled = await compileModel({ modelDir, cacheDir });
    const { session } = await createSession(compiled.onnxFile);
    const promptIds = [...Buffer.from(PROMPT)];
    const ids = await greedyIds(session, compiled.config, promptIds, 12);
    await session.release();
    expect(ids).toEqual(PINNED_IDS);
    const tok = await AutoTokenizer.from_pretrained(modelDir, { local_files_only: true });
    const expected = tok.decode([...promptIds, ...ids], { skip_special_tokens: true }).slice(PROMPT.length);
    expect(await collect(model.stream({ text: PROMPT }, greedy))).toBe(expected);
    expect(model.lastStats!.tokenIds).toEqual(PINNED_IDS);
  });
});

describe('engine sampling, chat, cancellation and adapters', () => {
  const sampled: SamplingOptions = { maxNewTokens: 16, temperature: 0.9, topP: 0.95, topK: 50, repetitionPenalty: 1.1, seed: 42 };

  it('seeded sampling is reproducible and the seed matters', async () => {
    const a = await collect(model.stream({ text: PROMPT }, sampled));
    const b = await collect(model.stream({ text: PROMPT }, sampled));
    const c = await collect(model.stream({ text: PROMPT }, { ...sampled, seed: 43 }));
    expect(a.length).toBeGreaterThan(0);
    expect(b).toBe(a);
    expect(c).not.toBe(a);
  });

  it('applies the checkpoint chat template to messages', async () => {
    const chat = await collect(model.stream({ messages: [{ role: 'user', content: PROMPT }] }, greedy));
    const raw = await collect(model.stream({ text: `<|im_start|>user\n${PROMPT}<|im_end|>\n<|im_start|>assistant\n` }, greedy));
    expect(chat).toBe(raw);
    expect(model.countTokens(PROMPT)).toBe(Buffer.byteLength(PROMPT));
  });

  it('stops early when the signal aborts, and when the consumer stops reading', async () => {
    const ctl = new AbortController();
    let pieces = 0;
    for await (const _ of model.stream({ text: PROMPT }, { ...greedy, maxNewTokens: 200 }, ctl.signal)) {
      if (++pieces === 3) ctl.abort();
    }
    expect(pieces).toBeLessThanOrEqual(5);
    for await (const _ of model.stream({ text: PROMPT }, { ...greedy, maxNewTokens: 200 })) break; // must not hang
  });

  it('rejects empty and over-long prompts with BAD_INPUT', async () => {
    await expect(collect(model.stream({ text: '' }, greedy))).rejects.toMatchObject({ code: 'BAD_INPUT' });
    await expect(collect(model.stream({ text: 'x'.repeat(100_000) }, greedy))).rejects.toMatchObject({ code: 'BAD_INPUT' });
  });

  it('runs base + LoRA adapter, which changes the text; a mismatched adapter is ADAPTER_MISMATCH', async () => {
    const adapterDir = join(root, 'adapter');
    const cfg = (await compileModel({ modelDir, cacheDir })).config;
    writeRandomAdapter(adapterDir, cfg, { r: 4, alpha: 16, targets: ['q_proj', 'v_proj', 'down_proj'], seed: 9 });
    const withAdapter = await loadModel({ modelDir, adapterDir, cacheDir, device: 'cpu' });
    try {
      expect(withAdapter.info.adapterDir).toBe(adapterDir);
      expect(await collect(withAdapter.stream({ text: PROMPT }, greedy))).not.toBe(await collect(model.stream({ text: PROMPT }, greedy)));
    } finally {
      await withAdapter.dispose();
    }
    const otherDir = join(root, 'other-adapter');
    writeRandomAdapter(otherDir, { ...cfg, hiddenSize: 64 }, { r: 4, alpha: 16, targets: ['q_proj'], seed: 9 });
    const err = await loadModel({ modelDir, adapterDir: otherDir, cacheDir }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MorrisError);
    expect((err as MorrisError).code).toBe('ADAPTER_MISMATCH');
    expect((err as MorrisError).message).toMatch(/q_proj/);
  });

  it('missing model files are MODEL_MISSING with a hint', async () => {
    const err = await loadModel({ modelDir: join(root, 'nope'), cacheDir }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'MODEL_MISSING' });
    expect((err as MorrisError).hint).toBeTruthy();
    const noWeights = join(root, 'no-weights');
    writeRandomCheckpoint(noWeights, { config, seed: 1 }, { tokenizer: true });
    rmSync(join(noWeights, 'model.safetensors'));
    await expect(loadModel({ modelDir: noWeights, cacheDir })).rejects.toMatchObject({ code: 'MODEL_MISSING' });
  });

  it('a corrupt safetensors header is MODEL_INVALID', async () => {
    const bad = join(root, 'corrupt');
    writeRandomCheckpoint(bad, { config, seed: 1 }, { tokenizer: true });
    const header = Buffer.alloc(8 + 20);
    header.writeBigUInt64LE(20n);
    header.write('{"a": {"dtype": "F3', 8);
    writeFileSync(join(bad, 'model.safetensors'), header);
    await expect(loadModel({ modelDir: bad, cacheDir })).rejects.toMatchObject({ code: 'MODEL_INVALID' });
  });
});
