/**
 * Generation benchmark on a random model with SmolLM2-135M dimensions (30 layers, hidden 576,
 * 9 heads, 3 KV heads, intermediate 1536, vocab 49152, tied embeddings).
 *
 * Measures, in the same run: the machine's memory bandwidth (one-thread read through ONNX Runtime
 * and a memcpy), then for fp32, int8 and int4 (each in its own child process so peak RSS is per
 * variant): time to first token, decode tokens/s through the real engine (transformers.js +
 * our graph, one intra-op thread), weight bytes read per token and the roofline they imply
 * (bandwidth ÷ bytes per token), and for int8/int4 the quality loss against fp32 on a fixed text
 * (relative logit error, top-1 agreement, perplexity ratio).
 *
 *   npm run bench:generate [-- --tokens 64 --quants fp32,int8,int4 --threads 1]
 *
 * The last line of output is one JSON object with all figures.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileModel, type Quant } from '../src/model/compile.ts';
import { loadModel } from '../src/model/engine.ts';
import { GraphBuilder } from '../src/model/onnx/builder.ts';
import { createSession, float32Tensor, int64Tensor, Tensor, type OrtTensor } from '../src/model/ort.ts';
import { writeRandomCheckpoint } from '../src/model/random-checkpoint.ts';
import { readCheckpointTensors } from '../src/model/safetensors.ts';

const SMOLLM2_135M = {
  model_type: 'llama', hidden_size: 576, intermediate_size: 1536, num_hidden_layers: 30, num_attention_heads: 9, num_key_value_heads: 3,
  vocab_size: 49152, max_position_embeddings: 2048, rms_norm_eps: 1e-5, rope_theta: 100000, tie_word_embeddings: true, eos_token_id: 258,
};
const PROMPT = 'Morris wrote about the city every Sunday, and this week the topic was the late trains. ';
const QUALITY_TEXT = 'The committee met on Tuesday to discuss the budget, the new library and the bus routes.';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

/** Best of several one-thread passes: ORT ReduceSum over 256 MiB (read) and a TypedArray memcpy (read + write). */
async function measureBandwidth(): Promise<{ read_gb_s: number; copy_gb_s: number; read_cpu_gb_s: number }> {
  const n = 64 * 1024 * 1024;
  const data = new Float32Array(n).fill(1);
  const g = new GraphBuilder();
  const x = g.input('x', 'float32', [n]);
  g.output(g.op('ReduceSum', [x], { keepdims: 0 }), 'sum');
  const { session } = await createSession(g.serialize(), { threads: 1 });
  const feed = { x: float32Tensor(data, [n]) };
  let best = Infinity;
  let bestCpu = Infinity;
  for (let i = 0; i < 6; i++) {
    const t = performance.now();
    const c = process.cpuUsage();
    await session.run(feed);
    const cpu = process.cpuUsage(c);
    best = Math.min(best, performance.now() - t);
    bestCpu = Math.min(bestCpu, (cpu.user + cpu.system) / 1000);
  }
  await session.release();
  const dst = new Float32Array(n);
  let bestCopy = Infinity;
  for (let i = 0; i < 6; i++) {
    const t = performance.now();
    dst.set(data);
    bestCopy = Math.min(bestCopy, performance.now() - t);
  }
  return { read_gb_s: (n * 4) / best / 1e6, copy_gb_s: (2 * n * 4) / bestCopy / 1e6, read_cpu_gb_s: (n * 4) / Math.max(bestCpu, best / 4) / 1e6 };
}

/** Bytes of weights one decode step reads: every matrix once (the tied embedding as LM head), KV cache aside. */
function weightBytesPerToken(modelDir: string, compiledDir: string, quant: Quant): number {
  const tensors = [...readCheckpointTensors(modelDir).values()];
  if (quant === 'fp32') return tensors.reduce((a, t) => a + t.length, 0);
  const norms = tensors.filter((t) => t.shape.length === 1).reduce((a, t) => a + t.length, 0);
  return statSync(join(compiledDir, 'onnx', 'quant.bin')).size + norms; // all matrices incl. LM head are quantized
}

