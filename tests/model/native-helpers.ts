/**
 * Teacher-forced decode through the native kernel, and batched runs compared bitwise with each
 * sequence alone, shared by native-decode.test.ts, native-batch.test.ts and the child processes
 * they start with MORRIS_NATIVE_ISA set (so it holds no vitest imports).
 */
import { spawn } from 'node:child_process';
import type { DecoderConfig } from '../../src/model/checkpoint/config.ts';
import type { BatchRow, KvArrays, NativeAdapter, NativeDecoder, NativeSequence } from '../../src/model/inference/native-decoder.ts';

/**
 * Logits at every position of `ids`, one native step per token. Halfway through, the cache is
 * exported in the ONNX layout and imported into a fresh sequence, so that round trip (the path
 * an ONNX prefill takes into the kernel) is checked by every comparison too.
 */
export async function teacherForced(decoder: NativeDecoder, cfg: DecoderConfig, ids: readonly number[]): Promise<Float32Array[]> {
  let seq = decoder.sequence();
  const rows: Float32Array[] = [];
  for (let t = 0; t < ids.length; t++) {
    if (t === Math.floor(ids.length / 2)) {
      const kv = seq.export();
      if (kv.keys.length !== cfg.numLayers || kv.keys[0]!.length !== t * cfg.numKvHeads * cfg.headDim) throw new Error(`export gave the wrong shape at ${t}`);
      seq.free();
      seq = decoder.sequence(kv);
    }
    rows.push(await seq.step(ids[t]!, t));
  }
  seq.free();
  return rows;
}

/** One sequence of a batched run: its tokens, how many of them are prompt (prefilled in chunks), the step it joins at. */
export interface SequencePlan {
  ids: readonly number[];
  prompt: number;
  join: number;
  /** Prompt chunk sizes, used in turn (the last chunk is cut to what is left of the prompt). */
  chunks: readonly number[];
  /** Index into the adapters of the run (null there: the decoder's own). */
  adapter: number;
}

export interface BatchedRun {
  /** Logits of every row that wanted them, by sequence and position. */
  logits: Map<number, Float32Array>[];
  /** Each sequence's whole cache, exported as it leaves. */
  kv: KvArrays[];
  steps: number;
  maxRows: number;
}

/**
 * Runs the plans through stepBatch: sequences join at their step, prefill their prompt in chunks
 * while others decode one row a step, and leave (freed) when done. Some prompt rows skip the LM
 * head (wantLogits false) so rows without logits mix with rows with.
 */
export async function runBatched(decoder: NativeDecoder, plans: readonly SequencePlan[], adapters: readonly (NativeAdapter | null)[]): Promise<BatchedRun> {
  const state = plans.map(() => ({ seq: null as NativeSequence | null, pos: 0, chunk: 0, done: false }));
  const out: BatchedRun = { logits: plans.map(() => new Map()), kv: [], steps: 0, maxRows: 0 };
  while (state.some((s) => !s.done)) {
    const rows: BatchRow[] = [];
    const wanted: [number, number][] = [];
    plans.forEach((plan, i) => {
      const s = state[i]!;
      if (s.done || out.steps < plan.join) return;
      s.seq ??= decoder.sequence();
      const inPrompt = s.pos < plan.prompt;
      const n = inPrompt ? Math.min(plan.chunks[s.chunk++ % plan.chunks.length]!, plan.prompt - s.pos) : 1;
      for (let j = 0; j < n; j++) {
        const p = s.pos + j;
        const want = !inPrompt || j === n - 1 || p % 3 === 0;
        rows.push({ sequence: s.seq, token: plan.ids[p]!, position: p, adapter: adapters[plan.adapter] ?? null, wantLogits: want });
        if (want) wanted.push([i, p]);
      }
      s.pos += n;
    });
    const logits = await decoder.stepBatch(rows);
    if (logits.length !== wanted.length) throw new Error(`stepBatch gave ${logits.length} logits rows for ${wanted.length} wanted`);
    wanted.forEach(([i, p], k) => out.logits[i]!.set(p, logits[k]!));
    out.maxRows = Math.max(out.maxRows, rows.length);
    out.steps++;
    plans.forEach((plan, i) => {
      const s = state[i]!;
      if (!s.done && s.seq && s.pos === plan.ids.length) {
        out.kv[i] = s.seq.export();
        s.seq.free();
        s.done = true;
      }
    });
  }
  return out;
}

