/**
 * Batched decode step benchmark (the native kernel's decodeBatch, NativeDecoder.stepBatch) on a
 * random model with SmolLM2-135M dimensions, fp32 and int8, one thread.
 *
 * Decode on the CPU is bound by reading the weights, so a step that advances B sequences should
 * cost little more than a step that advances one: each matrix is streamed once for all B rows.
 * For B = 1, 2, 4, 8, 16 (each row a different sequence with ~100 cached positions) it times one
 * batched step against B single-row decodeStep calls, and a 64-row prefill chunk of one prompt
 * against 64 single steps. scale_B = B × step_ms_1 / step_ms_B is the throughput gain of batching
 * (tokens per second at B rows over tokens per second at one row); single_ms_B the time of the
 * B single steps it replaces. Each figure is the median of --reps runs, batched and single runs
 * interleaved so the VM's drifting bandwidth hits both alike. matrix_ms_B is the part of the
 * batched step spent in the base weights' matrix products (the decoder's profile counter), so a
 * step splits into the weight stream with the rows' arithmetic and everything else (attention
 * over each row's cache, norms, the call). Batched steps write their logits into one buffer, as
 * the service's batch loop does.
 *
 *   npm run bench:batch-step [-- --reps 7 --quants fp32,int8 --positions 100]
 *
 * The last line of output is one JSON object: step_ms_B, matrix_ms_B, single_ms_B, scale_B for fp32 and
 * int8_step_ms_B, int8_matrix_ms_B, int8_single_ms_B, int8_scale_B, prefill64_ms, prefill64_single_ms, step_ms_8_lora
 * (8 rows, two rank-8 adapters and none mixed) and the same with int8_.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openCheckpoint } from '../src/model/checkpoint/config.ts';
import { readAdapter } from '../src/model/checkpoint/lora.ts';
import { writeRandomAdapter, writeRandomCheckpoint } from '../src/model/checkpoint/random-checkpoint.ts';
import { LORA_MODULES } from '../src/model/graph/llama.ts';
import { compileModel } from '../src/model/graph/compile.ts';
import { nativeAddon } from '../src/model/inference/native-addon.ts';
import { createNativeDecoder, type NativeAdapter, type NativeDecoder, type NativeSequence } from '../src/model/inference/native-decoder.ts';

const SMOLLM2_135M = {
  model_type: 'llama', hidden_size: 576, intermediate_size: 1536, num_hidden_layers: 30, num_attention_heads: 9, num_key_value_heads: 3,
  vocab_size: 49152, max_position_embeddings: 2048, rms_norm_eps: 1e-5, rope_theta: 100000, tie_word_embeddings: true,
};
const BATCHES = [1, 2, 4, 8, 16];
const CHUNK = 64;

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}
/** Cached positions of every row: attention's share of a step grows with it (an article runs to 400-800). */
const CACHED = Number(arg('positions', '100'));
const reps = Number(arg('reps', '7'));
const quants = arg('quants', 'fp32,int8').split(',') as ('fp32' | 'int8')[];

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const token = (i: number): number => (i * 7919) % SMOLLM2_135M.vocab_size;

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

/** A sequence with `n` cached positions, prefilled natively in chunks. */
async function prefilled(decoder: NativeDecoder, n: number, seed: number): Promise<NativeSequence> {
  const seq = decoder.sequence();
  for (let p = 0; p < n; p += CHUNK) {
    const rows = Array.from({ length: Math.min(CHUNK, n - p) }, (_, j) => ({ sequence: seq, token: token(seed * 1000 + p + j), position: p + j, wantLogits: false }));
    await decoder.stepBatch(rows);
  }
  return seq;
}

