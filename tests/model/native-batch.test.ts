/**
 * The native batched step (decodeBatch via NativeDecoder.stepBatch): sequences with different
 * prompts prefilled in chunks next to other sequences' decode rows, joining and leaving mid-run,
 * each with its own LoRA adapter or none, give every row's logits and K/V BITWISE as each
 * sequence decoded alone with single steps (on a decoder with its adapter built in), for each
 * model variant, quantization and instruction set; cacheFork; and what bad input does.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openCheckpoint, type DecoderConfig } from '../../src/model/checkpoint/config.ts';
import { readAdapter, type Adapter } from '../../src/model/checkpoint/lora.ts';
import { writeRandomAdapter, writeRandomCheckpoint } from '../../src/model/checkpoint/random-checkpoint.ts';
import { readSafetensorsHeader } from '../../src/model/checkpoint/safetensors.ts';
import { ExternalDataFile, quantizeWeights, type QuantBits } from '../../src/model/checkpoint/quant.ts';
import { compileModel, type QuantizedIndex } from '../../src/model/graph/compile.ts';
import { LORA_MODULES, moduleName } from '../../src/model/graph/llama.ts';
import { nativeAddon, type NativeAddon } from '../../src/model/inference/native-addon.ts';
import { createNativeDecoder, type NativeDecoder } from '../../src/model/inference/native-decoder.ts';
import { relError } from './graph-helpers.ts';
import { CHUNKINGS, compareBatchedToAlone, mixedPlans, runAlone, runBatched, runWithIsaScript, sameBits, thrownCode } from './native-helpers.ts';
import { referenceForward, referenceWeights } from './reference-forward.ts';

const root = mkdtempSync(join(tmpdir(), 'morris-batch-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function addon(): NativeAddon {
  const { addon: a, reason } = nativeAddon();
  if (!a) throw new Error(`${reason}. The native batch tests need the kernel: run \`npm run build:native\`.`);
  return a;
}

// Odd sizes, as in native-decode.test.ts: every vector loop of the kernels leaves a tail.
const odd = { hidden_size: 40, intermediate_size: 70, num_hidden_layers: 2, vocab_size: 67, max_position_embeddings: 64, rms_norm_eps: 1e-5 };
const VARIANTS: { name: string; dtype: 'F32' | 'F16' | 'BF16'; config: Record<string, unknown> }[] = [
  { name: 'llama GQA 4/2, untied, head_dim 10, fp32', dtype: 'F32', config: { ...odd, model_type: 'llama', num_attention_heads: 4, num_key_value_heads: 2, tie_word_embeddings: false } },
  { name: 'qwen2 q/k/v bias, MQA, head_dim 12, tied, fp16', dtype: 'F16', config: { ...odd, model_type: 'qwen2', num_attention_heads: 4, num_key_value_heads: 1, head_dim: 12, tie_word_embeddings: true, rope_theta: 1e6 } },
  { name: 'mistral sliding window 4, bf16', dtype: 'BF16', config: { ...odd, model_type: 'mistral', num_attention_heads: 4, num_key_value_heads: 2, sliding_window: 4, tie_word_embeddings: false } },
  {
    name: 'llama o_proj and MLP biases, hidden 64 (full vector loops), fp32', dtype: 'F32',
    config: { ...odd, hidden_size: 64, model_type: 'llama', num_attention_heads: 4, num_key_value_heads: 4, attention_bias: true, mlp_bias: true, tie_word_embeddings: true },
  },
];

interface Fixture { modelDir: string; adapterDirs: [string, string]; cfg: DecoderConfig; adapters: [Adapter, Adapter] }
const fixtures: Fixture[] = [];
function fixtureOf(k: number): Fixture {
  if (fixtures[k]) return fixtures[k];
  const v = VARIANTS[k]!;
  const modelDir = join(root, `m${k}`);
  const cfg = writeRandomCheckpoint(modelDir, { config: v.config, seed: 500 + k, dtype: v.dtype });
  const adapterDirs: [string, string] = [join(root, `a${k}-1`), join(root, `a${k}-2`)];
  // two different adapters: rank 5 on every module, rank 3 on attention only
  writeRandomAdapter(adapterDirs[0], cfg, { r: 5, alpha: 10, targets: LORA_MODULES, seed: 60 + k });
  writeRandomAdapter(adapterDirs[1], cfg, { r: 3, alpha: 12, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj'], seed: 80 + k });
  return (fixtures[k] = { modelDir, adapterDirs, cfg, adapters: [readAdapter(adapterDirs[0], cfg), readAdapter(adapterDirs[1], cfg)] });
}

let wide: Fixture | undefined;
function wideFixture(): Fixture {
  if (wide) return wide;
  const modelDir = join(root, 'wide');
  const config = { ...odd, hidden_size: 544, intermediate_size: 1100, model_type: 'llama', num_attention_heads: 4, num_key_value_heads: 2, tie_word_embeddings: false };
  const cfg = writeRandomCheckpoint(modelDir, { config, seed: 530, dtype: 'F32' });
  const adapterDirs: [string, string] = [join(root, 'wide-a1'), join(root, 'wide-a2')];
  writeRandomAdapter(adapterDirs[0], cfg, { r: 5, alpha: 10, targets: LORA_MODULES, seed: 91 });
  writeRandomAdapter(adapterDirs[1], cfg, { r: 3, alpha: 12, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj'], seed: 92 });
  return (wide = { modelDir, adapterDirs, cfg, adapters: [readAdapter(adapterDirs[0], cfg), readAdapter(adapterDirs[1], cfg)] });
}

/** The model's linear weights (as compileModel picks them) quantized with a block size of our choosing. */
async function quantizedWith(f: Fixture, bits: QuantBits, blockSize: number): Promise<QuantizedIndex> {
  const tensors = openCheckpoint(f.modelDir).tensors;
  const names = Array.from({ length: f.cfg.numLayers }, (_, l) => LORA_MODULES.map((m) => `${moduleName(l, m)}.weight`)).flat();
  const file = join(root, `wide-q${bits}-${blockSize}.bin`);
  const out = new ExternalDataFile(file, 'quant.bin');
  try {
    const weights = await quantizeWeights([...names, 'lm_head.weight'].map((name) => ({ name, entry: tensors.get(name)! })), bits, out, blockSize);
    return { file, bits, blockSize, weights };
  } finally {
    out.close();
  }
}