async function child(modelDir: string, quant: Quant, tokens: number, threads: number, cacheDir: string, logitsFile: string): Promise<void> {
  const t0 = performance.now();
  const model = await loadModel({ modelDir, quant, threads, device: 'cpu', cacheDir });
  const loadMs = performance.now() - t0;
  const greedy = { temperature: 0, topP: 1, topK: 0, repetitionPenalty: 1 };
  for await (const _ of model.stream({ text: PROMPT }, { ...greedy, maxNewTokens: 4 })); // warm-up
  for await (const _ of model.stream({ text: PROMPT }, { ...greedy, maxNewTokens: tokens }));
  const s = model.lastStats!;
  const peakRssMb = Math.round(process.resourceUsage().maxRSS / 1024); // engine only, before the quality session below
  await model.dispose();

  // quality: teacher-forced logits of a fixed text through the same compiled graph
  const compiled = await compileModel({ modelDir, quant, cacheDir });
  const { session } = await createSession(compiled.onnxFile, { threads });
  const ids = [...Buffer.from(QUALITY_TEXT)];
  const c = compiled.config;
  const feed: Record<string, OrtTensor> = {
    input_ids: int64Tensor(ids, [1, ids.length]),
    attention_mask: int64Tensor(ids.map(() => 1), [1, ids.length]),
    position_ids: int64Tensor(ids.map((_, i) => i), [1, ids.length]),
    num_logits_to_keep: int64Tensor([0], []),
  };
  for (let l = 0; l < c.numLayers; l++) for (const k of ['key', 'value']) feed[`past_key_values.${l}.${k}`] = new Tensor('float32', new Float32Array(0), [1, c.numKvHeads, 0, c.headDim]);
  const out = await session.run(feed);
  const logits = out['logits']!.data as Float32Array;
  writeFileSync(logitsFile, logits);
  // Decode steps through the same graph, timed in CPU time as well: on a shared machine wall time
  // also counts the time other processes hold the core.
  let pastLen = ids.length;
  for (let l = 0; l < c.numLayers; l++) for (const k of ['key', 'value']) feed[`past_key_values.${l}.${k}`] = out[`present.${l}.${k}`]!;
  const steps = 24;
  const w0 = performance.now();
  const c0 = process.cpuUsage();
  for (let i = 0; i < steps; i++) {
    const step = await session.run({
      ...feed,
      input_ids: int64Tensor([65], [1, 1]),
      attention_mask: int64Tensor(Array(pastLen + 1).fill(1), [1, pastLen + 1]),
      position_ids: int64Tensor([pastLen], [1, 1]),
      num_logits_to_keep: int64Tensor([1], []),
    });
    for (let l = 0; l < c.numLayers; l++) for (const k of ['key', 'value']) feed[`past_key_values.${l}.${k}`] = step[`present.${l}.${k}`]!;
    pastLen++;
  }
  const cpu = process.cpuUsage(c0);
  const rawWallMs = performance.now() - w0;
  const rawCpuMs = (cpu.user + cpu.system) / 1000;
  await session.release();
  const bytes = weightBytesPerToken(modelDir, compiled.dir, quant);
  console.log(JSON.stringify({
    quant,
    load_ms: Math.round(loadMs),
    prompt_tokens: s.promptTokens,
    generated_tokens: s.generatedTokens,
    ttft_ms: +s.ttftMs.toFixed(1),
    decode_tok_s: +((s.generatedTokens - 1) / (s.decodeMs / 1000)).toFixed(2),
    decode_tok_s_median: +(1000 / median(s.intervalsMs)).toFixed(2),
    raw_decode_tok_s: +(steps / (rawWallMs / 1000)).toFixed(2),
    raw_decode_tok_per_cpu_s: +(steps / (rawCpuMs / 1000)).toFixed(2),
    weight_mb_per_token: +(bytes / 1e6).toFixed(1),
    peak_rss_mb: peakRssMb,
  }));
}

function median(xs: number[]): number {
  const v = [...xs].sort((a, b) => a - b);
  return v.length % 2 ? v[(v.length - 1) / 2]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
}

function quality(ref: Float32Array, q: Float32Array, vocab: number, ids: number[]) {
  let maxDiff = 0;
  let maxRef = 0;
  let agree = 0;
  let nllRef = 0;
  let nllQ = 0;
  const rows = ref.length / vocab;
  const logSoftmaxAt = (x: Float32Array, off: number, t: number) => {
    let m = -Infinity;
    for (let i = 0; i < vocab; i++) m = Math.max(m, x[off + i]!);
    let z = 0;
    for (let i = 0; i < vocab; i++) z += Math.exp(x[off + i]! - m);
    return x[off + t]! - m - Math.log(z);
  };
  for (let r = 0; r < rows; r++) {
    const off = r * vocab;
    let a = 0;
    let b = 0;
    for (let i = 0; i < vocab; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(ref[off + i]! - q[off + i]!));
      maxRef = Math.max(maxRef, Math.abs(ref[off + i]!));
      if (ref[off + i]! > ref[off + a]!) a = i;
      if (q[off + i]! > q[off + b]!) b = i;
    }
    if (a === b) agree++;
    if (r + 1 < rows) {
      nllRef -= logSoftmaxAt(ref, off, ids[r + 1]!);
      nllQ -= logSoftmaxAt(q, off, ids[r + 1]!);
    }
  }
  return {
    logit_rel_err: +(maxDiff / maxRef).toExponential(2),
    top1_agreement: +(agree / rows).toFixed(3),
    ppl_ratio: +Math.exp((nllQ - nllRef) / (rows - 1)).toFixed(4),
  };
}