async function benchQuant(decoder: NativeDecoder, adapters: readonly NativeAdapter[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  const maxB = BATCHES.at(-1)!;
  const into = new Float32Array(maxB * decoder.vocab);
  // two sets of sequences at the same length, one stepped batched and one single, so both see the same cache sizes
  const batched = await Promise.resolve().then(async () => { const s: NativeSequence[] = []; for (let i = 0; i < maxB; i++) s.push(await prefilled(decoder, CACHED, i)); return s; });
  const single = await Promise.resolve().then(async () => { const s: NativeSequence[] = []; for (let i = 0; i < maxB; i++) s.push(await prefilled(decoder, CACHED, i)); return s; });
  for (const B of BATCHES) {
    const tb: number[] = [];
    const tm: number[] = [];
    const ts: number[] = [];
    for (let r = 0; r < reps + 1; r++) {
      const m0 = decoder.profile()!.matrixMs;
      const b = await timed(() => decoder.stepBatch(batched.slice(0, B).map((sequence, i) => ({ sequence, token: token(r * 31 + i), position: sequence.length, wantLogits: true })), into));
      const m = decoder.profile()!.matrixMs - m0;
      const s = await timed(async () => {
        for (const [i, seq] of single.slice(0, B).entries()) await seq.step(token(r * 31 + i), seq.length);
      });
      if (r > 0) { tb.push(b); tm.push(m); ts.push(s); } // the first run warms the scratch buffers and caches
    }
    out[`step_ms_${B}`] = median(tb);
    out[`matrix_ms_${B}`] = median(tm);
    out[`single_ms_${B}`] = median(ts);
  }
  for (const B of BATCHES) out[`scale_${B}`] = (B * out['step_ms_1']!) / out[`step_ms_${B}`]!;
  // 8 rows with mixed LoRA adapters (rank 8 on all 7 modules): two adapters and none, as a multi-tenant server runs them
  const tl: number[] = [];
  for (let r = 0; r < reps + 1; r++) {
    const t = await timed(() => decoder.stepBatch(batched.slice(0, 8).map((sequence, i) => ({ sequence, token: token(r * 17 + i), position: sequence.length, adapter: i % 3 === 2 ? null : adapters[i % 3]!, wantLogits: true })), into));
    if (r > 0) tl.push(t);
  }
  out['step_ms_8_lora'] = median(tl);
  for (const s of [...batched, ...single]) s.free();
  // one prompt: a 64-row chunk (logits for its last row only) against 64 single steps
  const tp: number[] = [];
  const tps: number[] = [];
  for (let r = 0; r < Math.max(3, Math.ceil(reps / 2)); r++) {
    const seq = decoder.sequence();
    tp.push(await timed(() => decoder.stepBatch(Array.from({ length: CHUNK }, (_, j) => ({ sequence: seq, token: token(j + r), position: j, wantLogits: j === CHUNK - 1 })))));
    seq.free();
    const alone = decoder.sequence();
    tps.push(await timed(async () => { for (let j = 0; j < CHUNK; j++) await alone.step(token(j + r), j); }));
    alone.free();
  }
  out['prefill64_ms'] = median(tp);
  out['prefill64_single_ms'] = median(tps);
  return out;
}

async function main(): Promise<void> {
  const { addon, reason } = nativeAddon();
  if (!addon) throw new Error(reason);
  const root = mkdtempSync(join(tmpdir(), 'morris-batch-bench-'));
  const result: Record<string, number | string> = { isa: addon.kernelInfo().isa, reps, cached_positions: CACHED };
  try {
    const modelDir = join(root, 'smollm2-135m-random');
    writeRandomCheckpoint(modelDir, { config: SMOLLM2_135M, seed: 0, std: 0.05 });
    const cfg = openCheckpoint(modelDir).config;
    const adapterDirs = [1, 2].map((seed) => {
      const dir = join(root, `adapter-${seed}`);
      writeRandomAdapter(dir, cfg, { r: 8, alpha: 16, targets: LORA_MODULES, seed });
      return dir;
    });
    for (const quant of quants) {
      const q = quant === 'fp32' ? null : (await compileModel({ modelDir, quant, cacheDir: join(root, 'cache') })).quantized;
      const decoder = createNativeDecoder(addon, cfg, modelDir, null, q, { profile: true });
      const adapters = adapterDirs.map((dir) => decoder.loadAdapter(readAdapter(dir, cfg)));
      let figures: Record<string, number>;
      try {
        figures = await benchQuant(decoder, adapters);
      } finally {
        for (const a of adapters) a.release();
        decoder.release();
      }
      console.log(`\n${quant} (${addon.kernelInfo()[quant === 'fp32' ? 'isa' : 'quantIsa']}), rows at ~${CACHED} cached positions, median of ${reps}:`);
      console.log('  B   batched step ms   of it matrices   B single steps ms   tokens/s batched   scale (B x step_1 / step_B)');
      for (const B of BATCHES) {
        const ms = figures[`step_ms_${B}`]!;
        console.log(`  ${String(B).padStart(2)}  ${ms.toFixed(1).padStart(16)}  ${figures[`matrix_ms_${B}`]!.toFixed(1).padStart(15)}  ${figures[`single_ms_${B}`]!.toFixed(1).padStart(18)}  ${((1000 * B) / ms).toFixed(0).padStart(16)}   ${figures[`scale_${B}`]!.toFixed(2)}`);
      }
      console.log(`  8 rows with two LoRA adapters (rank 8) and none mixed: ${figures['step_ms_8_lora']!.toFixed(1)} ms`);
      console.log(`  prefill of ${CHUNK} tokens: one chunk ${figures['prefill64_ms']!.toFixed(1)} ms, ${CHUNK} single steps ${figures['prefill64_single_ms']!.toFixed(1)} ms`);
      const prefix = quant === 'fp32' ? '' : `${quant}_`;
      for (const [k, v] of Object.entries(figures)) result[prefix + k] = Math.round(v * 1000) / 1000;
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  console.log(JSON.stringify(result));
}

await main();
