/**
 * The native int8/int4 decode (native/kernels-quant.c): it quantizes each matvec's activations to
 * int8 per QX_BLOCK and takes integer dot products with the MatMulNBits codes. Two references:
 * the same math in float64 (dequantized weights times the activations quantized as the kernel
 * does: tests/model/dequantize.ts), which it must match closely on every ISA, and the plain float64
 * forward on the dequantized weights, which it matches only up to the activation rounding.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { DecoderConfig } from '../../src/model/checkpoint/config.ts';
import { openCheckpoint } from '../../src/model/checkpoint/config.ts';
import { LORA_MODULES } from '../../src/model/graph/llama.ts';
import { readAdapter } from '../../src/model/checkpoint/lora.ts';
import { compileModel, type QuantizedIndex } from '../../src/model/graph/compile.ts';
import { nativeAddon } from '../../src/model/inference/native-addon.ts';
import { createNativeDecoder } from '../../src/model/inference/native-decoder.ts';
import { writeRandomAdapter, writeRandomCheckpoint } from '../../src/model/checkpoint/random-checkpoint.ts';
import { readSafetensorsHeader } from '../../src/model/checkpoint/safetensors.ts';
import { dequantizeMatrix, quantizeActivations } from './dequantize.ts';
import { referenceForward, referenceWeights, type ReferenceWeights } from './reference-forward.ts';
import { relError } from './graph-helpers.ts';
import { runWithIsaScript, teacherForced } from './native-helpers.ts';

const root = mkdtempSync(join(tmpdir(), 'morris-quant-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const IDS = [5, 17, 3, 60, 42, 8, 8, 31, 0, 66, 12, 50];
const QX_BLOCK = 32; // native/kernels.h

/**
 * odd: every row ends in a partial 64-byte chunk and a zero-padded block (hidden 40, inter 70);
 * wide: int4 rows long enough for the kernel's 16-block groups, plus a tail (hidden 544 = 17
 * blocks of 32, inter 1100 = 35 blocks, the last padded), and an odd LM head (vocab 67). One layer:
 * with two, a float32-vs-float64 difference of one ulp now and then moves an activation across a
 * rounding boundary, and from there every later quantization differs (measured: 6e-3 at 2 layers).
 */
const SHAPES = {
  odd: { hidden_size: 40, intermediate_size: 70, num_attention_heads: 4, num_key_value_heads: 2 },
  wide: { hidden_size: 544, intermediate_size: 1100, num_attention_heads: 4, num_key_value_heads: 2 },
} as const;

interface Fixture { modelDir: string; adapterDir: string; cfg: DecoderConfig; q: QuantizedIndex; cacheDir: string }
const fixtures = new Map<string, Fixture>();

async function fixture(shape: keyof typeof SHAPES, quant: 'int8' | 'int4'): Promise<Fixture> {
  const key = `${shape}-${quant}`;
  const have = fixtures.get(key);
  if (have) return have;
  const modelDir = join(root, `m-${shape}`);
  const adapterDir = join(root, `a-${shape}`);
  const config = { ...SHAPES[shape], model_type: 'llama', num_hidden_layers: shape === 'wide' ? 1 : 2, vocab_size: 67, max_position_embeddings: 64, rms_norm_eps: 1e-5, tie_word_embeddings: false };
  const cfg = writeRandomCheckpoint(modelDir, { config, seed: 77, dtype: 'F32' });
  writeRandomAdapter(adapterDir, cfg, { r: 5, alpha: 10, targets: LORA_MODULES, seed: 41 });
  const cacheDir = join(root, `c-${shape}`);
  const q = (await compileModel({ modelDir, quant, cacheDir })).quantized!;
  const f = { modelDir, adapterDir, cfg, q, cacheDir };
  fixtures.set(key, f);
  return f;
}

/** Reference weights where every quantized matrix is what its codes decode to; with `activations`,
 * those matrices also multiply the activations quantized as the kernel quantizes them. */
function dequantizedWeights(modelDir: string, q: QuantizedIndex, activations: boolean): ReferenceWeights {
  const base = referenceWeights(openCheckpoint(modelDir).tensors);
  const bytes = readFileSync(q.file);
  const view = (e: { offset: number; length: number }) => bytes.subarray(e.offset, e.offset + e.length);
  return {
    has: (n) => base.has(n),
    get(n) {
      const w = q.weights.get(n);
      if (!w) return base.get(n);
      const scales = view(w.scales);
      const m = { packed: view(w.packed), scales: new Float32Array(scales.buffer.slice(scales.byteOffset, scales.byteOffset + scales.byteLength)), zeroPoints: view(w.zeroPoints), nBlocks: w.nBlocks };
      return Float64Array.from(dequantizeMatrix(m, w.N, w.K, q.bits, q.blockSize));
    },
    input: activations ? (n, x) => (q.weights.has(n) ? quantizeActivations(x, QX_BLOCK) : x) : undefined,
  };
}

function addonOrFail() {
  const { addon, reason } = nativeAddon();
  if (!addon) throw new Error(`${reason}. The native decode tests need the kernel: run \`npm run build:native\`.`);
  return addon;
}

/** References without and with the adapter, for the same math (`activations`) or plain dequantized weights. */
function references(f: Fixture, activations: boolean): { plain: Float64Array[]; lora: Float64Array[] } {
  const w = dequantizedWeights(f.modelDir, f.q, activations);
  const adapter = readAdapter(f.adapterDir, f.cfg);
  return {
    plain: referenceForward(f.cfg, w, IDS),
    lora: referenceForward(f.cfg, w, IDS, { adapter, weights: referenceWeights(readSafetensorsHeader(adapter.file).tensors) }),
  };
}