/** Batched on a base decoder with both adapters loaded, against each sequence alone on a decoder with its adapter built in. */
async function expectBitwise(f: Fixture, q: QuantizedIndex | null = null, chunkings = CHUNKINGS): Promise<void> {
  const a = addon();
  const alone = [null, ...f.adapters].map((ad) => createNativeDecoder(a, f.cfg, f.modelDir, ad, q));
  const batched = createNativeDecoder(a, f.cfg, f.modelDir, null, q);
  const adapters = [null, batched.loadAdapter(f.adapters[0]), batched.loadAdapter(f.adapters[1])];
  try {
    for (const chunks of chunkings) {
      const plans = mixedPlans(chunks, f.cfg.vocabSize);
      const run = await runBatched(batched, plans, adapters);
      expect(run.maxRows).toBeGreaterThan(2);
      const { compared, mismatches } = await compareBatchedToAlone(run, plans, alone);
      expect(mismatches, `chunks ${JSON.stringify(chunks)}`).toEqual([]);
      expect(compared).toBeGreaterThan(20);
    }
  } finally {
    for (const ad of adapters) ad?.release();
    for (const d of [...alone, batched]) d.release();
  }
}

describe('stepBatch: every row bitwise as its sequence alone with single steps', () => {
  VARIANTS.forEach((v, k) => {
    it(`${v.name}: chunked prefills, decode rows, joins and leaves, two adapters and none`, async () => {
      await expectBitwise(fixtureOf(k));
    });
  });

  for (const quant of ['int8', 'int4'] as const) {
    it(`${quant} (MatMulNBits codes, padded last blocks): the same, through the batched quantized kernel`, async () => {
      const f = fixtureOf(0);
      const compiled = await compileModel({ modelDir: f.modelDir, quant, cacheDir: join(root, 'qcache') });
      await expectBitwise(f, compiled.quantized!);
    });
  }

  /*
   * The batched quantized kernel (native/gemm-q.c) in every layout it has: int8 blocks of 16, 32,
   * 64 and 128 (4 or 2 blocks a 64-byte chunk, or 1 or 2 chunks a block) and int4 blocks of 32
   * (16-block groups), 64, 128 and 256, on rows wide enough for int4's groups and both of its
   * tails (hidden 544: 4 chunks and 16 bytes; inter 1100: 8 chunks and 48 bytes), with batches of
   * 1 to 20+ rows, so many not a multiple of its row group.
   */
  const LAYOUTS: [QuantBits, number][] = [[8, 16], [8, 32], [8, 64], [8, 128], [4, 32], [4, 64], [4, 128], [4, 256]];
  it.each(LAYOUTS)('int%i with blocks of %i, wide rows: the same, through the batched quantized kernel', async (bits, blockSize) => {
    const f = wideFixture();
    await expectBitwise(f, await quantizedWith(f, bits, blockSize), [CHUNKINGS[0]!]);
  });

  it("a null adapter is the decoder's own built-in LoRA; rows with another adapter use that one instead", async () => {
    const f = fixtureOf(0);
    const a = addon();
    const alone = [f.adapters[0], null, f.adapters[1]].map((ad) => createNativeDecoder(a, f.cfg, f.modelDir, ad));
    const withOwn = createNativeDecoder(a, f.cfg, f.modelDir, f.adapters[0]);
    const second = withOwn.loadAdapter(f.adapters[1]);
    const plans = mixedPlans(CHUNKINGS[0]!, f.cfg.vocabSize).map((p) => ({ ...p, adapter: p.adapter === 1 ? 0 : 2 })); // own and the second
    const run = await runBatched(withOwn, plans, [null, null, second]);
    expect((await compareBatchedToAlone(run, plans, alone)).mismatches).toEqual([]);
    second.release();
    for (const d of [...alone, withOwn]) d.release();
  });

  it('the batched logits match the float64 reference, with and without an adapter', async () => {
    const f = fixtureOf(0);
    const weights = referenceWeights(openCheckpoint(f.modelDir).tensors);
    const decoder = createNativeDecoder(addon(), f.cfg, f.modelDir, null);
    const adapters = [null, decoder.loadAdapter(f.adapters[0]), decoder.loadAdapter(f.adapters[1])];
    const plans = mixedPlans(CHUNKINGS[0]!, f.cfg.vocabSize);
    const run = await runBatched(decoder, plans, adapters);
    for (const [i, plan] of plans.entries()) {
      const ad = plan.adapter === 0 ? null : f.adapters[plan.adapter - 1]!;
      const ref = referenceForward(f.cfg, weights, plan.ids, ad ? { adapter: ad, weights: referenceWeights(readSafetensorsHeader(ad.file).tensors) } : undefined);
      const positions = [...run.logits[i]!.keys()];
      expect(relError(positions.map((p) => run.logits[i]!.get(p)!), positions.map((p) => ref[p]!)), `sequence ${i}`).toBeLessThan(1e-4);
    }
    for (const ad of adapters) ad?.release();
    decoder.release();
  });
});

