import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openCheckpoint, parseDecoderConfig, readDecoderConfig, ropeInvFreq } from '../../src/model/checkpoint/config.ts';
import { GraphBuilder } from '../../src/model/graph/builder.ts';
import { createSession, float32Tensor, listProviders, providerCandidates } from '../../src/model/inference/runtime.ts';
import { writeRandomCheckpoint } from '../../src/model/checkpoint/random-checkpoint.ts';

const root = mkdtempSync(join(tmpdir(), 'morris-ckpt-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const llama = { model_type: 'llama', hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 8, vocab_size: 100 };

describe('DecoderConfig', () => {
  it('normalizes llama/mistral/qwen2 configs (GQA default, head_dim, biases, eos list) and freezes them', () => {
    const c = parseDecoderConfig({ ...llama, num_key_value_heads: 2, eos_token_id: [2, 7], torch_dtype: 'bfloat16' });
    expect(c).toMatchObject({ numKvHeads: 2, headDim: 8, qkvBias: false, tieWordEmbeddings: false, eosTokenIds: [2, 7], torchDtype: 'bfloat16', rmsNormEps: 1e-6 });
    expect(Object.isFrozen(c)).toBe(true);
    expect(parseDecoderConfig({ ...llama, model_type: 'qwen2' })).toMatchObject({ qkvBias: true, oBias: false, numKvHeads: 8 });
    expect(parseDecoderConfig({ ...llama, model_type: 'mistral', sliding_window: 4096 }).slidingWindow).toBe(4096);
    expect(parseDecoderConfig({ ...llama, attention_bias: true })).toMatchObject({ qkvBias: true, oBias: true });
  });

  it('applies llama3 and linear RoPE scaling to the inverse frequencies', () => {
    const plain = ropeInvFreq(parseDecoderConfig({ ...llama, rope_theta: 10000 }));
    const linear = ropeInvFreq(parseDecoderConfig({ ...llama, rope_scaling: { type: 'linear', factor: 4 } }));
    linear.forEach((f, i) => expect(f).toBeCloseTo(plain[i]! / 4, 12));
    const l3 = ropeInvFreq(parseDecoderConfig({ ...llama, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 } }));
    expect(l3[0]).toBe(plain[0]); // short wavelength: unchanged
    expect(l3[3]).toBeCloseTo(plain[3]! / 8, 12); // long wavelength: divided by factor
  });

  it('rejects unsupported architectures and fields with MODEL_UNSUPPORTED naming them', () => {
    expect(() => parseDecoderConfig({ ...llama, model_type: 'gpt2' })).toThrow(/model_type "gpt2"/);
    expect(() => parseDecoderConfig({ ...llama, hidden_act: 'gelu' })).toThrow(/hidden_act gelu/);
    expect(() => parseDecoderConfig({ ...llama, rope_scaling: { rope_type: 'yarn', factor: 2 } })).toThrow(/rope_scaling type yarn/);
    expect(() => parseDecoderConfig({ ...llama, quantization_config: {} })).toThrow(expect.objectContaining({ code: 'MODEL_UNSUPPORTED' }));
    expect(() => parseDecoderConfig({ ...llama, num_key_value_heads: 3 })).toThrow(expect.objectContaining({ code: 'MODEL_INVALID' }));
    expect(() => parseDecoderConfig({ ...llama, hidden_size: 'big' })).toThrow(/hidden_size must be a number/);
  });

  it('missing folders and files are MODEL_MISSING with a hint; weights that do not match config are MODEL_INVALID', () => {
    expect(() => readDecoderConfig(join(root, 'nothing'))).toThrow(expect.objectContaining({ code: 'MODEL_MISSING', hint: expect.stringContaining('init-tiny') }));
    const dir = join(root, 'm');
    writeRandomCheckpoint(dir, { config: { ...llama, num_key_value_heads: 4 }, seed: 1 });
    expect(openCheckpoint(dir).config.numLayers).toBe(2);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...llama, num_key_value_heads: 2 }));
    expect(() => openCheckpoint(dir)).toThrow(/k_proj.weight has shape \[32, 64\], config.json implies \[16, 64\]/);
    writeFileSync(join(dir, 'config.json'), '{oops');
    expect(() => readDecoderConfig(dir)).toThrow(expect.objectContaining({ code: 'MODEL_INVALID' }));
  });
});

describe('execution providers', () => {
  it('always lists CPU as usable; auto tries usable providers ending with CPU; explicit choices fall back to CPU', () => {
    const ps = listProviders();
    expect(ps.find((p) => p.name === 'cpu')).toMatchObject({ usable: true });
    expect(providerCandidates('auto').at(-1)).toBe('cpu');
    expect(providerCandidates('cuda')).toEqual(['cuda', 'cpu']);
    expect(() => providerCandidates('tpu' as never)).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });

  it('a provider that cannot start falls back to CPU (with a warning) instead of failing', async () => {
    const g = new GraphBuilder();
    g.output(g.op('Sqrt', [g.input('a', 'float32', [2])]), 'r');
    const cudaUsable = listProviders().find((p) => p.name === 'cuda')?.usable === true;
    const { session, device } = await createSession(g.serialize(), { device: 'cuda' });
    expect(device).toBe(cudaUsable ? 'cuda' : 'cpu');
    expect(Array.from((await session.run({ a: float32Tensor(Float32Array.of(4, 9), [2]) }))['r']!.data as Float32Array)).toEqual([2, 3]);
  });
});