/** Quality on real weights: stories260K (../shared) teacher-forced over its golden ids. */
async function realWeightsQuality(cacheDir: string): Promise<Record<string, number>> {
  const dir = join(dirname(fileURLToPath(import.meta.url)), '../../shared/models/stories260K');
  if (!existsSync(join(dir, 'GOLDEN.json'))) {
    console.log(`stories260K quality check skipped: ${dir} is missing`);
    return {};
  }
  const golden = JSON.parse(readFileSync(join(dir, 'GOLDEN.json'), 'utf8')) as { prompts: { ids: number[] }[] };
  const ids = golden.prompts.flatMap((p) => p.ids.slice(0, -1)).slice(0, 150);
  const out: Record<string, number> = {};
  const logits: Record<string, Float32Array> = {};
  for (const quant of ['fp32', 'int8', 'int4'] as const) {
    const c = await compileModel({ modelDir: dir, quant, cacheDir });
    const { session } = await createSession(c.onnxFile);
    const feed: Record<string, OrtTensor> = {
      input_ids: int64Tensor(ids, [1, ids.length]),
      attention_mask: int64Tensor(ids.map(() => 1), [1, ids.length]),
      position_ids: int64Tensor(ids.map((_, i) => i), [1, ids.length]),
      num_logits_to_keep: int64Tensor([0], []),
    };
    for (let l = 0; l < c.config.numLayers; l++) for (const k of ['key', 'value']) feed[`past_key_values.${l}.${k}`] = new Tensor('float32', new Float32Array(0), [1, c.config.numKvHeads, 0, c.config.headDim]);
    logits[quant] = (await session.run(feed))['logits']!.data as Float32Array;
    await session.release();
    if (quant !== 'fp32') {
      const q = quality(logits['fp32']!, logits[quant]!, c.config.vocabSize, ids);
      for (const [k, v] of Object.entries(q)) out[`stories260k_${quant}_${k}`] = v;
    }
  }
  console.log(`stories260K (real weights) quality vs fp32: ${JSON.stringify(out)}`);
  return out;
}