describe('cacheFork: a shared prefix computed once', () => {
  it('a fork of the first n positions continues exactly as the original would, alone or batched with it', async () => {
    const f = fixtureOf(2); // sliding window: the fork carries the positions the window still sees
    const decoder = createNativeDecoder(addon(), f.cfg, f.modelDir, null);
    const ids = [5, 17, 3, 60, 42, 8, 8, 31, 0, 66];
    const { logits: ref } = await runAlone(decoder, ids);
    const prefix = decoder.sequence();
    await decoder.stepBatch(ids.slice(0, 6).map((token, position) => ({ sequence: prefix, token, position, wantLogits: false })));
    const forks = [prefix.fork(6), prefix.fork(4)];
    expect(forks.map((s) => s.length)).toEqual([6, 4]);
    const tail = [6, 4].map((n, i) => ids.slice(n).map((token, j) => ({ sequence: forks[i]!, token, position: n + j, wantLogits: true })));
    const out = await decoder.stepBatch([...tail[0]!, ...tail[1]!]);
    const expected = [...ref.slice(6), ...ref.slice(4)];
    expect(out.length).toBe(expected.length);
    out.forEach((row, i) => expect(sameBits(row, expected[i]!), `row ${i}`).toBe(true));
    // the original is untouched by its forks and continues the same way
    expect(prefix.length).toBe(6);
    expect(sameBits((await prefix.step(ids[6]!, 6)), ref[6]!)).toBe(true);
    for (const s of [prefix, ...forks]) s.free();
    decoder.release();
  });
});

