import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openCheckpoint } from '../../src/model/checkpoint/config.ts';
import { compileModel } from '../../src/model/graph/compile.ts';
import { buildInferenceGraph, externalWeights, type LoraModule } from '../../src/model/graph/llama.ts';
import { readAdapter } from '../../src/model/checkpoint/lora.ts';
import { createSession, int64Tensor, Tensor, type OrtTensor } from '../../src/model/inference/runtime.ts';
import { writeRandomAdapter, writeRandomCheckpoint } from '../../src/model/checkpoint/random-checkpoint.ts';
import { referenceForward, referenceWeights } from './reference-forward.ts';
import { readSafetensorsHeader } from '../../src/model/checkpoint/safetensors.ts';
import { cachedLogits, fullLogits, relError } from './graph-helpers.ts';

const root = mkdtempSync(join(tmpdir(), 'morris-graph-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const base = { hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2, vocab_size: 64, max_position_embeddings: 64, rms_norm_eps: 1e-5 };

const VARIANTS: { name: string; dtype: 'F32' | 'F16' | 'BF16'; config: Record<string, unknown>; targets: LoraModule[] }[] = [
  { name: 'llama GQA tied fp32', dtype: 'F32', targets: ['q_proj', 'v_proj'], config: { ...base, model_type: 'llama', num_attention_heads: 4, num_key_value_heads: 2, tie_word_embeddings: true } },
  {
    name: 'llama untied, llama3 rope scaling, attention+mlp bias, bf16',
    dtype: 'BF16',
    targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
    config: {
      ...base, model_type: 'llama', num_attention_heads: 4, num_key_value_heads: 4, tie_word_embeddings: false, attention_bias: true, mlp_bias: true, rope_theta: 10000,
      rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 },
    },
  },
  {
    name: 'qwen2 q/k/v bias, MQA, head_dim 12, linear rope scaling, fp16',
    dtype: 'F16',
    targets: ['k_proj', 'o_proj', 'down_proj'],
    config: { ...base, model_type: 'qwen2', num_attention_heads: 4, num_key_value_heads: 1, head_dim: 12, tie_word_embeddings: false, rope_theta: 1e6, rope_scaling: { type: 'linear', factor: 2 } },
  },
  { name: 'mistral sliding window 3', dtype: 'F32', targets: ['gate_proj', 'up_proj'], config: { ...base, model_type: 'mistral', num_attention_heads: 4, num_key_value_heads: 2, sliding_window: 3 } },
];

const IDS = [5, 17, 3, 60, 42, 8, 8, 31, 0];

describe('Llama-family graph vs reference forward', () => {
  VARIANTS.forEach((v, k) => {
    it(`${v.name}: logits match the reference, with and without adapter; cached decode equals full`, async () => {
      const modelDir = join(root, `m${k}`);
      const cfg = writeRandomCheckpoint(modelDir, { config: v.config, seed: 100 + k, dtype: v.dtype });
      const ckpt = openCheckpoint(modelDir);
      const ref = referenceForward(cfg, referenceWeights(ckpt.tensors), IDS);

      const plain = await compileModel({ modelDir, cacheDir: join(root, 'cache') });
      const { session } = await createSession(plain.onnxFile);
      const full = await fullLogits(session, cfg, IDS);
      expect(relError(full, ref)).toBeLessThan(1e-4);
      const cached = await cachedLogits(session, cfg, IDS, 4);
      expect(relError(cached, full.slice(3))).toBeLessThan(1e-5);

      const adapterDir = join(root, `a${k}`);
      writeRandomAdapter(adapterDir, cfg, { r: 4, alpha: 8, targets: v.targets, seed: 7 + k });
      const adapter = readAdapter(adapterDir, cfg);
      const refLora = referenceForward(cfg, referenceWeights(ckpt.tensors), IDS, { adapter, weights: referenceWeights(readSafetensorsHeader(adapter.file).tensors) });
      expect(relError(refLora, ref)).toBeGreaterThan(1e-3); // the adapter really changes the output
      const withLora = await compileModel({ modelDir, adapterDir, cacheDir: join(root, 'cache') });
      const s2 = (await createSession(withLora.onnxFile)).session;
      const fullLora = await fullLogits(s2, cfg, IDS);
      expect(relError(fullLora, refLora)).toBeLessThan(1e-4);
      expect(relError(await cachedLogits(s2, cfg, IDS, 2), fullLora.slice(1))).toBeLessThan(1e-5);
      await session.release();
      await s2.release();
    });
  });
});

describe('batched decoding with left padding', () => {
  it('each row of a left-padded batch equals that sequence run alone (prefill and one cached step)', async () => {
    const modelDir = join(root, 'batch');
    const cfg = writeRandomCheckpoint(modelDir, { config: VARIANTS[0]!.config, seed: 77 });
    const { session } = await createSession((await compileModel({ modelDir, cacheDir: join(root, 'cache') })).onnxFile);
    const a = [5, 17, 3, 60, 42];
    const b = [9, 1, 33];
    const pad = a.length - b.length;
    const ids = [...a, ...Array(pad).fill(0), ...b];
    const mask = [...a.map(() => 1), ...Array(pad).fill(0), ...b.map(() => 1)];
    const pos = [...a.map((_, i) => i), ...Array(pad).fill(1), ...b.map((_, i) => i)]; // as transformers.js: pads get 1
    const empty: Record<string, OrtTensor> = {};
    for (let l = 0; l < cfg.numLayers; l++) for (const k of ['key', 'value']) empty[`past_key_values.${l}.${k}`] = new Tensor('float32', new Float32Array(0), [2, cfg.numKvHeads, 0, cfg.headDim]);
    const out = await session.run({
      input_ids: int64Tensor(ids, [2, a.length]), attention_mask: int64Tensor(mask, [2, a.length]), position_ids: int64Tensor(pos, [2, a.length]),
      num_logits_to_keep: int64Tensor([1], []), ...empty,
    });
    const V = cfg.vocabSize;
    const logits = out['logits']!.data as Float32Array;
    const aloneA = (await fullLogits(session, cfg, a)).at(-1)!;
    const aloneB = (await fullLogits(session, cfg, b)).at(-1)!;
    expect(relError([logits.subarray(0, V)], [aloneA])).toBeLessThan(1e-5);
    expect(relError([logits.subarray(V, 2 * V)], [aloneB])).toBeLessThan(1e-5);
    // one cached step with the next token of each row
    const past: Record<string, OrtTensor> = {};
    for (let l = 0; l < cfg.numLayers; l++) for (const k of ['key', 'value']) past[`past_key_values.${l}.${k}`] = out[`present.${l}.${k}`]!;
    const step = await session.run({
      input_ids: int64Tensor([7, 7], [2, 1]), attention_mask: int64Tensor([...mask.slice(0, a.length), 1, ...mask.slice(a.length), 1], [2, a.length + 1]),
      position_ids: int64Tensor([a.length, b.length], [2, 1]), num_logits_to_keep: int64Tensor([1], []), ...past,
    });
    const s = step['logits']!.data as Float32Array;
    expect(relError([s.subarray(0, V)], [(await fullLogits(session, cfg, [...a, 7])).at(-1)!])).toBeLessThan(1e-5);
    expect(relError([s.subarray(V, 2 * V)], [(await fullLogits(session, cfg, [...b, 7])).at(-1)!])).toBeLessThan(1e-5);
    await session.release();
  });
});

describe('RoPE paths', () => {
  it('the op-chain RoPE (used by the training graph) equals the fused RotaryEmbedding and the reference', async () => {
    const v = VARIANTS[1]!; // llama3 scaling
    const modelDir = join(root, 'rope');
    const cfg = writeRandomCheckpoint(modelDir, { config: v.config, seed: 5, dtype: v.dtype });
    const compiled = await compileModel({ modelDir, cacheDir: join(root, 'cache') });
    const ckpt = openCheckpoint(modelDir);
    const g = buildInferenceGraph(cfg, (gb) => ({ weights: externalWeights(gb, ckpt.tensors, (f) => `base/${basename(f)}`), fusedRope: false }));
    expect(g.nodes.some((n) => n.opType === 'RotaryEmbedding')).toBe(false);
    const unfusedFile = join(compiled.dir, 'onnx', 'unfused.onnx');
    writeFileSync(unfusedFile, g.serialize());
    const fused = await fullLogits((await createSession(compiled.onnxFile)).session, cfg, IDS);
    const unfused = await fullLogits((await createSession(unfusedFile)).session, cfg, IDS);
    expect(relError(unfused, fused)).toBeLessThan(1e-5);
    expect(relError(unfused, referenceForward(cfg, referenceWeights(ckpt.tensors), IDS))).toBeLessThan(1e-4);
  });
});
