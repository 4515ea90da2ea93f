import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { compileModel } from '../../src/model/graph/compile.ts';
import { GraphBuilder } from '../../src/model/graph/builder.ts';
import { mergeAdapter } from '../../src/model/checkpoint/merge.ts';
import { createSession, float32Tensor } from '../../src/model/inference/runtime.ts';
import { quantizeMatrix } from '../../src/model/checkpoint/quant.ts';
import { dequantizeMatrix } from './dequantize.ts';
import { mulberry32, randomMatrix, writeRandomAdapter, writeRandomCheckpoint } from '../../src/model/checkpoint/random-checkpoint.ts';
import { fullLogits, relError } from './graph-helpers.ts';

const root = mkdtempSync(join(tmpdir(), 'morris-quant-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const config = { model_type: 'llama', hidden_size: 64, intermediate_size: 96, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 128, max_position_embeddings: 64, tie_word_embeddings: false };
const IDS = [3, 99, 14, 15, 92, 65, 35, 89];

/** Logits of a compiled model; the session is released at once (native memory, not GC'd soon). */
async function logitsOf(model: string, cfg: Parameters<typeof fullLogits>[1], ids: readonly number[]) {
  const { session } = await createSession(model);
  try {
    return await fullLogits(session, cfg, ids);
  } finally {
    await session.release();
  }
}

describe('weight-only quantization', () => {
  for (const bits of [8, 4] as const) {
    it(`int${bits}: codes round-trip within half a step, and MatMulNBits computes x·dequant(W)ᵀ`, async () => {
      const [N, K] = [24, 80]; // K not a multiple of the block: exercises padding
      const w = randomMatrix(mulberry32(bits), N * K, 1);
      const q = quantizeMatrix(w, N, K, bits);
      const dq = dequantizeMatrix(q, N, K, bits);
      for (let i = 0; i < w.length; i++) expect(Math.abs(w[i]! - dq[i]!)).toBeLessThanOrEqual(q.scales[Math.floor(i / K) * q.nBlocks + Math.floor((i % K) / 32)]! / 2 + 1e-6);

      const g = new GraphBuilder();
      const x = g.input('x', 'float32', [2, K]);
      const B = g.constant(q.packed, 'uint8', [N, q.nBlocks, (32 * bits) / 8]);
      const s = g.constant(q.scales, 'float32', [N * q.nBlocks]);
      const zp = g.constant(q.zeroPoints, 'uint8', [q.zeroPoints.length]);
      g.output(g.op('MatMulNBits', [x, B, s, zp], { K, N, bits, block_size: 32 }), 'y');
      const { session } = await createSession(g.serialize());
      const xs = randomMatrix(mulberry32(5), 2 * K, 1);
      const y = (await session.run({ x: float32Tensor(xs, [2, K]) }))['y']!.data as Float32Array;
      await session.release();
      const expected = [0, 1].map((r) => Array.from({ length: N }, (_, n) => dq.subarray(n * K, (n + 1) * K).reduce((acc, v, k) => acc + v * xs[r * K + k]!, 0)));
      expect(relError([y.subarray(0, N), y.subarray(N)], expected)).toBeLessThan(1e-4);
    });
  }

  it('int8 and int4 models stay close to fp32 logits (int8 closer)', async () => {
    const modelDir = join(root, 'm');
    const cfg = writeRandomCheckpoint(modelDir, { config, seed: 3, std: 0.1 });
    const errs: Record<string, number> = {};
    const fp32 = await logitsOf((await compileModel({ modelDir, cacheDir: join(root, 'c') })).onnxFile, cfg, IDS);
    for (const quant of ['int8', 'int4'] as const) {
      const c = await compileModel({ modelDir, quant, cacheDir: join(root, 'c') });
      errs[quant] = relError(await logitsOf(c.onnxFile, cfg, IDS), fp32);
    }
    expect(errs['int8']!).toBeLessThan(0.02);
    expect(errs['int4']!).toBeLessThan(0.2);
    expect(errs['int8']!).toBeLessThan(errs['int4']!);
  });

  it('quantizing yields to the event loop (a bot stays responsive while a model is prepared)', async () => {
    const modelDir = join(root, 'm');
    const order: string[] = [];
    setImmediate(() => order.push('tick'));
    await compileModel({ modelDir, quant: 'int4', cacheDir: join(root, 'fresh') }).then(() => order.push('done'));
    expect(order).toEqual(['tick', 'done']);
  });
});

describe('mergeAdapter', () => {
  it('writes a standalone checkpoint whose logits equal base + adapter', async () => {
    const modelDir = join(root, 'base');
    const cfg = writeRandomCheckpoint(modelDir, { config, seed: 11, dtype: 'F32' });
    const adapterDir = join(root, 'adapter');
    writeRandomAdapter(adapterDir, cfg, { r: 4, alpha: 8, targets: ['q_proj', 'o_proj', 'up_proj'], seed: 2 });
    const outDir = join(root, 'merged');
    expect(mergeAdapter(modelDir, adapterDir, outDir).mergedTensors).toBe(3 * cfg.numLayers);
    const withAdapter = await logitsOf((await compileModel({ modelDir, adapterDir, cacheDir: join(root, 'c') })).onnxFile, cfg, IDS);
    const merged = await logitsOf((await compileModel({ modelDir: outDir, cacheDir: join(root, 'c') })).onnxFile, cfg, IDS);
    const base = await logitsOf((await compileModel({ modelDir, cacheDir: join(root, 'c') })).onnxFile, cfg, IDS);
    expect(relError(merged, withAdapter)).toBeLessThan(1e-5);
    // the LoRA side path stays fp32 next to quantized base weights
    const int8Adapter = await logitsOf((await compileModel({ modelDir, adapterDir, quant: 'int8', cacheDir: join(root, 'c') })).onnxFile, cfg, IDS);
    expect(relError(int8Adapter, withAdapter)).toBeLessThan(0.02);
    expect(relError(int8Adapter, base)).toBeGreaterThan(relError(int8Adapter, withAdapter));
    // quantized base weights are computed once and shared (hard link) by base and adapter variants
    const int8Base = await compileModel({ modelDir, quant: 'int8', cacheDir: join(root, 'c') });
    const int8WithAdapter = await compileModel({ modelDir, adapterDir, quant: 'int8', cacheDir: join(root, 'c') });
    expect(statSync(join(int8Base.dir, 'onnx', 'quant.bin')).ino).toBe(statSync(join(int8WithAdapter.dir, 'onnx', 'quant.bin')).ino);
    expect(relError(base, withAdapter)).toBeGreaterThan(1e-3);
    expect(() => mergeAdapter(modelDir, adapterDir, modelDir)).toThrow(/new folder/);
  });
});

describe('compile cache', () => {
  it('reuses an up-to-date compiled folder, links weights instead of copying, and recompiles when the adapter is rewritten', async () => {
    const modelDir = join(root, 'cache-base');
    const cfg = writeRandomCheckpoint(modelDir, { config, seed: 21 });
    const adapterDir = join(root, 'cache-adapter');
    writeRandomAdapter(adapterDir, cfg, { r: 2, alpha: 4, targets: ['v_proj'], seed: 1 });
    const first = await compileModel({ modelDir, adapterDir, cacheDir: join(root, 'c2') });
    expect(first.built).toBe(true);
    expect(statSync(join(first.dir, 'onnx', 'base', 'model.safetensors')).ino).toBe(statSync(join(modelDir, 'model.safetensors')).ino);
    expect(statSync(join(first.dir, 'onnx', 'model.onnx')).size).toBeLessThan(50_000); // weights stay outside
    expect((await compileModel({ modelDir, adapterDir, cacheDir: join(root, 'c2') })).built).toBe(false);
    const before = await logitsOf(first.onnxFile, cfg, IDS);
    writeRandomAdapter(adapterDir, cfg, { r: 2, alpha: 4, targets: ['v_proj'], seed: 2 }); // written by rename: new inode
    const second = await compileModel({ modelDir, adapterDir, cacheDir: join(root, 'c2') });
    expect(second.built).toBe(true);
    const after = await logitsOf(second.onnxFile, cfg, IDS);
    expect(relError(after, before)).toBeGreaterThan(1e-4);
  });

  it('a torn quantized-weights index is quantized again, not trusted', async () => {
    const modelDir = join(root, 'torn-base');
    const cfg = writeRandomCheckpoint(modelDir, { config, seed: 31 });
    const adapterDir = join(root, 'torn-adapter');
    writeRandomAdapter(adapterDir, cfg, { r: 2, alpha: 4, targets: ['q_proj'], seed: 3 });
    const base = await compileModel({ modelDir, quant: 'int8', cacheDir: join(root, 'c3') });
    const index = join(dirname(base.dir), 'weights-int8', 'quant.json');
    writeFileSync(index, '{"key": "'); // as a crash mid-write would leave it
    const withAdapter = await compileModel({ modelDir, adapterDir, quant: 'int8', cacheDir: join(root, 'c3') });
    expect(withAdapter.built).toBe(true);
    const fresh = await compileModel({ modelDir, adapterDir, quant: 'int8', cacheDir: join(root, 'c4') });
    expect(relError(await logitsOf(withAdapter.onnxFile, cfg, IDS), await logitsOf(fresh.onnxFile, cfg, IDS))).toBe(0);
    expect(existsSync(`${dirname(index)}.tmp-${process.pid}`)).toBe(false);
  });
});
