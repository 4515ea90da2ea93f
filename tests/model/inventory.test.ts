import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { formatBytes, listModels, serveMemory, trainMemory, type ModelDims } from '../../src/model/checkpoint/inventory.ts';
import { initTinyModel } from '../../src/model/tiny/index.ts';

const root = mkdtempSync(join(tmpdir(), 'morris-inv-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** SmolLM2-135M, whose memory use FACTS.md records from a measured prototype. */
const SMOL: ModelDims = { layers: 30, hidden: 576, intermediate: 1536, heads: 9, kvHeads: 3, headDim: 64, vocab: 49152, maxPositions: 8192 };
const SMOL_PARAMS = 134_515_008;
const SMOL_LINEAR = 30 * (576 * 576 * 2 + 576 * 192 * 2 + 3 * 576 * 1536);

describe('memory estimates', () => {
  it('training estimate matches the measured SmolLM2-135M LoRA prototype (2.59 GB at seq 512, r=16) within 10%', () => {
    const est = trainMemory(SMOL, SMOL_PARAMS, { trainSeqLen: 512, loraRank: 16 });
    expect(Math.abs(est - 2.59e9) / 2.59e9).toBeLessThan(0.1);
  });

  it('serving estimate matches the measured decode RSS (~750 MiB, short context) within 20%', () => {
    const est = serveMemory(SMOL, SMOL_PARAMS, SMOL_LINEAR, { contextTokens: 128, quant: 'fp32', nativeDecode: false });
    expect(Math.abs(est - 750 * 2 ** 20) / (750 * 2 ** 20)).toBeLessThan(0.2);
  });

  it('with the native decode kernel, matches the measured peak RSS of bench:generate (1469 MB, 151 tokens) within 20%', () => {
    const est = serveMemory(SMOL, SMOL_PARAMS, SMOL_LINEAR, { contextTokens: 151, quant: 'fp32' });
    expect(Math.abs(est - 1469e6) / 1469e6).toBeLessThan(0.2);
  });

  it('grows with context and shrinks with quantization', () => {
    const fp32 = serveMemory(SMOL, SMOL_PARAMS, SMOL_LINEAR, { contextTokens: 2048, quant: 'fp32', nativeDecode: false });
    const int8 = serveMemory(SMOL, SMOL_PARAMS, SMOL_LINEAR, { contextTokens: 2048, quant: 'int8', nativeDecode: false });
    const int4 = serveMemory(SMOL, SMOL_PARAMS, SMOL_LINEAR, { contextTokens: 2048, quant: 'int4', nativeDecode: false });
    expect(fp32).toBeGreaterThan(int8);
    expect(int8).toBeGreaterThan(int4);
    // Linear weights: 4 bytes → 1 + 4/32 bytes per value.
    expect(fp32 - int8).toBeCloseTo(SMOL_LINEAR * (4 - 1 - 4 / 32), -3);
    expect(serveMemory(SMOL, SMOL_PARAMS, SMOL_LINEAR, { contextTokens: 4096, quant: 'fp32', nativeDecode: false })).toBeGreaterThan(fp32);
    // the native kernel's view of the weights comes on top
    expect(serveMemory(SMOL, SMOL_PARAMS, SMOL_LINEAR, { contextTokens: 2048, quant: 'fp32' }) - fp32).toBeCloseTo(SMOL_PARAMS * 4, -3);
    expect(trainMemory(SMOL, SMOL_PARAMS, { trainSeqLen: 1024, loraRank: 16 })).toBeGreaterThan(trainMemory(SMOL, SMOL_PARAMS, { trainSeqLen: 512, loraRank: 16 }));
  });
});

describe('listModels', () => {
  it('lists checkpoints with architecture, parameters, dtype, size and memory; skips adapters; reports broken folders', () => {
    const models = join(root, 'models');
    const llama = initTinyModel(join(models, 'tiny-llama'), { arch: 'llama', seed: 1 });
    initTinyModel(join(models, 'org', 'tiny-qwen'), { arch: 'qwen2', seed: 2, dtype: 'BF16' });
    initTinyModel(join(models, 'adapters', 'not-a-base'), { arch: 'llama', seed: 3 });
    mkdirSync(join(models, 'broken'));
    writeFileSync(join(models, 'broken', 'config.json'), '{"model_type":"llama"}');
    const { models: found, broken } = listModels(models, { contextTokens: 256 });
    expect(found.map((m) => m.name)).toEqual(['tiny-qwen', 'tiny-llama']);
    const l = found.find((m) => m.name === 'tiny-llama')!;
    expect(l).toMatchObject({ architecture: 'llama (LlamaForCausalLM)', parameters: llama.parameters, dtype: 'F32', weightBytes: llama.parameters * 4 });
    expect(l.sizeOnDisk).toBeGreaterThan(l.weightBytes);
    const q = found.find((m) => m.name === 'tiny-qwen')!;
    expect(q).toMatchObject({ architecture: 'qwen2 (Qwen2ForCausalLM)', dtype: 'BF16' });
    expect(q.weightBytes).toBe(q.parameters * 2);
    // bf16 weights are cast to fp32 at load, so serving costs the same per parameter.
    const d = l.dims;
    const linear = d.layers * (2 * d.hidden * d.hidden + 2 * d.hidden * d.kvHeads * d.headDim + 3 * d.hidden * d.intermediate);
    expect(l.serveBytes).toBe(serveMemory(d, l.parameters, linear, { contextTokens: 256, quant: 'fp32' }));
    expect(l.trainBytes).toBeGreaterThan(l.parameters * 4);
    expect(broken).toHaveLength(1);
    expect(broken[0]!.name).toBe('broken');
    expect(listModels(join(root, 'nope')).models).toEqual([]);
  });

  it('formats sizes for people', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(3 * 2 ** 30)).toBe('3.0 GiB');
  });
});
