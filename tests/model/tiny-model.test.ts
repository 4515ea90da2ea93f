import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AutoTokenizer, env } from '@huggingface/transformers';
import { initTinyModel, CHATML_TEMPLATE } from '../../src/model/tiny/index.ts';
import { trainByteLevelBpe, toByteLevel, BYTE_TO_CHAR } from '../../src/model/tiny/bpe.ts';
import { readSafetensorsHeader } from '../../src/model/checkpoint/safetensors.ts';

env.allowRemoteModels = false;
const root = mkdtempSync(join(tmpdir(), 'morris-tiny-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function tokenizerFor(dir: string) {
  env.localModelPath = '/';
  return AutoTokenizer.from_pretrained(dir);
}

describe('byte-level BPE trainer', () => {
  it('maps all 256 bytes to distinct printable characters (GPT-2 table)', () => {
    expect(new Set(BYTE_TO_CHAR).size).toBe(256);
    expect(toByteLevel(' a')).toBe('Ġa');
    expect(toByteLevel('\n')).toBe('Ċ');
  });

  it('learns the most frequent pair first and is a pure function of the text', () => {
    const text = 'low low low lower lowest newer newer';
    const a = trainByteLevelBpe(text, 5);
    const b = trainByteLevelBpe(text, 5);
    expect(a).toEqual(b);
    // "lo" and "ow" occur 5 times each (in low×3, lower, lowest); "Ġl"... Count: the top pair must occur ≥ every other.
    const first = a.merges[0]!.join('');
    const count = (s: string) => [...text.matchAll(/'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu)]
      .map((m) => toByteLevel(m[0])).reduce((n, w) => n + (w.split(s).length - 1), 0);
    for (const pair of ['lo', 'ow', 'ne', 'we', 'er', 'Ġl', 'Ġn']) expect(count(first)).toBeGreaterThanOrEqual(count(pair));
    expect(a.tokens.length).toBe(256 + 5);
  });

  it('fails clearly when the text cannot supply the requested merges', () => {
    expect(() => trainByteLevelBpe('ab', 3)).toThrow(/too small/);
  });
});

describe('initTinyModel', () => {
  it('writes the Hub layout, deterministic from the seed', () => {
    const a = join(root, 'a');
    const b = join(root, 'b');
    const c = join(root, 'c');
    const info = initTinyModel(a, { arch: 'llama', seed: 7 });
    initTinyModel(b, { arch: 'llama', seed: 7 });
    initTinyModel(c, { arch: 'llama', seed: 8 });
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json', 'special_tokens_map.json']) {
      expect(readFileSync(join(a, f))).toEqual(readFileSync(join(b, f)));
    }
    expect(readFileSync(join(a, 'model.safetensors')).equals(readFileSync(join(c, 'model.safetensors')))).toBe(false);
    const cfg = JSON.parse(readFileSync(join(a, 'config.json'), 'utf8'));
    expect(cfg).toMatchObject({ model_type: 'llama', hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 1024, tie_word_embeddings: false });
    const header = readSafetensorsHeader(join(a, 'model.safetensors'));
    expect(header.tensors.get('lm_head.weight')?.shape).toEqual([1024, 64]);
    expect(header.tensors.get('model.layers.1.self_attn.k_proj.weight')?.shape).toEqual([32, 64]);
    const counted = [...header.tensors.values()].reduce((n, t) => n + t.shape.reduce((x, y) => x * y, 1), 0);
    expect(counted).toBe(info.parameters);
    expect(JSON.parse(readFileSync(join(a, 'tokenizer_config.json'), 'utf8')).chat_template).toBe(CHATML_TEMPLATE);
  });

  it('qwen2 variant has q/k/v biases and tied embeddings; bf16 weights are stored as BF16', () => {
    const d = join(root, 'q');
    initTinyModel(d, { arch: 'qwen2', seed: 1, dtype: 'BF16' });
    const cfg = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
    expect(cfg).toMatchObject({ model_type: 'qwen2', tie_word_embeddings: true, torch_dtype: 'bfloat16' });
    const t = readSafetensorsHeader(join(d, 'model.safetensors')).tensors;
    expect(t.get('model.layers.0.self_attn.q_proj.bias')?.shape).toEqual([64]);
    expect(t.get('model.layers.0.self_attn.v_proj.bias')?.shape).toEqual([32]);
    expect(t.has('lm_head.weight')).toBe(false);
    expect(t.get('model.embed_tokens.weight')?.dtype).toBe('BF16');
  });

  it('rejects an unknown architecture', () => {
    expect(() => initTinyModel(join(root, 'x'), { arch: 'gpt2' as never })).toThrow(/Unknown tiny architecture/);
  });
});

describe('the tokenizer loads in transformers.js', () => {
  const dir = join(root, 'tok');
  initTinyModel(dir, { arch: 'llama', seed: 3 });

  it('round-trips unicode text exactly', async () => {
    const tok = await tokenizerFor(dir);
    for (const s of ['Naïve café — 日本語 🎉 emoji 👩‍👩‍👧', "It's 7.42 on a wet platform.\n\n\tIndented  twice", ' leading space', 'ÿ\u0000\u0001 control']) {
      const ids = tok.encode(s, { add_special_tokens: false });
      expect(tok.decode(ids)).toBe(s);
    }
    // The vocabulary is ~1k tokens and merges compress common English.
    const english = 'The morning train was late again, and nobody on the platform seemed surprised.';
    expect(tok.encode(english).length).toBeLessThan(english.length / 2.5);
  });

  it('treats ChatML markers as single special tokens and renders the chat template', async () => {
    const tok = await tokenizerFor(dir);
    const text = tok.apply_chat_template(
      [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Trains?' }],
      { tokenize: false, add_generation_prompt: true },
    );
    expect(text).toBe('<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nTrains?<|im_end|>\n<|im_start|>assistant\n');
    const ids = tok.encode(text as string, { add_special_tokens: false });
    expect(ids.filter((i: number) => i === 1022)).toHaveLength(3);
    expect(ids.filter((i: number) => i === 1023)).toHaveLength(2);
    expect(tok.decode(ids, { skip_special_tokens: true })).toBe('system\nBe brief.\nuser\nTrains?\nassistant\n');
  });
});