async function main(): Promise<void> {
  if (process.argv.includes('--child')) {
    await child(arg('model', ''), arg('quant', 'fp32') as Quant, Number(arg('tokens', '64')), Number(arg('threads', '1')), arg('cache', ''), arg('logits', ''));
    return;
  }
  const tokens = Number(arg('tokens', '64'));
  const threads = Number(arg('threads', '1'));
  const quants = arg('quants', 'fp32,int8,int4').split(',') as Quant[];
  const root = mkdtempSync(join(tmpdir(), 'morris-bench-'));
  try {
    const modelDir = join(root, 'smollm2-135m-random');
    let t = performance.now();
    writeRandomCheckpoint(modelDir, { config: SMOLLM2_135M, seed: 0, std: 0.05 }, { tokenizer: true });
    console.log(`wrote random SmolLM2-135M-shaped checkpoint in ${Math.round(performance.now() - t)} ms`);
    const before = await measureBandwidth();
    console.log(`load average ${loadavg()[0]!.toFixed(2)} on ${cpus().length} cores: wall-clock figures include time other processes hold the core; *_cpu figures do not`);
    const results: Record<string, Record<string, number | string>> = {};
    const logits: Record<string, Float32Array> = {};
    for (const quant of quants) {
      t = performance.now();
      await compileModel({ modelDir, quant, cacheDir: join(root, 'cache') }); // compile (and quantize) outside the timed child
      console.log(`compiled ${quant} in ${Math.round(performance.now() - t)} ms`);
      const logitsFile = join(root, `logits-${quant}.bin`);
      const script = fileURLToPath(import.meta.url);
      const r = spawnSync(process.execPath, [...process.execArgv, script, '--child', '--model', modelDir, '--quant', quant, '--tokens', String(tokens), '--threads', String(threads), '--cache', join(root, 'cache'), '--logits', logitsFile], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      if (r.status !== 0) throw new Error(`benchmark child for ${quant} failed (exit ${r.status})`);
      const line = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, number | string>;
      const buf = readFileSync(logitsFile);
      logits[quant] = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
      if (quant !== 'fp32' && logits['fp32']) Object.assign(line, quality(logits['fp32'], logits[quant], SMOLLM2_135M.vocab_size, [...Buffer.from(QUALITY_TEXT)]));
      results[quant] = line;
      console.log(`${quant}: ${JSON.stringify(line)}`);
    }
    // Bandwidth measured before and after the runs; the best figure gives the strictest roofline.
    const after = await measureBandwidth();
    const bw = {
      read_gb_s: Math.max(before.read_gb_s, after.read_gb_s),
      copy_gb_s: Math.max(before.copy_gb_s, after.copy_gb_s),
      read_cpu_gb_s: Math.max(before.read_cpu_gb_s, after.read_cpu_gb_s),
    };
    const bandwidth = Math.max(bw.read_gb_s, bw.copy_gb_s);
    console.log(`memory bandwidth (1 thread, best of before/after): read ${bw.read_gb_s.toFixed(2)} GB/s (${bw.read_cpu_gb_s.toFixed(2)} per CPU-second), copy ${bw.copy_gb_s.toFixed(2)} GB/s → using ${bandwidth.toFixed(2)} GB/s`);
    for (const line of Object.values(results)) {
      const roofline = (bandwidth * 1e9) / ((line['weight_mb_per_token'] as number) * 1e6);
      line['roofline_tok_s'] = +roofline.toFixed(2);
      line['ratio'] = +((line['decode_tok_s'] as number) / roofline).toFixed(3);
      line['ratio_median'] = +((line['decode_tok_s_median'] as number) / roofline).toFixed(3);
      const rooflineCpu = (bw.read_cpu_gb_s * 1e9) / ((line['weight_mb_per_token'] as number) * 1e6);
      line['roofline_cpu_tok_s'] = +rooflineCpu.toFixed(2);
      line['ratio_cpu'] = +((line['raw_decode_tok_per_cpu_s'] as number) / rooflineCpu).toFixed(3);
    }
    const fp = results['fp32'];
    const summary: Record<string, number | string> = {
      model: 'random SmolLM2-135M dims',
      threads,
      bandwidth_gb_s: +bandwidth.toFixed(2),
      bandwidth_read_gb_s: +bw.read_gb_s.toFixed(2),
      bandwidth_copy_gb_s: +bw.copy_gb_s.toFixed(2),
      bandwidth_read_cpu_gb_s: +bw.read_cpu_gb_s.toFixed(2),
    };
    if (fp) {
      Object.assign(summary, {
        decode_tok_s: fp['decode_tok_s'], roofline_tok_s: fp['roofline_tok_s'], ratio: fp['ratio'], ttft_ms: fp['ttft_ms'], peak_rss_mb: fp['peak_rss_mb'],
        weight_mb_per_token: fp['weight_mb_per_token'],
        decode_tok_s_median: fp['decode_tok_s_median'], ratio_median: fp['ratio_median'],
        decode_tok_per_cpu_s: fp['raw_decode_tok_per_cpu_s'], roofline_cpu_tok_s: fp['roofline_cpu_tok_s'], ratio_cpu: fp['ratio_cpu'],
      });
    }
    for (const q of ['int8', 'int4'] as const) {
      const r = results[q];
      if (!r) continue;
      for (const k of ['decode_tok_s', 'decode_tok_s_median', 'ttft_ms', 'peak_rss_mb', 'weight_mb_per_token', 'roofline_tok_s', 'logit_rel_err', 'top1_agreement', 'ppl_ratio']) summary[`${q}_${k}`] = r[k]!;
      summary[`${q}_decode_tok_per_cpu_s`] = r['raw_decode_tok_per_cpu_s']!;
      if (fp) {
        summary[`${q}_speedup`] = +((r['decode_tok_s'] as number) / (fp['decode_tok_s'] as number)).toFixed(2);
        summary[`${q}_speedup_median`] = +((r['decode_tok_s_median'] as number) / (fp['decode_tok_s_median'] as number)).toFixed(2);
        summary[`${q}_speedup_cpu`] = +((r['raw_decode_tok_per_cpu_s'] as number) / (fp['raw_decode_tok_per_cpu_s'] as number)).toFixed(2);
      }
    }
    Object.assign(summary, await realWeightsQuality(join(root, 'cache')));
    console.log(JSON.stringify(summary));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
