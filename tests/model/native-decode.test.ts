/**
 * The native decode kernel (native/ via src/model/inference/native-addon.ts, native-decoder.ts, native-batch.ts): its logits against the
 * float64 reference for each model variant, the engine with it against the ONNX graph, each
 * instruction set, and what it does with bad input; and the read probes bench:generate loads
 * from their own addon (scripts/native-probes.ts).
 */
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { cpSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { MorrisError } from '../../src/errors.ts';
import type { DecoderConfig } from '../../src/model/checkpoint/config.ts';
import { openCheckpoint } from '../../src/model/checkpoint/config.ts';
import { loadModel, type LoadOptions, type SamplingOptions } from '../../src/model/inference/engine.ts';
import type { ChatMessage } from '../../src/prompts.ts';
import { LORA_MODULES } from '../../src/model/graph/llama.ts';
import { readAdapter, type Adapter } from '../../src/model/checkpoint/lora.ts';
import { compileModel } from '../../src/model/graph/compile.ts';
import { loadNativeAddon, nativeAddon, type NativeAddon } from '../../src/model/inference/native-addon.ts';
import { createNativeDecoder } from '../../src/model/inference/native-decoder.ts';
import { AdapterPool } from '../../src/model/inference/adapter-pool.ts';
import { nativeBatches } from '../../src/model/inference/native-batch.ts';
import type { Generation } from '../../src/model/inference/decode-loop.ts';
import { onnxSteps } from '../../src/model/inference/onnx-steps.ts';
import { createSession, int64Tensor, Tensor, type OrtTensor } from '../../src/model/inference/runtime.ts';
import { writeRandomAdapter, writeRandomCheckpoint } from '../../src/model/checkpoint/random-checkpoint.ts';
import { referenceForward, referenceWeights } from './reference-forward.ts';
import { readSafetensorsHeader } from '../../src/model/checkpoint/safetensors.ts';
import { initTinyModel } from '../../src/model/tiny/index.ts';
import { bestRead, nativeProbes } from '../../scripts/native-probes.ts';
import { fullLogits, relError } from './graph-helpers.ts';
import { runWithIsaScript, teacherForced, thrownCode } from './native-helpers.ts';

// nativeAddon stays the real one unless a test swaps its result (the "not built" cases below).
vi.mock('../../src/model/inference/native-addon.ts', async (importOriginal) => {
  const actual = await importOriginal<typeof import('../../src/model/inference/native-addon.ts')>();
  return { ...actual, nativeAddon: vi.fn(actual.nativeAddon) };
});
const realNativeAddon = (await vi.importActual<typeof import('../../src/model/inference/native-addon.ts')>('../../src/model/inference/native-addon.ts')).nativeAddon;

const root = mkdtempSync(join(tmpdir(), 'morris-native-'));
v8.setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
afterAll(() => rmSync(root, { recursive: true, force: true }));

const ISAS = ['avx512', 'avx2', 'scalar'];

/** The addon, or a failure that says how to build it: CI builds it, so a missing one is a bug. */
function addon(): NativeAddon {
  const { addon: a, reason } = realNativeAddon();
  if (!a) throw new Error(`${reason}. The native decode tests need the kernel: run \`npm run build:native\`.`);
  return a;
}

describe('native addon', () => {
  it('is built, loads, and reports the instruction set it picked', () => {
    const { addon: a, reason } = realNativeAddon();
    expect(a, `${reason}: run \`npm run build:native\``).not.toBeNull();
    expect(ISAS).toContain(a!.kernelInfo().isa);
  });

  it('refuses a build that is missing, lacks a function this code calls, or fails to load, saying how to rebuild', () => {
    const dir = mkdtempSync(join(root, 'addon-'));
    const file = (name: string, text: string) => {
      writeFileSync(join(dir, name), text);
      return join(dir, name);
    };
    const missing = loadNativeAddon(join(dir, 'absent.node'), ['a'], 'the test addon');
    expect(missing).toEqual({ addon: null, reason: expect.stringMatching(/^the test addon is not built \(.*absent\.node is missing; run `npm run build:native`/) });
    const old = loadNativeAddon(file('old.cjs', 'exports.a = () => 1; exports.c = 2;'), ['a', 'b', 'c'], 'the test addon');
    expect(old).toEqual({ addon: null, reason: expect.stringMatching(/^the test addon is out of date \(.*old\.cjs lacks b, c; run `npm run build:native`\)$/) });
    const broken = loadNativeAddon(file('broken.cjs', 'throw new Error("bad ELF header")'), ['a'], 'the test addon');
    expect(broken).toEqual({ addon: null, reason: expect.stringMatching(/^the test addon failed to load: bad ELF header \(rebuild it/) });
    const current = loadNativeAddon<{ a(): number }>(file('current.cjs', 'exports.a = () => 1;'), ['a'], 'the test addon');
    expect(current.reason).toBeNull();
    expect(current.addon!.a()).toBe(1);
  });

  it('the decode addon carries no benchmark probes: they load from their own addon', () => {
    const a = realNativeAddon().addon! as unknown as Record<string, unknown>;
    for (const f of ['readSum', 'readBandwidth']) expect(a[f], f).toBeUndefined();
    const { probes, reason } = nativeProbes();
    expect(probes, `${reason}: run \`npm run build:native\``).not.toBeNull();
    expect(probes!.isa()).toBe(realNativeAddon().addon!.kernelInfo().isa);
    expect(probes!.readSum(Float32Array.from([1, 2, 3.5]))).toBe(6.5);
  });

  it('measures cold one-thread reads eight ways for the roofline, and refuses bad arguments', () => {
    const a = nativeProbes().probes!;
    if (a.isa() === 'scalar') return expect(() => a.readBandwidth(4, 1)).toThrow(/AVX2 or AVX-512/);
    const r = a.readBandwidth(4, 1);
    const figures = Object.entries(r).filter(([k]) => k !== 'hugePages');
    expect(figures.map(([k]) => k).sort()).toEqual(['4k', 'huge'].flatMap((p) => ['oneStream', 'twoStreams'].flatMap((s) => [`${p}.${s}`, `${p}.${s}.prefetch`])).sort());
    for (const [, v] of figures) expect(v).toBeGreaterThan(0.1);
    expect(typeof r.hugePages).toBe('boolean');
    expect(bestRead(r).gbS).toBe(Math.max(...figures.map(([, v]) => v as number)));
    expect(() => a.readBandwidth(0, 1)).toThrow(expect.objectContaining({ code: 'BAD_ARG' }));
  });
});

// Odd sizes on purpose: hidden 40 and intermediate 70 leave tails after every vector width
// (16, 8, and the 64/32-wide unrolled loops), head_dim 10 and 12 are not multiples of 8 or 16,
// LoRA rank 5 runs the up-projection entirely in the tail, vocab 67 is odd.
const odd = { hidden_size: 40, intermediate_size: 70, num_hidden_layers: 2, vocab_size: 67, max_position_embeddings: 64, rms_norm_eps: 1e-5 };

const VARIANTS: { name: string; dtype: 'F32' | 'F16' | 'BF16'; config: Record<string, unknown> }[] = [
  {
    name: 'llama GQA 4/2, llama3 rope scaling, untied, head_dim 10, fp32',
    dtype: 'F32',
    config: {
      ...odd, model_type: 'llama', num_attention_heads: 4, num_key_value_heads: 2, tie_word_embeddings: false, rope_theta: 10000,
      rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 },
    },
  },
  {
    name: 'qwen2 q/k/v bias, MQA, head_dim 12, tied, fp16',
    dtype: 'F16',
    config: { ...odd, model_type: 'qwen2', num_attention_heads: 4, num_key_value_heads: 1, head_dim: 12, tie_word_embeddings: true, rope_theta: 1e6 },
  },
  {
    name: 'mistral sliding window 4 (of 12 positions), bf16',
    dtype: 'BF16',
    config: { ...odd, model_type: 'mistral', num_attention_heads: 4, num_key_value_heads: 2, sliding_window: 4, tie_word_embeddings: false },
  },
  {
    name: 'llama o_proj and MLP biases, linear rope scaling, hidden 64 (full vector loops), fp32',
    dtype: 'F32',
    config: {
      ...odd, hidden_size: 64, model_type: 'llama', num_attention_heads: 4, num_key_value_heads: 4, attention_bias: true, mlp_bias: true,
      tie_word_embeddings: true, rope_scaling: { type: 'linear', factor: 2 },
    },
  },
  {
    // Attention's weighted sum of values keeps head_dim multiples of 16 in registers, in tiles of
    // 4 vectors and 4 heads: head_dim 80 (a tile and a bit) with 6 query heads on one KV head
    // (a tile of heads and a bit) runs every edge of it.
    name: 'llama MQA 6/1, head_dim 80 (register tiles of the attention sum), fp32',
    dtype: 'F32',
    config: { ...odd, hidden_size: 48, model_type: 'llama', num_attention_heads: 6, num_key_value_heads: 1, head_dim: 80, tie_word_embeddings: false },
  },
];

/** 12 teacher-forced tokens: longer than the sliding window, with a repeat. */
const IDS = [5, 17, 3, 60, 42, 8, 8, 31, 0, 66, 12, 50];

interface Fixture { modelDir: string; adapterDir: string; cfg: DecoderConfig; adapter: Adapter; ref: Float64Array[]; refLora: Float64Array[] }

function fixture(k: number): Fixture {
  const v = VARIANTS[k]!;
  const modelDir = join(root, `m${k}`);
  const adapterDir = join(root, `a${k}`);
  const cfg = writeRandomCheckpoint(modelDir, { config: v.config, seed: 300 + k, dtype: v.dtype });
  writeRandomAdapter(adapterDir, cfg, { r: 5, alpha: 10, targets: LORA_MODULES, seed: 40 + k });
  const adapter = readAdapter(adapterDir, cfg);
  const weights = referenceWeights(openCheckpoint(modelDir).tensors);
  const ref = referenceForward(cfg, weights, IDS);
  const refLora = referenceForward(cfg, weights, IDS, { adapter, weights: referenceWeights(readSafetensorsHeader(adapter.file).tensors) });
  return { modelDir, adapterDir, cfg, adapter, ref, refLora };
}

const fixtures: Fixture[] = [];
const fixtureOf = (k: number): Fixture => (fixtures[k] ??= fixture(k));

describe('native decode vs the float64 reference (teacher-forced, step by step)', () => {
  VARIANTS.forEach((v, k) => {
    it(`${v.name}: logits at every position match, with and without a LoRA adapter on all 7 modules`, async () => {
      const f = fixtureOf(k);
      if (v.config['model_type'] === 'qwen2') expect(f.cfg.qkvBias).toBe(true);
      const plain = createNativeDecoder(addon(), f.cfg, f.modelDir, null);
      expect(relError(await teacherForced(plain, f.cfg, IDS), f.ref)).toBeLessThan(1e-4);
      plain.release();
      expect(relError(f.refLora, f.ref)).toBeGreaterThan(1e-3); // the adapter really changes the output
      const lora = createNativeDecoder(addon(), f.cfg, f.modelDir, f.adapter);
      expect(relError(await teacherForced(lora, f.cfg, IDS), f.refLora)).toBeLessThan(1e-4);
      lora.release();
    });
  });
});

describe('how the decoder holds its weights', () => {
  it('packs every streamed matrix once (the tied LM head serving the embedding lookup too), on huge pages where the OS allows', () => {
    for (const k of [0, 1]) { // untied fp32; tied fp16 (widened, then packed)
      const f = fixtureOf(k);
      const c = f.cfg;
      const pieceBytes = (n: number) => Math.ceil((n * 4) / 64) * 64; // each 64-byte aligned
      const perLayer = [c.numHeads * c.headDim * c.hiddenSize, c.numKvHeads * c.headDim * c.hiddenSize, c.numKvHeads * c.headDim * c.hiddenSize, c.hiddenSize * c.numHeads * c.headDim, c.intermediateSize * c.hiddenSize, c.intermediateSize * c.hiddenSize, c.hiddenSize * c.intermediateSize];
      const expected = c.numLayers * perLayer.reduce((a, n) => a + pieceBytes(n), 0) + pieceBytes(c.vocabSize * c.hiddenSize);
      const decoder = createNativeDecoder(addon(), c, f.modelDir, null);
      try {
        expect(decoder.layout.packedBytes).toBe(expected);
        const thp = (() => {
          try {
            return /\[(\w+)\]/.exec(readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'))?.[1];
          } catch {
            return undefined;
          }
        })();
        if (thp === 'always' || thp === 'madvise') expect(decoder.layout.hugePages).toBe(true);
      } finally {
        decoder.release();
      }
    }
  });

  it('with profile, counts the time its matrix products take (single and batched steps), and only theirs', async () => {
    const f = fixtureOf(0);
    const plain = createNativeDecoder(addon(), f.cfg, f.modelDir, null);
    const timed = createNativeDecoder(addon(), f.cfg, f.modelDir, null, null, { profile: true });
    try {
      expect(plain.profile()).toBeNull();
      expect(timed.profile()).toEqual({ matrixMs: 0, matrixCalls: 0 });
      const perStep = 7 * f.cfg.numLayers + 1; // q k v o gate up down, then the LM head
      const [a, b] = [timed.sequence(), timed.sequence()];
      const t0 = performance.now();
      for (let p = 0; p < 4; p++) await a.step(IDS[p]!, p);
      const single = timed.profile()!;
      expect(single.matrixCalls).toBe(4 * perStep);
      expect(single.matrixMs).toBeGreaterThan(0);
      // a batched step is one product per matrix for all its rows; rows without logits skip the head
      await timed.stepBatch([0, 1, 2].map((p) => ({ sequence: b, token: IDS[p]!, position: p, wantLogits: false })));
      expect(timed.profile()!.matrixCalls).toBe(5 * perStep - 1);
      await timed.stepBatch([{ sequence: a, token: IDS[4]!, position: 4, wantLogits: true }]); // one row: the single-row kernels, counted once
      await timed.stepBatch([{ sequence: a, token: IDS[5]!, position: 5, wantLogits: true }, { sequence: b, token: IDS[3]!, position: 3, wantLogits: true }]);
      const wall = performance.now() - t0;
      const total = timed.profile()!;
      expect(total.matrixCalls).toBe(7 * perStep - 1);
      expect(total.matrixMs).toBeGreaterThan(single.matrixMs);
      expect(total.matrixMs).toBeLessThan(wall);
      for (const s of [a, b]) s.free();
    } finally {
      plain.release();
      timed.release();
    }
    // int8: a one-row batched step runs each row through the single-row quantized kernel
    const q = (await compileModel({ modelDir: f.modelDir, quant: 'int8', cacheDir: join(root, 'profile-cache') })).quantized;
    const int8 = createNativeDecoder(addon(), f.cfg, f.modelDir, null, q, { profile: true });
    try {
      const [a, b] = [int8.sequence(), int8.sequence()];
      await int8.stepBatch([{ sequence: a, token: IDS[0]!, position: 0, wantLogits: true }]);
      expect(int8.profile()!.matrixCalls).toBe(7 * f.cfg.numLayers + 1);
      await int8.stepBatch([{ sequence: a, token: IDS[1]!, position: 1, wantLogits: true }, { sequence: b, token: IDS[0]!, position: 0, wantLogits: true }]);
      expect(int8.profile()!.matrixCalls).toBe(2 * (7 * f.cfg.numLayers + 1));
      for (const s of [a, b]) s.free();
    } finally {
      int8.release();
    }
  });
});

describe('the kernels under the decode loop: native batches and ONNX Runtime steps', () => {
  it('the prompt prefilled natively in chunks, then native steps, and ONNX Runtime steps, give the logits of ONNX alone', async () => {
    const f = fixtureOf(0);
    const compiled = await compileModel({ modelDir: f.modelDir, cacheDir: join(root, 'wcache') });
    const { session } = await createSession(compiled.onnxFile);
    const decoder = createNativeDecoder(addon(), f.cfg, f.modelDir, null);
    const expected = (await fullLogits(session, f.cfg, IDS)).slice(3); // the prefill of 4 keeps its last row

    const stats = { nativeSteps: 0, nativeMs: 0, onnxRuns: 0 };
    const batches = nativeBatches(decoder, stats, { adapters: new AdapterPool(decoder, f.cfg, 1), defaultAdapterDir: null, prefillChunk: 3, prefixCacheEntries: 0, prefixCacheBytes: 0, positionBytes: 1, minPrefix: 16 });
    const { sequence: member } = batches.open({ promptIds: IDS.slice(0, 4) } as unknown as Generation);
    expect(await batches.step([{ sequence: member, tokens: IDS.slice(0, 3), start: 0, wantLogits: false }])).toEqual([]);
    const first = (await batches.step([{ sequence: member, tokens: IDS.slice(3, 4), start: 3, wantLogits: true }]))[0]!;
    const native = [first.slice()];
    for (let t = 4; t < IDS.length; t++) {
      const [logits] = await batches.step([{ sequence: member, tokens: [IDS[t]!], start: t, wantLogits: true }]);
      expect(logits!.buffer, 'every step writes into the one logits buffer').toBe(first.buffer);
      native.push(logits!.slice());
    }
    await batches.close(member);
    expect(stats).toMatchObject({ nativeSteps: 10, onnxRuns: 0 });
    expect(relError(native, expected), 'native').toBeLessThan(1e-4);

    const onnxStats = { nativeSteps: 0, nativeMs: 0, onnxRuns: 0 };
    const kernel = onnxSteps(session, f.cfg, onnxStats);
    const { sequence, logits } = await kernel.prefill(IDS.slice(0, 4));
    const got = [logits.slice()];
    for (let t = 4; t < IDS.length; t++) got.push((await sequence.step(IDS[t]!, t)).slice());
    await sequence.release();
    expect(onnxStats).toMatchObject({ nativeSteps: 0, onnxRuns: 9 });
    expect(relError(got, expected), 'onnx').toBeLessThan(1e-4);
    decoder.release();
    await session.release();
  });
});

// int8/int4: native-quant.test.ts.

// MORRIS_NATIVE_ISA is read once when the addon loads, so each ISA runs in its own process.
const childScript = `
  const { nativeAddon } = await import(${JSON.stringify(resolve('src/model/inference/native-addon.ts'))});
  const { createNativeDecoder } = await import(${JSON.stringify(resolve('src/model/inference/native-decoder.ts'))});
  const { openCheckpoint } = await import(${JSON.stringify(resolve('src/model/checkpoint/config.ts'))});
  const { readAdapter } = await import(${JSON.stringify(resolve('src/model/checkpoint/lora.ts'))});
  const { teacherForced } = await import(${JSON.stringify(resolve('tests/model/native-helpers.ts'))});
  const [modelDir, adapterDir, ids] = process.argv.slice(-3);
  const { addon, reason } = nativeAddon();
  if (!addon) throw new Error(reason);
  const cfg = openCheckpoint(modelDir).config;
  const decoder = createNativeDecoder(addon, cfg, modelDir, readAdapter(adapterDir, cfg));
  const logits = await teacherForced(decoder, cfg, JSON.parse(ids));
  process.stdout.write(JSON.stringify({ isa: addon.kernelInfo().isa, decoderIsa: decoder.isa, logits: logits.map((r) => Array.from(r)) }));
`;

function runWithIsa(isa: string, f: Fixture): Promise<{ isa: string; decoderIsa: string; logits: number[][] }> {
  return runWithIsaScript(isa, childScript, [f.modelDir, f.adapterDir, JSON.stringify(IDS)]);
}

describe('each instruction set', () => {
  it('MORRIS_NATIVE_ISA=avx2 and =scalar force that kernel, and each matches the reference', async () => {
    const f = fixtureOf(0); // odd sizes, GQA and LoRA on every module: every gemv tail runs
    const host = addon().kernelInfo().isa;
    // A lower ISA can be forced, never a higher one: a CPU without AVX2 runs scalar for both.
    const expected = { avx2: host === 'scalar' ? 'scalar' : 'avx2', scalar: 'scalar' };
    const results = await Promise.all((['avx2', 'scalar'] as const).map((isa) => runWithIsa(isa, f)));
    (['avx2', 'scalar'] as const).forEach((isa, i) => {
      const r = results[i]!;
      expect(r.isa, `MORRIS_NATIVE_ISA=${isa}`).toBe(expected[isa]);
      expect(r.decoderIsa).toBe(expected[isa]);
      expect(relError(r.logits, f.refLora), `MORRIS_NATIVE_ISA=${isa}`).toBeLessThan(1e-4);
    });
  });
});

describe('bad input: errors with a code, not crashes', () => {
  let f: Fixture;
  let a: NativeAddon;
  type Handle = ReturnType<NativeAddon['createDecoder']>;
  /** The addon, keeping the raw handles createNativeDecoder makes so tests can call it directly. */
  const capturing = (handles: Handle[], beforeCreate: () => void = () => {}): NativeAddon => ({
    kernelInfo: () => a.kernelInfo(),
    createDecoder: (spec) => {
      beforeCreate();
      const h = a.createDecoder(spec);
      handles.push(h);
      return h;
    },
    decodeStep: (...args) => a.decodeStep(...args),
    cacheNew: (h) => a.cacheNew(h),
    cacheImport: (...args) => a.cacheImport(...args),
    cacheExport: (...args) => a.cacheExport(...args),
    cacheFork: (...args) => a.cacheFork(...args),
    decodeBatch: (...args) => a.decodeBatch(...args),
    createAdapter: (...args) => a.createAdapter(...args),
    releaseAdapter: (...args) => a.releaseAdapter(...args),
    cacheFree: (...args) => a.cacheFree(...args),
    cacheLength: (...args) => a.cacheLength(...args),
    releaseDecoder: (h) => a.releaseDecoder(h),
    decoderInfo: (h) => a.decoderInfo(h),
  });
  beforeAll(() => {
    f = fixtureOf(0);
    a = addon();
  });

  it('decodeStep and the cache calls with wrong arguments or a non-decoder handle throw BAD_STEP, and the decoder still works after', async () => {
    const handles: Handle[] = [];
    const decoder = createNativeDecoder(capturing(handles), f.cfg, f.modelDir, null);
    const h = handles[0]!;
    const { numLayers: L, numKvHeads, headDim, vocabSize: V } = f.cfg;
    const row = numKvHeads * headDim;
    const kv = (rows: number) => Array.from({ length: L }, () => new Float32Array(rows * row));
    const slot = a.cacheNew(h);
    a.cacheImport(h, slot, kv(2), kv(2));
    expect(a.cacheLength(h, slot)).toBe(2);
    const logits = new Float32Array(V);
    const call = (name: keyof NativeAddon, ...args: unknown[]) => () => (a[name] as (...x: unknown[]) => unknown)(...args);
    const good = [h, slot, 1, 2, logits];
    const withArg = (i: number, v: unknown) => good.map((g, j) => (j === i ? v : g));

    expect(thrownCode(call('decodeStep', ...withArg(0, {})))).toBe('BAD_STEP');
    expect(thrownCode(call('decodeStep', ...withArg(0, null)))).toBe('BAD_STEP');
    expect(thrownCode(call('decodeStep', ...withArg(0, 7)))).toBe('BAD_STEP');
    expect(thrownCode(call('decodeStep', ...good.slice(0, 4)))).toBe('BAD_STEP'); // no logits
    expect(thrownCode(call('decodeStep', ...withArg(1, 99)))).toBe('BAD_STEP'); // no such cache slot
    expect(thrownCode(call('decodeStep', ...withArg(2, V)))).toBe('BAD_STEP'); // token outside the vocabulary
    expect(thrownCode(call('decodeStep', ...withArg(2, -1)))).toBe('BAD_STEP');
    expect(thrownCode(call('decodeStep', ...withArg(3, -1)))).toBe('BAD_STEP'); // negative position
    expect(thrownCode(call('decodeStep', ...withArg(4, new Float32Array(V - 1))))).toBe('BAD_STEP');
    expect(thrownCode(call('decodeStep', ...withArg(4, new Float64Array(V))))).toBe('BAD_STEP');
    expect(thrownCode(call('cacheImport', h, slot, kv(2).slice(1), kv(2)))).toBe('BAD_STEP'); // one layer short
    expect(thrownCode(call('cacheImport', h, slot, kv(2), kv(1)))).toBe('BAD_STEP'); // values shorter than keys
    expect(thrownCode(call('cacheImport', h, slot, [new Float32Array(row + 1), ...kv(2).slice(1)], kv(2)))).toBe('BAD_STEP'); // not whole rows
    expect(thrownCode(call('cacheImport', h, slot, Array.from({ length: L }, () => new Float64Array(2 * row)), kv(2)))).toBe('BAD_STEP'); // not float32
    expect(thrownCode(call('cacheImport', h, slot, 'keys', kv(2)))).toBe('BAD_STEP');
    expect(thrownCode(call('cacheExport', h, slot, 5, kv(5), kv(5)))).toBe('BAD_STEP'); // longer than what is cached
    expect(thrownCode(call('cacheExport', h, slot, 0, kv(1), kv(1)))).toBe('BAD_STEP'); // arrays of the wrong size
    expect(thrownCode(call('cacheFork', h, slot, 3))).toBe('BAD_STEP'); // longer than what is cached
    expect(thrownCode(call('cacheLength', h, 42))).toBe('BAD_STEP');
    a.cacheFree(h, slot);
    expect(thrownCode(call('decodeStep', ...good))).toBe('BAD_STEP'); // freed slot
    expect(thrownCode(() => (a.releaseDecoder as (x: unknown) => void)({}))).toBe('BAD_ARG');
    expect(thrownCode(() => a.createDecoder({}))).toBe('BAD_SPEC');
    expect(thrownCode(() => a.createDecoder({ hidden: 8, inter: 8, layers: 1, heads: 3, kvHeads: 2, headDim: 4, vocab: 4, window: 0, eps: 1e-5 }))).toBe('BAD_SPEC');
    // none of that left the decoder busy or broken
    expect(relError(await teacherForced(decoder, f.cfg, IDS), f.ref)).toBeLessThan(1e-4);
    decoder.release();
  });

  it('a second step while one runs is BUSY (so are cache calls and release); after release a step is RELEASED', async () => {
    const handles: Handle[] = [];
    const decoder = createNativeDecoder(capturing(handles), f.cfg, f.modelDir, null);
    const one = decoder.sequence();
    const two = decoder.sequence();
    const spare = decoder.sequence();
    const first = one.step(IDS[0]!, 0);
    await expect(two.step(IDS[0]!, 0)).rejects.toMatchObject({ code: 'BUSY' });
    expect(thrownCode(() => decoder.sequence())).toBe('BUSY');
    expect(thrownCode(() => decoder.release())).toBe('BUSY');
    expect(thrownCode(() => one.free())).toBe('BUSY'); // its own step is running
    spare.free(); // another sequence's cache may go meanwhile
    const logits = await first;
    expect(relError([logits], [f.ref[0]!])).toBeLessThan(1e-4); // the running step was not disturbed
    expect(one.length).toBe(1);
    expect(two.length).toBe(0); // the refused step left its cache alone
    decoder.release();
    decoder.release(); // twice is fine
    await expect(one.step(IDS[1]!, 1)).rejects.toMatchObject({ code: 'RELEASED' });
    expect(thrownCode(() => a.decodeStep(handles[0]!, 0, 1, 0, new Float32Array(f.cfg.vocabSize)))).toBe('RELEASED');
    one.free(); // after release: nothing left to free, and no error
  });

  it('a truncated safetensors file is MODEL_INVALID with a hint, whether caught by the header check or at mapping', () => {
    const dir = join(root, 'truncated');
    cpSync(f.modelDir, dir, { recursive: true });
    const file = join(dir, 'model.safetensors');
    const size = statSync(file).size;
    truncateSync(file, size - 100);
    const err = (() => {
      try {
        createNativeDecoder(a, f.cfg, dir, null);
      } catch (e) {
        return e;
      }
      return null;
    })();
    expect(err).toBeInstanceOf(MorrisError);
    expect(err).toMatchObject({ code: 'MODEL_INVALID', hint: expect.any(String) });

    // Shrunk between reading the header and mapping (a download rewriting the file in place):
    // the kernel's own bounds check refuses it instead of reading past the end of the mapping.
    const dir2 = join(root, 'truncated-late');
    cpSync(f.modelDir, dir2, { recursive: true });
    const file2 = join(dir2, 'model.safetensors');
    const late = capturing([], () => truncateSync(file2, size - 100));
    let lateErr: unknown = null;
    try {
      createNativeDecoder(late, f.cfg, dir2, null);
    } catch (e) {
      lateErr = e;
    }
    expect(lateErr).toBeInstanceOf(MorrisError);
    expect(lateErr).toMatchObject({ code: 'MODEL_INVALID', hint: expect.stringMatching(/MORRIS_DECODE_KERNEL=onnx/), message: expect.stringMatching(/past the end/) });
  });
});

describe('through the engine (tiny model)', () => {
  const tinyDir = join(root, 'tiny');
  const adapterDir = join(root, 'tiny-adapter');
  const cacheDir = join(root, 'cache');
  const greedy: SamplingOptions = { maxNewTokens: 20, temperature: 0, topP: 1, topK: 0, repetitionPenalty: 1 };
  const chat: { messages: ChatMessage[] } = { messages: [{ role: 'system', content: 'You write columns.' }, { role: 'user', content: 'Write about the harbour at dawn.' }] };
  const raw = { text: 'The harbour at dawn' };
  const texts = new Map<string, string>();
  const base = (adapter: boolean): LoadOptions => ({ modelDir: tinyDir, adapterDir: adapter ? adapterDir : null, cacheDir, device: 'cpu' });

  beforeAll(() => {
    initTinyModel(tinyDir, { seed: 11 });
    writeRandomAdapter(adapterDir, openCheckpoint(tinyDir).config, { r: 4, alpha: 8, targets: LORA_MODULES, seed: 12 });
  });

  async function collect(it: AsyncIterable<string>): Promise<string> {
    let s = '';
    for await (const piece of it) s += piece;
    return s;
  }

  for (const withAdapter of [false, true]) {
    it(`decodeKernel 'native' and 'onnx' give the same greedy text for chat and raw prompts ${withAdapter ? 'with' : 'without'} an adapter`, async () => {
      const native = await loadModel({ ...base(withAdapter), decodeKernel: 'native' });
      const onnx = await loadModel({ ...base(withAdapter), decodeKernel: 'onnx' });
      try {
        expect(native.info.decodeKernel).toMatch(/^native-(avx512|avx2|scalar)$/);
        expect(onnx.info.decodeKernel).toBe('onnx');
        for (const [name, input] of [['chat', chat], ['raw', raw]] as const) {
          const before = { ...native.kernelStats };
          const text = await collect(native.stream(input, greedy));
          const generated = native.lastStats!.generatedTokens;
          expect(generated).toBeGreaterThan(2);
          // the prompt in native chunks of 64 rows gives the first token, then one native step per
          // further token; ONNX Runtime does not run at all
          expect(native.kernelStats.onnxRuns - before.onnxRuns).toBe(0);
          expect(native.kernelStats.nativeSteps - before.nativeSteps).toBe(Math.ceil(native.lastStats!.promptTokens / 64) + generated - 1);
          expect(text.length).toBeGreaterThan(0);
          expect(await collect(onnx.stream(input, greedy))).toBe(text);
          texts.set(`${name}${withAdapter ? '+adapter' : ''}`, text);
        }
        expect(onnx.kernelStats.nativeSteps).toBe(0);
        if (withAdapter) expect(texts.get('raw+adapter')).not.toBe(texts.get('raw')); // the adapter reached the native path
      } finally {
        await native.dispose();
        await onnx.dispose();
      }
    });
  }

  it("without the addon, 'auto' falls back to ONNX and still generates; 'native' is CONFIG_INVALID naming the reason", async () => {
    const auto = await loadModel({ ...base(false), decodeKernel: 'auto' });
    expect(auto.info.decodeKernel).toMatch(/^native-/); // built here, so auto takes it
    await auto.dispose();

    const reason = 'simulated: morris_native.node is missing';
    vi.mocked(nativeAddon).mockImplementation(() => ({ addon: null, reason }));
    try {
      const fallback = await loadModel({ ...base(false), decodeKernel: 'auto' });
      try {
        expect(fallback.info.decodeKernel).toBe('onnx');
        const text = await collect(fallback.stream(raw, greedy));
        expect(text.length).toBeGreaterThan(0);
        if (texts.has('raw')) expect(text).toBe(texts.get('raw')); // the same text the native kernel gave
        expect(fallback.kernelStats.nativeSteps).toBe(0);
      } finally {
        await fallback.dispose();
      }
      const err = await loadModel({ ...base(false), decodeKernel: 'native' }).then((m) => m.dispose().then(() => null), (e: unknown) => e);
      expect(err).toBeInstanceOf(MorrisError);
      expect(err).toMatchObject({ code: 'CONFIG_INVALID', message: expect.stringContaining(reason) });
    } finally {
      vi.mocked(nativeAddon).mockImplementation(realNativeAddon);
    }
  });

  it("int8 and int4 decode natively on AVX-512 ('auto'); 'onnx' keeps MatMulNBits", async () => {
    for (const quant of ['int8', 'int4'] as const) {
      const m = await loadModel({ ...base(false), quant, decodeKernel: 'auto' });
      try {
        expect(m.info.decodeKernel).toBe(addon().kernelInfo().quantIsa === 'avx512' ? `native-${addon().kernelInfo().isa}` : 'onnx');
        expect((await collect(m.stream(raw, greedy))).length).toBeGreaterThan(0);
      } finally {
        await m.dispose();
      }
    }
  });

  it("our loop gives the same text, token ids and stops over native and ONNX Runtime steps, greedy and sampled", async () => {
    const ours = await loadModel({ ...base(true), decodeKernel: 'native' });
    const ort = await loadModel({ ...base(true), decodeKernel: 'onnx' });
    try {
      expect(ours.info.decodeLoop).toBe('morris');
      expect(ort.info.decodeLoop).toBe('morris');
      const sampled: SamplingOptions = { maxNewTokens: 24, temperature: 0.9, topP: 0.9, topK: 20, repetitionPenalty: 1.3, seed: 5 };
      for (const [input, opts] of [[chat, greedy], [raw, greedy], [chat, sampled], [raw, { ...sampled, topK: 0, seed: 6 }]] as const) {
        const before = { ...ours.kernelStats };
        const ortBefore = { ...ort.kernelStats };
        const text = await collect(ours.stream(input, opts));
        const n = ours.lastStats!.generatedTokens;
        expect(n).toBe(opts.maxNewTokens); // no stop token in a random tiny model's first tokens
        expect(ours.kernelStats.onnxRuns - before.onnxRuns).toBe(0);
        expect(ours.kernelStats.nativeSteps - before.nativeSteps).toBe(Math.ceil(ours.lastStats!.promptTokens / 64) + n - 1);
        expect(await collect(ort.stream(input, opts))).toBe(text);
        expect(ort.lastStats!.generatedTokens).toBe(n);
        expect(ort.lastStats!.tokenIds).toEqual(ours.lastStats!.tokenIds);
        expect(ort.kernelStats.onnxRuns - ortBefore.onnxRuns).toBe(n); // the prompt, then one run per further token
      }
      // abort after the first piece: both stop early, keeping what they made
      for (const m of [ours, ort]) {
        const ac = new AbortController();
        let pieces = 0;
        for await (const _ of m.stream(raw, { ...greedy, maxNewTokens: 200 }, ac.signal)) if (++pieces === 1) ac.abort();
        expect(m.lastStats!.generatedTokens).toBeLessThan(10);
      }
    } finally {
      await ours.dispose();
      await ort.dispose();
    }
    // a stop token (generation_config.json) ends both right after it, kept in the count
    const first = await loadModel({ ...base(false), decodeKernel: 'native' });
    let ids: number[];
    try {
      await collect(first.stream(raw, greedy));
      ids = first.lastStats!.tokenIds;
    } finally {
      await first.dispose();
    }
    const at = ids.findIndex((t, i) => i >= 2 && !ids.slice(0, i).includes(t)); // a token's first appearance, not the first token
    expect(at).toBeGreaterThanOrEqual(2);
    const stopDir = join(root, 'tiny-stop');
    cpSync(tinyDir, stopDir, { recursive: true });
    writeFileSync(join(stopDir, 'generation_config.json'), JSON.stringify({ eos_token_id: ids[at] }));
    const counts: number[] = [];
    for (const decodeKernel of ['native', 'onnx'] as const) {
      const m = await loadModel({ modelDir: stopDir, cacheDir, device: 'cpu', decodeKernel });
      try {
        await collect(m.stream(raw, greedy));
        counts.push(m.lastStats!.generatedTokens);
      } finally {
        await m.dispose();
      }
    }
    expect(counts).toEqual([at + 1, at + 1]);

    // a logits rule of generation_config.json (here: no repeated bigrams) is applied by our loop, on either kernel
    const ruleDir = join(root, 'tiny-ngram');
    cpSync(tinyDir, ruleDir, { recursive: true });
    writeFileSync(join(ruleDir, 'generation_config.json'), JSON.stringify({ no_repeat_ngram_size: 2 }));
    const texts: string[] = [];
    for (const decodeKernel of ['native', 'onnx'] as const) {
      const m = await loadModel({ modelDir: ruleDir, cacheDir, device: 'cpu', decodeKernel });
      try {
        expect(m.info.decodeLoop).toBe('morris');
        texts.push(await collect(m.stream(raw, { ...greedy, maxNewTokens: 40 })));
        const generated = m.lastStats!.tokenIds;
        const bigrams = generated.slice(1).map((t, i) => `${generated[i]} ${t}`);
        expect(new Set(bigrams).size).toBe(bigrams.length);
        if (decodeKernel === 'native') expect(m.kernelStats.nativeSteps).toBeGreaterThan(0);
      } finally {
        await m.dispose();
      }
    }
    expect(texts[0]).toBe(texts[1]);
  });

  it('concurrent generations on one model each get their own KV cache and both finish with their own text', async () => {
    const m = await loadModel({ ...base(false), decodeKernel: 'native' });
    try {
      const alone = [await collect(m.stream({ text: 'The harbour' }, greedy)), await collect(m.stream({ text: 'A dawn' }, greedy))];
      const together = await Promise.all([collect(m.stream({ text: 'The harbour' }, greedy)), collect(m.stream({ text: 'A dawn' }, greedy))]);
      expect(together).toEqual(alone);
    } finally {
      await m.dispose();
    }
  });
});