describe('bad input: errors with a code, checked before the step is queued', () => {
  type Handle = ReturnType<NativeAddon['createDecoder']>;
  type AdapterHandle = ReturnType<NativeAddon['createAdapter']>;
  /** The addon, keeping the raw handles createNativeDecoder and loadAdapter make so tests can call it directly. */
  function capturing(handles: Handle[], adapters: AdapterHandle[]): NativeAddon {
    const a = addon();
    const createDecoder: NativeAddon['createDecoder'] = (spec) => {
      const h = a.createDecoder(spec);
      handles.push(h);
      return h;
    };
    const createAdapter: NativeAddon['createAdapter'] = (h, spec) => {
      const ad = a.createAdapter(h, spec);
      adapters.push(ad);
      return ad;
    };
    // the addon's functions are read-only properties: override them on an object that inherits the rest
    return Object.create(a, { createDecoder: { value: createDecoder }, createAdapter: { value: createAdapter } }) as NativeAddon;
  }

  it('decodeBatch refuses each malformed batch with BAD_STEP saying what is wrong, and the decoder still works after', async () => {
    const f = fixtureOf(0);
    const a = addon();
    const handles: Handle[] = [];
    const adapterHandles: AdapterHandle[] = [];
    const decoder = createNativeDecoder(capturing(handles, adapterHandles), f.cfg, f.modelDir, null);
    const other = createNativeDecoder(capturing(handles, adapterHandles), f.cfg, f.modelDir, null);
    const [h, otherH] = handles as [Handle, Handle];
    decoder.loadAdapter(f.adapters[0]);
    other.loadAdapter(f.adapters[1]);
    const [mine, foreign] = adapterHandles as [AdapterHandle, AdapterHandle];
    const V = f.cfg.vocabSize;
    const s0 = decoder.sequence();
    const s1 = decoder.sequence();
    await s1.step(3, 0); // s1 continues at position 1
    const slot0 = 0;
    const slot1 = 1;
    expect([s0.length, s1.length]).toEqual([0, 1]);
    const i32 = (...v: number[]) => Int32Array.from(v);
    /** decodeBatch with these rows (slot, token, position, adapter, want) and a logits array of the right size unless given. */
    const batch = (rows: [number, number, number, AdapterHandle | null | unknown, number][], logits?: Float32Array) => () =>
      a.decodeBatch(h, i32(...rows.map((r) => r[0])), i32(...rows.map((r) => r[1])), i32(...rows.map((r) => r[2])), rows.map((r) => r[3]) as AdapterHandle[], Uint8Array.from(rows.map((r) => r[4])),
        logits ?? new Float32Array(rows.filter((r) => r[4]).length * V));
    const message = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        return `${(e as { code?: string }).code}: ${(e as Error).message}`;
      }
      return 'nothing thrown';
    };
    expect(message(batch([]))).toMatch(/^BAD_STEP: .*at least one row/);
    expect(message(batch([[7, 1, 0, null, 1]]))).toMatch(/^BAD_STEP: .*row 0: slot 7 is not a live/);
    expect(message(batch([[slot0, 1, 0, null, 1], [slot1, 1, 1, null, 1], [slot0, 2, 1, null, 1]]))).toMatch(/^BAD_STEP: .*row 2: the rows of slot 0 must be consecutive/);
    expect(message(batch([[slot0, 1, 1, null, 1]]))).toMatch(/^BAD_STEP: .*row 0: position 1, but slot 0 continues at position 0/);
    expect(message(batch([[slot1, 1, 0, null, 1]]))).toMatch(/continues at position 1/); // the cache already holds position 0
    expect(message(batch([[slot0, 1, 0, null, 1], [slot0, 2, 2, null, 1]]))).toMatch(/row 1: position 2, but slot 0 continues at position 1/); // a gap in a chunk
    expect(message(batch([[slot0, V, 0, null, 1]]))).toMatch(/^BAD_STEP: .*row 0: token 67 is not a vocabulary id/);
    expect(message(batch([[slot0, -1, 0, null, 1]]))).toMatch(/^BAD_STEP: .*token -1/);
    expect(message(batch([[slot0, 1, 0, null, 1], [slot1, 1, 1, null, 0]], new Float32Array(2 * V)))).toMatch(/^BAD_STEP: .*logits must be a Float32Array of 1 x 67/);
    expect(message(batch([[slot0, 1, 0, null, 1]], new Float32Array(V - 1)))).toMatch(/^BAD_STEP: .*logits/);
    expect(message(batch([[slot0, 1, 0, h, 1]]))).toMatch(/^BAD_STEP: .*neither an adapter handle nor null/); // a decoder handle is not an adapter
    expect(message(batch([[slot0, 1, 0, {}, 1]]))).toMatch(/^BAD_STEP: .*neither an adapter/);
    expect(message(batch([[slot0, 1, 0, foreign, 1]]))).toMatch(/^BAD_STEP: .*made for another decoder/);
    const call = (...args: unknown[]) => () => (a.decodeBatch as (...x: unknown[]) => unknown)(...args);
    const logits = new Float32Array(V);
    expect(thrownCode(call(h, [slot0], i32(1), i32(0), [null], Uint8Array.of(1), logits))).toBe('BAD_STEP'); // slots not an Int32Array
    expect(thrownCode(call(h, i32(slot0), i32(1, 2), i32(0), [null], Uint8Array.of(1), logits))).toBe('BAD_STEP'); // tokens of another length
    expect(thrownCode(call(h, i32(slot0), i32(1), i32(0), [null, null], Uint8Array.of(1), logits))).toBe('BAD_STEP'); // adapters of another length
    expect(thrownCode(call(h, i32(slot0), i32(1), i32(0), [null], Int8Array.of(1), logits))).toBe('BAD_STEP'); // wantLogits not a Uint8Array
    expect(thrownCode(call(h, i32(slot0), i32(1), i32(0), [null], Uint8Array.of(1)))).toBe('BAD_STEP'); // no logits
    expect(thrownCode(call({}, i32(slot0), i32(1), i32(0), [null], Uint8Array.of(1), logits))).toBe('BAD_STEP');
    expect(thrownCode(() => a.cacheFork(h, slot1, 2))).toBe('BAD_STEP'); // longer than cached
    expect(message(() => a.cacheFork(h, slot1, 2))).toBe('BAD_STEP: cacheFork: length must be between 0 and the cached length');
    expect(message(() => (a.cacheFork as (...x: unknown[]) => unknown)(h, slot1))).toBe('BAD_STEP: cacheFork(handle, slot, length)');
    expect(message(() => a.cacheExport(h, slot1, 2, [], []))).toBe('BAD_STEP: cacheExport: length must be between 0 and the cached length');
    expect(thrownCode(() => a.cacheFork(h, 9, 0))).toBe('BAD_STEP');
    // createAdapter checks the spec against the decoder's dims
    expect(thrownCode(() => a.createAdapter(h, { layer: [] }))).toBe('BAD_SPEC');
    expect(thrownCode(() => a.createAdapter(h, { layer: [{ lora: { q_proj: { a: new Float32Array(3), b: new Float32Array(3), r: 1, scale: 1 } } }, {}] }))).toBe('BAD_SPEC');
    expect(thrownCode(() => a.createAdapter({} as Handle, { layer: [] }))).toBe('BAD_SPEC');
    expect(thrownCode(() => a.releaseAdapter(h as unknown as AdapterHandle))).toBe('BAD_ARG');
    // nothing was queued or appended, and a good batch (one without any logits, too) still runs
    expect([s0.length, s1.length]).toEqual([0, 1]);
    expect(await decoder.stepBatch([{ sequence: s0, token: 1, position: 0, wantLogits: false }, { sequence: s1, token: 2, position: 1, wantLogits: false }])).toEqual([]);
    expect([s0.length, s1.length]).toEqual([1, 2]);
    // a logits buffer too small for the rows that want logits is refused before anything runs
    await expect(decoder.stepBatch([{ sequence: s0, token: 3, position: 1, wantLogits: true }], new Float32Array(2))).rejects.toMatchObject({ code: 'INTERNAL' });
    expect(s0.length).toBe(1);
    await a.decodeBatch(h, i32(slot0), i32(4), i32(1), [mine], Uint8Array.of(1), logits);
    expect(s0.length).toBe(2);
    for (const d of [decoder, other]) d.release();
    expect(thrownCode(() => a.createAdapter(otherH, { layer: [] }))).toBe('RELEASED');
  });

  it('a released adapter is RELEASED; while a step runs: steps are BUSY, so is releasing its adapter or freeing its sequences', async () => {
    const f = fixtureOf(0);
    const decoder = createNativeDecoder(addon(), f.cfg, f.modelDir, null);
    const one = decoder.loadAdapter(f.adapters[0]);
    const two = decoder.loadAdapter(f.adapters[1]);
    const [s0, s1, spare] = [decoder.sequence(), decoder.sequence(), decoder.sequence()];
    two.release();
    two.release(); // twice is fine
    await expect(decoder.stepBatch([{ sequence: s0, token: 1, position: 0, adapter: two, wantLogits: true }])).rejects.toMatchObject({ code: 'RELEASED' });
    const running = decoder.stepBatch([{ sequence: s0, token: 1, position: 0, adapter: one, wantLogits: true }, { sequence: s1, token: 2, position: 0, wantLogits: true }]);
    await expect(decoder.stepBatch([{ sequence: spare, token: 1, position: 0, wantLogits: true }])).rejects.toMatchObject({ code: 'BUSY' });
    await expect(spare.step(1, 0)).rejects.toMatchObject({ code: 'BUSY' });
    expect(thrownCode(() => one.release())).toBe('BUSY');
    expect(thrownCode(() => s1.free())).toBe('BUSY'); // a row of the running step
    expect(thrownCode(() => s0.fork(0))).toBe('BUSY');
    spare.free(); // a sequence outside the step may go
    const out = await running;
    expect(out.length).toBe(2);
    one.release(); // free once the step is done
    const single = createNativeDecoder(addon(), f.cfg, f.modelDir, f.adapters[0]);
    expect(sameBits(out[0]!, (await runAlone(single, [1])).logits[0]!)).toBe(true); // the running step was not disturbed
    await expect(decoder.stepBatch([{ sequence: s0, token: 1, position: 1, adapter: one, wantLogits: true }])).rejects.toMatchObject({ code: 'RELEASED' });
    for (const s of [s0, s1]) s.free();
    single.release();
    decoder.release();
    await expect(decoder.stepBatch([{ sequence: s0, token: 1, position: 0, wantLogits: true }])).rejects.toMatchObject({ code: 'RELEASED' });
  });
});