// MORRIS_NATIVE_ISA is read once when the addon loads, so each ISA runs in its own process.
const childScript = `
  const { nativeAddon } = await import(${JSON.stringify(resolve('src/model/inference/native-addon.ts'))});
  const { createNativeDecoder } = await import(${JSON.stringify(resolve('src/model/inference/native-decoder.ts'))});
  const { openCheckpoint } = await import(${JSON.stringify(resolve('src/model/checkpoint/config.ts'))});
  const { readAdapter } = await import(${JSON.stringify(resolve('src/model/checkpoint/lora.ts'))});
  const { compileModel } = await import(${JSON.stringify(resolve('src/model/graph/compile.ts'))});
  const { teacherForced } = await import(${JSON.stringify(resolve('tests/model/native-helpers.ts'))});
  const [modelDir, adapterDir, cacheDir, quant, ids] = process.argv.slice(-5);
  const { addon, reason } = nativeAddon();
  if (!addon) throw new Error(reason);
  const cfg = openCheckpoint(modelDir).config;
  const q = (await compileModel({ modelDir, quant, cacheDir })).quantized;
  const decoder = createNativeDecoder(addon, cfg, modelDir, readAdapter(adapterDir, cfg), q);
  const logits = await teacherForced(decoder, cfg, JSON.parse(ids));
  process.stdout.write(JSON.stringify({ quantIsa: addon.kernelInfo().quantIsa, logits: logits.map((r) => Array.from(r)) }));
`;

function runWithIsa(isa: string, f: Fixture, quant: string): Promise<{ quantIsa: string; logits: number[][] }> {
  return runWithIsaScript(isa, childScript, [f.modelDir, f.adapterDir, f.cacheDir, quant, JSON.stringify(IDS)]);
}

/*
 * Tolerances (relError: max |difference| / max |reference|), measured on these fixtures:
 * - SAME_MATH: the kernel against the same math in float64, and the ISAs against each other: the
 *   integer dots are exact, so only float32 sums and float32 activations are left: 0.5-3e-7
 *   measured on every fixture and ISA. One activation code off by one step (a wrong code, or a
 *   rounding-boundary case) moves the logits by 1e-4 or more, so 1e-5 catches it.
 * - ACT_ROUNDING: against plain dequantized weights, i.e. what quantizing the activations costs on
 *   random weights: 4.6e-3 (odd shapes), 1.6-1.8e-2 (wide); 3e-2. On real weights bench:generate
 *   reports it (stories260K lines).
 */
const SAME_MATH = 1e-5;
const ACT_ROUNDING = 3e-2;

describe('native int8/int4 decode (activations quantized to int8 per block)', () => {
  for (const shape of ['odd', 'wide'] as const) {
    for (const quant of ['int8', 'int4'] as const) {
      it(`${quant}, ${shape} shapes: the same math in float64, with and without LoRA; plain dequantized weights up to the activation rounding`, async () => {
        const f = await fixture(shape, quant);
        expect(f.q.bits).toBe(quant === 'int8' ? 8 : 4);
        const same = references(f, true);
        const plain = references(f, false);
        const decoder = createNativeDecoder(addonOrFail(), f.cfg, f.modelDir, null, f.q);
        const got = await teacherForced(decoder, f.cfg, IDS);
        decoder.release();
        const lora = createNativeDecoder(addonOrFail(), f.cfg, f.modelDir, readAdapter(f.adapterDir, f.cfg), f.q);
        const gotLora = await teacherForced(lora, f.cfg, IDS);
        lora.release();
        const errSame = relError(got, same.plain);
        const errPlain = relError(got, plain.plain);
        expect(errSame).toBeLessThan(SAME_MATH);
        expect(relError(gotLora, same.lora)).toBeLessThan(SAME_MATH);
        expect(errPlain).toBeLessThan(ACT_ROUNDING);
        expect(relError(gotLora, plain.lora)).toBeLessThan(ACT_ROUNDING);
        expect(errSame).toBeLessThan(errPlain);
      });
    }
  }

  it('each instruction set (AVX-512 VNNI, and the scalar kernel under MORRIS_NATIVE_ISA=avx2 and =scalar) matches the same-math reference', async () => {
    const host = addonOrFail().kernelInfo().quantIsa;
    for (const quant of ['int8', 'int4'] as const) {
      const f = await fixture('wide', quant);
      const ref = references(f, true).lora;
      const results = await Promise.all((['avx2', 'scalar'] as const).map((isa) => runWithIsa(isa, f, quant)));
      const lora = createNativeDecoder(addonOrFail(), f.cfg, f.modelDir, readAdapter(f.adapterDir, f.cfg), f.q);
      const hostLogits = await teacherForced(lora, f.cfg, IDS);
      lora.release();
      for (const [i, isa] of (['avx2', 'scalar'] as const).entries()) {
        const r = results[i]!;
        expect(r.quantIsa, `MORRIS_NATIVE_ISA=${isa}`).toBe('scalar'); // the quantized kernel is AVX-512 VNNI or scalar
        expect(relError(r.logits, ref), `MORRIS_NATIVE_ISA=${isa}`).toBeLessThan(SAME_MATH);
        expect(relError(r.logits, hostLogits), `MORRIS_NATIVE_ISA=${isa} vs ${host}`).toBeLessThan(SAME_MATH);
      }
    }
  });
});