/** The same sequence alone, one decodeStep per token: every position's logits and the final cache. */
export async function runAlone(decoder: NativeDecoder, ids: readonly number[]): Promise<{ logits: Float32Array[]; kv: KvArrays }> {
  const seq = decoder.sequence();
  const logits: Float32Array[] = [];
  for (let t = 0; t < ids.length; t++) logits.push(await seq.step(ids[t]!, t));
  const kv = seq.export();
  seq.free();
  return { logits, kv };
}

export const sameBits = (a: Float32Array, b: Float32Array): boolean =>
  a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/**
 * Every wanted row of a batched run, and every sequence's cache, against the sequence run alone on
 * `alone[plan.adapter]` (a decoder with that adapter built in). Returns what differs, bitwise.
 */
export async function compareBatchedToAlone(run: BatchedRun, plans: readonly SequencePlan[], alone: readonly NativeDecoder[]): Promise<{ compared: number; mismatches: string[] }> {
  const mismatches: string[] = [];
  let compared = 0;
  for (const [i, plan] of plans.entries()) {
    const ref = await runAlone(alone[plan.adapter]!, plan.ids);
    for (const [p, row] of run.logits[i]!) {
      compared++;
      if (!sameBits(row, ref.logits[p]!)) mismatches.push(`sequence ${i} position ${p}: logits differ`);
    }
    const kv = run.kv[i]!;
    kv.keys.forEach((k, l) => {
      if (!sameBits(k, ref.kv.keys[l]!) || !sameBits(kv.values[l]!, ref.kv.values[l]!)) mismatches.push(`sequence ${i} layer ${l}: K/V differ`);
    });
  }
  return { compared, mismatches };
}

/** Four sequences of different lengths and adapters (0, 1, 2 and 1 again), joining at steps 0, 0, 2 and 4. */
export function mixedPlans(chunks: readonly (readonly number[])[], vocab: number): SequencePlan[] {
  const ids = (n: number, seed: number) => Array.from({ length: n }, (_, i) => (i * 37 + seed * 11 + ((i * i) % 7)) % vocab);
  return [
    { ids: ids(12, 1), prompt: 7, join: 0, chunks: chunks[0]!, adapter: 0 },
    { ids: ids(9, 2), prompt: 3, join: 0, chunks: chunks[1]!, adapter: 1 },
    { ids: ids(15, 3), prompt: 11, join: 2, chunks: chunks[2]!, adapter: 2 },
    { ids: ids(8, 4), prompt: 5, join: 4, chunks: chunks[3]!, adapter: 1 },
  ];
}

/** Chunkings of the prompts: mixed sizes, one token at a time, each prompt in one chunk. */
export const CHUNKINGS: readonly (readonly (readonly number[])[])[] = [
  [[4, 1, 2], [2], [5, 3], [1, 4]],
  [[1], [1], [1], [1]],
  [[64], [64], [64], [64]],
];

/**
 * Runs `script` (an ES module's source) in a child process with MORRIS_NATIVE_ISA=isa, so the addon
 * picks that kernel at load, and returns the JSON it prints.
 */
export function runWithIsaScript<T>(isa: string, script: string, args: readonly string[]): Promise<T> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, ...args], {
      env: { ...process.env, MORRIS_NATIVE_ISA: isa, LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', fail);
    child.on('exit', (code, signal) => (code === 0 ? done(JSON.parse(out) as T) : fail(new Error(`MORRIS_NATIVE_ISA=${isa} child exited ${code ?? signal}: ${err}`))));
  });
}

/** The `code` of what `fn` throws (the addon throws plain Errors with a code, never crashes). */
export function thrownCode(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return String((e as { code?: unknown }).code);
  }
  return 'nothing thrown';
}