// MORRIS_NATIVE_ISA is read once when the addon loads, so each ISA runs in its own process.
const childScript = `
  const { nativeAddon } = await import(${JSON.stringify(resolve('src/model/inference/native-addon.ts'))});
  const { createNativeDecoder } = await import(${JSON.stringify(resolve('src/model/inference/native-decoder.ts'))});
  const { openCheckpoint } = await import(${JSON.stringify(resolve('src/model/checkpoint/config.ts'))});
  const { readAdapter } = await import(${JSON.stringify(resolve('src/model/checkpoint/lora.ts'))});
  const h = await import(${JSON.stringify(resolve('tests/model/native-helpers.ts'))});
  const [modelDir, a1, a2] = process.argv.slice(-3);
  const { addon, reason } = nativeAddon();
  if (!addon) throw new Error(reason);
  const cfg = openCheckpoint(modelDir).config;
  const ads = [null, readAdapter(a1, cfg), readAdapter(a2, cfg)];
  const alone = ads.map((ad) => createNativeDecoder(addon, cfg, modelDir, ad));
  const batched = createNativeDecoder(addon, cfg, modelDir, null);
  const loaded = [null, batched.loadAdapter(ads[1]), batched.loadAdapter(ads[2])];
  const results = [];
  for (const chunks of h.CHUNKINGS) {
    const plans = h.mixedPlans(chunks, cfg.vocabSize);
    results.push(await h.compareBatchedToAlone(await h.runBatched(batched, plans, loaded), plans, alone));
  }
  process.stdout.write(JSON.stringify({ isa: addon.kernelInfo().isa, results }));
`;

function runWithIsa(isa: string, f: Fixture): Promise<{ isa: string; results: { compared: number; mismatches: string[] }[] }> {
  return runWithIsaScript(isa, childScript, [f.modelDir, ...f.adapterDirs]);
}

describe('each instruction set', () => {
  it('MORRIS_NATIVE_ISA=avx2 and =scalar: batched rows bitwise as single steps with that kernel', async () => {
    const f = fixtureOf(0);
    const host = addon().kernelInfo().isa;
    const expected = { avx2: host === 'scalar' ? 'scalar' : 'avx2', scalar: 'scalar' };
    const results = await Promise.all((['avx2', 'scalar'] as const).map((isa) => runWithIsa(isa, f)));
    (['avx2', 'scalar'] as const).forEach((isa, i) => {
      expect(results[i]!.isa).toBe(expected[isa]);
      for (const r of results[i]!.results) {
        expect(r.mismatches, `MORRIS_NATIVE_ISA=${isa}`).toEqual([]);
        expect(r.compared).toBeGreaterThan(20);
      }
    });
  });
});
