/**
 * Generation benchmark on a random model with SmolLM2-135M dimensions (30 layers, hidden 576,
 * 9 heads, 3 KV heads, intermediate 1536, vocab 49152, tied embeddings).
 *
 * Measures, in the same run: the machine's one-thread memory bandwidth three ways (a read through
 * ONNX Runtime's ReduceSum, a memcpy, and a read with the native kernel's own vector loads, from
 * the read probes of scripts/native-probes.ts), then for fp32, int8 and int4, each with two decode
 * kernels side by side, each run in its own child process so peak RSS is per variant:
 *   - 'native' (keys fp32, int8, int4): the native decode kernel (native/), the engine's
 *     default path on CPU;
 *   - 'onnx' (keys fp32-onnx, int8-onnx, int4-onnx): the ONNX Runtime graph, the reference.
 * For each: time to first token and decode tokens/s through the real engine (our decode loop over
 * the kernel, one intra-op thread), a raw decode loop timed in wall and CPU time through the same
 * kernel (the native decoder or the ONNX session), weight bytes read per token and the roofline
 * they imply (bandwidth ÷ bytes per token, with the highest of the three bandwidth figures: the
 * strictest roofline). This VM's bandwidth drifts by a third within minutes, so each variant also
 * runs three paired generations, each bracketed by quick one-thread read-bandwidth samples (the
 * better of before and after): `ratio` is the median of those paired ratios against the read
 * bandwidth (decode only reads weights), `ratio_vs_copy` the same against a memcpy counted as
 * read + write, and `ratio_global` compares the first generation with the best bandwidth of the
 * whole run, whichever way it was measured. The native raw loop also times its matrix products
 * (the decoder's profile counter): `<q>_matrix_ratio` is the matrices alone against the same
 * roofline, `<q>_other_ms_per_token` what the rest of a step takes. Also
 * the quality loss against fp32-onnx on a fixed text, teacher-forced
 * through the same kernel (relative logit error, top-1 agreement, perplexity ratio). The same
 * quality figures on real weights come from stories260K (../shared/models), native and ONNX.
 *
 *   npm run bench:generate [-- --tokens 64 --quants fp32,int8,int4 --kernels native,onnx --threads 1]
 *
 * Without the native addons (`npm run build:native`) the native runs and the native read figures
 * are skipped. The last line of output is one JSON object with all figures: the headline ones
 * (decode_tok_s, ratio, …) from fp32 on the native kernel, onnx_* and *_onnx_* from the ONNX
 * Runtime runs.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DecoderConfig } from '../src/model/checkpoint/config.ts';
import { compileModel, type Quant } from '../src/model/graph/compile.ts';
import { loadModel } from '../src/model/inference/engine.ts';
import { nativeAddon } from '../src/model/inference/native-addon.ts';
import { createNativeDecoder, type NativeDecoder, type NativeSequence } from '../src/model/inference/native-decoder.ts';
import { GraphBuilder } from '../src/model/graph/builder.ts';
import { createSession, float32Tensor, int64Tensor, promptFeeds, type OrtSession, type OrtTensor } from '../src/model/inference/runtime.ts';
import { writeRandomCheckpoint } from '../src/model/checkpoint/random-checkpoint.ts';
import { readCheckpointTensors } from '../src/model/checkpoint/safetensors.ts';
import { bestRead, nativeProbes, type ReadBandwidth } from './native-probes.ts';

const SMOLLM2_135M = {
  model_type: 'llama', hidden_size: 576, intermediate_size: 1536, num_hidden_layers: 30, num_attention_heads: 9, num_key_value_heads: 3,
  vocab_size: 49152, max_position_embeddings: 2048, rms_norm_eps: 1e-5, rope_theta: 100000, tie_word_embeddings: true, eos_token_id: 258,
};
const PROMPT = 'Morris wrote about the city every Sunday, and this week the topic was the late trains. ';
const QUALITY_TEXT = 'The committee met on Tuesday to discuss the budget, the new library and the bus routes.';
/** The quality reference: the ONNX graph in fp32, itself tested against the float64 forward. */
const REFERENCE = 'fp32-onnx';

type Kernel = 'native' | 'onnx';
const KERNELS: readonly Kernel[] = ['native', 'onnx'];
/** Result key of a run: the bare quant for the native kernel (the engine's default path). */
const variantKey = (quant: Quant, kernel: Kernel): string => (kernel === 'native' ? quant : `${quant}-${kernel}`);

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

interface Bandwidth {
  read_gb_s: number; copy_gb_s: number; read_cpu_gb_s: number; native_read_gb_s: number | null; native_read_cpu_gb_s: number | null;
  /** The best of the native kernel's eight cold read patterns (4 KiB or huge pages, one stream or two, with or without prefetch). */
  huge_read_gb_s: number | null; huge_pattern: string | null; huge_pages: boolean | null;
}

/**
 * Best of 6 one-thread passes over 256 MiB each: ORT ReduceSum (read), a TypedArray memcpy
 * (read + write), and the read probes' readSum (read with the loads decode uses), when built.
 */
async function measureBandwidth(hugeMiB: number): Promise<Bandwidth> {
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
  let native: { gb_s: number; cpu_gb_s: number } | null = null;
  let huge: ReadBandwidth | null = null;
  const { probes } = nativeProbes();
  if (probes) {
    let bestNative = Infinity;
    let bestNativeCpu = Infinity;
    for (let i = 0; i < 6; i++) {
      const t = performance.now();
      const c = process.cpuUsage();
      probes.readSum(data);
      const cpu = process.cpuUsage(c);
      bestNative = Math.min(bestNative, performance.now() - t);
      bestNativeCpu = Math.min(bestNativeCpu, (cpu.user + cpu.system) / 1000);
    }
    // The CPU-time clock ticks coarsely; a figure 4× better than wall time is a clock artefact, not bandwidth.
    native = { gb_s: (n * 4) / bestNative / 1e6, cpu_gb_s: (n * 4) / Math.max(bestNativeCpu, bestNative / 4) / 1e6 };
    if (probes.isa() !== 'scalar') huge = probes.readBandwidth(hugeMiB, 3);
  }
  return {
    read_gb_s: (n * 4) / best / 1e6,
    copy_gb_s: (2 * n * 4) / bestCopy / 1e6,
    read_cpu_gb_s: (n * 4) / Math.max(bestCpu, best / 4) / 1e6,
    native_read_gb_s: native?.gb_s ?? null,
    native_read_cpu_gb_s: native?.cpu_gb_s ?? null,
    huge_read_gb_s: huge ? bestRead(huge).gbS : null,
    huge_pattern: huge ? bestRead(huge).pattern : null,
    huge_pages: huge?.hugePages ?? null,
  };
}

/** Bytes of weights one decode step reads: every matrix once (the tied embedding as LM head), KV cache aside. */
function weightBytesPerToken(modelDir: string, compiledDir: string, quant: Quant): number {
  const tensors = [...readCheckpointTensors(modelDir).values()];
  if (quant === 'fp32') return tensors.reduce((a, t) => a + t.length, 0);
  const norms = tensors.filter((t) => t.shape.length === 1).reduce((a, t) => a + t.length, 0);
  return statSync(join(compiledDir, 'onnx', 'quant.bin')).size + norms; // all matrices incl. LM head are quantized
}

/** Logits [ids.length, vocab] teacher-forced one native step per token (as generation runs), and the sequence holding its K/V cache. */
async function nativeTeacherForced(decoder: NativeDecoder, c: DecoderConfig, ids: readonly number[]): Promise<{ logits: Float32Array; seq: NativeSequence }> {
  const seq = decoder.sequence();
  const logits = new Float32Array(ids.length * c.vocabSize);
  for (let t = 0; t < ids.length; t++) logits.set(await seq.step(ids[t]!, t), t * c.vocabSize);
  return { logits, seq };
}

/** Logits [ids.length, vocab] of one prefill through the ONNX graph, and the feed for the next step (past = its presents). */
async function onnxTeacherForced(session: OrtSession, c: DecoderConfig, ids: readonly number[]): Promise<{ logits: Float32Array; feed: Record<string, OrtTensor> }> {
  const feed = promptFeeds(c, ids, 0);
  const out = await session.run(feed);
  for (let l = 0; l < c.numLayers; l++) for (const k of ['key', 'value']) feed[`past_key_values.${l}.${k}`] = out[`present.${l}.${k}`]!;
  return { logits: out['logits']!.data as Float32Array, feed };
}

/** The native decoder for a compiled model (quantized matrices from the compiled folder, the rest from the checkpoint). */
function nativeDecoderFor(modelDir: string, compiled: Awaited<ReturnType<typeof compileModel>>): NativeDecoder {
  const { addon, reason } = nativeAddon();
  if (!addon) throw new Error(reason);
  return createNativeDecoder(addon, compiled.config, modelDir, null, compiled.quantized, { profile: true });
}

async function child(modelDir: string, quant: Quant, kernel: Kernel, tokens: number, threads: number, cacheDir: string, logitsFile: string, bandwidthMiB: number): Promise<void> {
  const t0 = performance.now();
  const model = await loadModel({ modelDir, quant, threads, device: 'cpu', cacheDir, decodeKernel: kernel });
  const loadMs = performance.now() - t0;
  const greedy = { temperature: 0, topP: 1, topK: 0, repetitionPenalty: 1 };
  for await (const _ of model.stream({ text: PROMPT }, { ...greedy, maxNewTokens: 4 })); // warm-up
  // Decode steps only: the prompt's native prefill chunks are steps too, but far longer ones.
  const decodeSteps = () => model.kernelStats.nativeSteps - (model.kernelStats.prefillSteps ?? 0);
  const decodeStepMs = () => model.kernelStats.nativeMs - (model.kernelStats.prefillMs ?? 0);
  const nativeStepsBefore = decodeSteps();
  const nativeMsBefore = decodeStepMs();
  for await (const _ of model.stream({ text: PROMPT }, { ...greedy, maxNewTokens: tokens }));
  const s = model.lastStats!;
  const nativeSteps = decodeSteps() - nativeStepsBefore;
  const nativeMsAfter = decodeStepMs();
  const decodeKernel = model.info.decodeKernel;
  const decodeLoop = model.info.decodeLoop;
  const peakRssMb = Math.round(process.resourceUsage().maxRSS / 1024); // engine only, before the buffers and the quality run below
  const compiled = await compileModel({ modelDir, quant, cacheDir }); // already built by the parent: this only reads it
  const bytesPerToken = weightBytesPerToken(modelDir, compiled.dir, quant);
  // Paired runs: this VM's bandwidth drifts by a third within minutes, so each generation is
  // bracketed by bandwidth samples and compared with the better of its two neighbours.
  const paired: { decode_tok_s: number; bandwidth_gb_s: number; ratio: number; ratio_vs_copy: number }[] = [];
  // Every variant samples over the same buffer (the fp32 weights' size), so per-GB/s figures compare
  // like with like: a smaller buffer (an int4 model's 80 MB) would be served partly from L3.
  const sampler = bandwidthSampler(bandwidthMiB);
  for (let r = 0; r < PAIRED_RUNS; r++) {
    const before = sampler();
    for await (const _ of model.stream({ text: PROMPT }, { ...greedy, maxNewTokens: tokens }));
    const after = sampler();
    const st = model.lastStats!;
    const tokS = (st.generatedTokens - 1) / (st.decodeMs / 1000);
    const bw = Math.max(before.read, after.read);
    const copy = Math.max(before.copy, after.copy);
    paired.push({
      decode_tok_s: +tokS.toFixed(2), bandwidth_gb_s: +bw.toFixed(2),
      ratio: +(tokS / ((bw * 1e9) / bytesPerToken)).toFixed(3), ratio_vs_copy: +(tokS / ((copy * 1e9) / bytesPerToken)).toFixed(3),
    });
  }
  sampler.release();
  // What our decode loop adds to each native step (sampling, streaming, the step's promise):
  // decode time per token minus the kernel's own time per step, over the same generation.
  const loopOverhead: Record<string, number> = {};
  if (nativeSteps > 0) {
    const msPerToken = s.decodeMs / (s.generatedTokens - 1);
    loopOverhead['loop_overhead_ms'] = +(msPerToken - (nativeMsAfter - nativeMsBefore) / nativeSteps).toFixed(2);
  }
  await model.dispose();
  if (kernel !== 'onnx' && nativeSteps === 0) throw new Error(`decodeKernel 'native' loaded (${decodeKernel}) but no decode step ran natively`);

  // Quality and raw decode through the kernel that generates: teacher-forced logits of a fixed
  // text, then decode steps timed in CPU time as well (on a shared machine wall time also counts
  // the time other processes hold the core).
  const c = compiled.config;
  const ids = [...Buffer.from(QUALITY_TEXT)];
  const steps = 24;
  let rawWallMs: number;
  let rawCpuMs: number;
  let rawMatrixMs: number | null = null;
  if (kernel !== 'onnx') {
    const decoder = nativeDecoderFor(modelDir, compiled);
    try {
      const tf = await nativeTeacherForced(decoder, c, ids);
      writeFileSync(logitsFile, tf.logits);
      const m0 = decoder.profile()!.matrixMs;
      const w0 = performance.now();
      const c0 = process.cpuUsage();
      for (let i = 0; i < steps; i++) await tf.seq.step(65, ids.length + i);
      const cpu = process.cpuUsage(c0);
      rawWallMs = performance.now() - w0;
      rawCpuMs = (cpu.user + cpu.system) / 1000;
      rawMatrixMs = decoder.profile()!.matrixMs - m0;
    } finally {
      decoder.release();
    }
  } else {
    const { session } = await createSession(compiled.onnxFile, { threads });
    try {
      const tf = await onnxTeacherForced(session, c, ids);
      writeFileSync(logitsFile, tf.logits);
      const feed = tf.feed;
      let pastLen = ids.length;
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
      rawWallMs = performance.now() - w0;
      rawCpuMs = (cpu.user + cpu.system) / 1000;
    } finally {
      await session.release();
    }
  }
  console.log(JSON.stringify({
    paired_ratio_median: median(paired.map((p) => p.ratio)),
    paired_ratio_vs_copy_median: median(paired.map((p) => p.ratio_vs_copy)),
    paired_decode_tok_s_median: median(paired.map((p) => p.decode_tok_s)),
    paired_tok_per_gb_median: +median(paired.map((p) => p.decode_tok_s / p.bandwidth_gb_s)).toFixed(4),
    paired: paired.map((p) => `${p.decode_tok_s} tok/s at ${p.bandwidth_gb_s} GB/s → ${p.ratio}`).join('; '),
    quant,
    kernel,
    decode_kernel: decodeKernel,
    decode_loop: decodeLoop,
    ...loopOverhead,
    native_steps: nativeSteps,
    load_ms: Math.round(loadMs),
    prompt_tokens: s.promptTokens,
    generated_tokens: s.generatedTokens,
    ttft_ms: +s.ttftMs.toFixed(1),
    decode_tok_s: +((s.generatedTokens - 1) / (s.decodeMs / 1000)).toFixed(2),
    decode_tok_s_median: +(1000 / median(s.intervalsMs)).toFixed(2),
    raw_decode_tok_s: +(steps / (rawWallMs / 1000)).toFixed(2),
    raw_decode_tok_per_cpu_s: +(steps / (rawCpuMs / 1000)).toFixed(2),
    // The raw steps split: the base weights' matrix products (the weight stream) and the rest.
    ...(rawMatrixMs !== null ? { raw_matrix_ms_per_token: +(rawMatrixMs / steps).toFixed(3), raw_other_ms_per_token: +((rawWallMs - rawMatrixMs) / steps).toFixed(3) } : {}),
    weight_mb_per_token: +(bytesPerToken / 1e6).toFixed(1),
    peak_rss_mb: peakRssMb,
  }));
}

const PAIRED_RUNS = 3;

/**
 * One-thread bandwidth in GB/s, quick enough to run between generations. `read`, the roofline for
 * decode (which only reads weights): the best of the native kernel's eight read patterns (4 KiB or
 * huge pages, one stream or two, with or without prefetch), each over `hugeMiB` (the weights'
 * size) and each starting cold, as decode's reads do (see readBandwidth in native/probes.c);
 * without the vector kernel, a warm read over an ordinary buffer (lenient, and said so). `copy`, a
 * memcpy of 128 MiB counted as read + write, is reported alongside.
 */
function bandwidthSampler(hugeMiB: number): { (): { read: number; copy: number }; release(): void } {
  let src: Float32Array | null = new Float32Array(32 * 1024 * 1024).fill(1);
  let dst: Float32Array | null = new Float32Array(src.length);
  const { probes } = nativeProbes();
  const sample = () => {
    let copy = 0;
    for (let i = 0; i < 2; i++) {
      const t = performance.now();
      dst!.set(src!);
      copy = Math.max(copy, (2 * src!.byteLength) / (performance.now() - t) / 1e6);
    }
    if (probes && probes.isa() !== 'scalar') return { read: bestRead(probes.readBandwidth(hugeMiB, 1)).gbS, copy };
    let read = 0;
    for (let i = 0; i < 2; i++) {
      const t = performance.now();
      if (probes) probes.readSum(src!);
      else src!.reduce((a, b) => a + b, 0);
      read = Math.max(read, src!.byteLength / (performance.now() - t) / 1e6);
    }
    return { read, copy };
  };
  return Object.assign(sample, { release: () => { src = dst = null; } });
}

function median(xs: number[]): number {
  const v = [...xs].sort((a, b) => a - b);
  return v.length % 2 ? v[(v.length - 1) / 2]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
}

function quality(ref: Float32Array, q: Float32Array, vocab: number, ids: number[]) {
  if (ref.length !== q.length) throw new Error(`quality: ${q.length} logits against ${ref.length} in the reference`);
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

/**
 * Quality on real weights: stories260K (../shared) teacher-forced over its golden ids, every
 * quant through the ONNX graph (one prefill) and, when the addon is built, through the native
 * decoder (one step per token), all against fp32 ONNX. Keys: stories260k_<quant>_* (native),
 * stories260k_<quant>_onnx_*.
 */
async function realWeightsQuality(cacheDir: string, withNative: boolean): Promise<Record<string, number>> {
  const dir = join(dirname(fileURLToPath(import.meta.url)), '../../shared/models/stories260K');
  if (!existsSync(join(dir, 'GOLDEN.json'))) {
    console.log(`stories260K quality check skipped: ${dir} is missing`);
    return {};
  }
  const golden = JSON.parse(readFileSync(join(dir, 'GOLDEN.json'), 'utf8')) as { prompts: { ids: number[] }[] };
  const ids = golden.prompts.flatMap((p) => p.ids.slice(0, -1)).slice(0, 150);
  const out: Record<string, number> = {};
  let ref: Float32Array | null = null;
  for (const quant of ['fp32', 'int8', 'int4'] as const) {
    const c = await compileModel({ modelDir: dir, quant, cacheDir });
    const { session } = await createSession(c.onnxFile);
    let onnx: Float32Array;
    try {
      onnx = (await onnxTeacherForced(session, c.config, ids)).logits;
    } finally {
      await session.release();
    }
    if (quant === 'fp32') ref = onnx;
    else for (const [k, v] of Object.entries(quality(ref!, onnx, c.config.vocabSize, ids))) out[`stories260k_${quant}_onnx_${k}`] = v;
    if (!withNative) continue;
    const decoder = nativeDecoderFor(dir, c);
    try {
      const native = (await nativeTeacherForced(decoder, c.config, ids)).logits;
      for (const [k, v] of Object.entries(quality(ref!, native, c.config.vocabSize, ids))) out[`stories260k_${quant}_${k}`] = v;
    } finally {
      decoder.release();
    }
  }
  console.log(`stories260K (real weights) quality vs fp32 ONNX: ${JSON.stringify(out)}`);
  return out;
}

async function main(): Promise<void> {
  if (process.argv.includes('--child')) {
    await child(arg('model', ''), arg('quant', 'fp32') as Quant, arg('kernel', 'native') as Kernel, Number(arg('tokens', '64')), Number(arg('threads', '1')), arg('cache', ''), arg('logits', ''), Number(arg('bandwidth-mib', '128')));
    return;
  }
  const tokens = Number(arg('tokens', '64'));
  const threads = Number(arg('threads', '1'));
  const quants = arg('quants', 'fp32,int8,int4').split(',') as Quant[];
  const kernels = arg('kernels', KERNELS.join(',')).split(',') as Kernel[];
  for (const k of kernels) if (!KERNELS.includes(k)) throw new Error(`--kernels: unknown kernel ${k} (${KERNELS.join(', ')})`);
  const { addon, reason } = nativeAddon();
  if (addon) console.log(`native decode kernel: fp32 ${addon.kernelInfo().isa}, int8/int4 ${addon.kernelInfo().quantIsa}`);
  else if (kernels.includes('native')) console.log(`skipping the native runs: ${reason}`);
  const probesReason = nativeProbes().reason;
  if (probesReason) console.log(`no native read figures: ${probesReason}`);
  // The reference runs first, so every later variant's line carries its quality.
  const plan = quants
    .flatMap((quant) => kernels.map((kernel) => ({ quant, kernel, key: variantKey(quant, kernel) })))
    .filter((r) => r.kernel === 'onnx' || addon)
    .sort((a, b) => Number(b.key === REFERENCE) - Number(a.key === REFERENCE));
  const root = mkdtempSync(join(tmpdir(), 'morris-bench-'));
  try {
    const modelDir = join(root, 'smollm2-135m-random');
    const cacheDir = join(root, 'cache');
    let t = performance.now();
    writeRandomCheckpoint(modelDir, { config: SMOLLM2_135M, seed: 0, std: 0.05 }, { tokenizer: true });
    console.log(`wrote random SmolLM2-135M-shaped checkpoint in ${Math.round(performance.now() - t)} ms`);
    // The kernel's cold reads cover as many bytes as a decode step streams: this VM's L3 (480 MiB)
    // serves part of a smaller buffer read again and again (measured: 20-21 GB/s over 128 MiB
    // against 17 over 538 MiB or 1 GiB), which is not the bandwidth decode sees.
    const stepMiB = Math.ceil(weightBytesPerToken(modelDir, modelDir, 'fp32') / 2 ** 20);
    const before = await measureBandwidth(stepMiB);
    console.log(`load average ${loadavg()[0]!.toFixed(2)} on ${cpus().length} cores: wall-clock figures include time other processes hold the core; *_cpu figures do not`);
    const qualityIds = [...Buffer.from(QUALITY_TEXT)];
    let ref: Float32Array | null = null;
    if (plan.length > 0 && plan[0]!.key !== REFERENCE) {
      // fp32-onnx is not among the runs: compute its logits here so the others still get quality figures.
      const c = await compileModel({ modelDir, quant: 'fp32', cacheDir });
      const { session } = await createSession(c.onnxFile, { threads });
      try {
        ref = (await onnxTeacherForced(session, c.config, qualityIds)).logits;
      } finally {
        await session.release();
      }
    }
    const results: Record<string, Record<string, number | string>> = {};
    for (const { quant, kernel, key } of plan) {
      t = performance.now();
      const compiled = await compileModel({ modelDir, quant, cacheDir }); // compile (and quantize) outside the timed child
      if (compiled.built) console.log(`compiled ${quant} in ${Math.round(performance.now() - t)} ms`);
      const logitsFile = join(root, `logits-${key}.bin`);
      const script = fileURLToPath(import.meta.url);
      const r = spawnSync(process.execPath, [...process.execArgv, script, '--child', '--model', modelDir, '--quant', quant, '--kernel', kernel, '--tokens', String(tokens), '--threads', String(threads), '--cache', cacheDir, '--logits', logitsFile, '--bandwidth-mib', String(stepMiB)], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      if (r.status !== 0) throw new Error(`benchmark child for ${key} failed (exit ${r.status})`);
      const line = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, number | string>;
      const buf = readFileSync(logitsFile);
      const logits = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
      if (key === REFERENCE) ref = logits;
      else if (ref) Object.assign(line, quality(ref, logits, SMOLLM2_135M.vocab_size, qualityIds));
      results[key] = line;
      console.log(`${key}: ${JSON.stringify(line)}`);
    }
    // Bandwidth measured before and after the runs; the best figure gives the strictest roofline.
    const after = await measureBandwidth(stepMiB);
    const best = (a: number | null, b: number | null): number | null => (a === null ? b : b === null ? a : Math.max(a, b));
    const bw = {
      read_gb_s: Math.max(before.read_gb_s, after.read_gb_s),
      copy_gb_s: Math.max(before.copy_gb_s, after.copy_gb_s),
      read_cpu_gb_s: Math.max(before.read_cpu_gb_s, after.read_cpu_gb_s),
      native_read_gb_s: best(before.native_read_gb_s, after.native_read_gb_s),
      native_read_cpu_gb_s: best(before.native_read_cpu_gb_s, after.native_read_cpu_gb_s),
      huge_read_gb_s: best(before.huge_read_gb_s, after.huge_read_gb_s),
      huge_pattern: (before.huge_read_gb_s ?? 0) >= (after.huge_read_gb_s ?? 0) ? before.huge_pattern : after.huge_pattern,
    };
    const bandwidth = Math.max(bw.read_gb_s, bw.copy_gb_s, bw.native_read_gb_s ?? 0, bw.huge_read_gb_s ?? 0);
    const bandwidthCpu = Math.max(bw.read_cpu_gb_s, bw.native_read_cpu_gb_s ?? 0);
    const hugeText = bw.huge_read_gb_s === null ? '' : `, best cold read ${bw.huge_read_gb_s.toFixed(2)} GB/s (${bw.huge_pattern}${before.huge_pages ? '' : '; huge pages are off'})`;
    const nativeText = bw.native_read_gb_s === null ? 'native read n/a (probes not built)' : `native read ${bw.native_read_gb_s.toFixed(2)} GB/s (${bw.native_read_cpu_gb_s!.toFixed(2)} per CPU-second)${hugeText}`;
    console.log(`memory bandwidth (1 thread, best of before/after): ORT read ${bw.read_gb_s.toFixed(2)} GB/s (${bw.read_cpu_gb_s.toFixed(2)} per CPU-second), copy ${bw.copy_gb_s.toFixed(2)} GB/s, ${nativeText} → using ${bandwidth.toFixed(2)} GB/s (${bandwidthCpu.toFixed(2)} per CPU-second)`);
    for (const line of Object.values(results)) {
      const roofline = (bandwidth * 1e9) / ((line['weight_mb_per_token'] as number) * 1e6);
      line['roofline_tok_s'] = +roofline.toFixed(2);
      line['ratio'] = +((line['decode_tok_s'] as number) / roofline).toFixed(3);
      line['ratio_median'] = +((line['decode_tok_s_median'] as number) / roofline).toFixed(3);
      const rooflineCpu = (bandwidthCpu * 1e9) / ((line['weight_mb_per_token'] as number) * 1e6);
      line['roofline_cpu_tok_s'] = +rooflineCpu.toFixed(2);
      line['ratio_cpu'] = +((line['raw_decode_tok_per_cpu_s'] as number) / rooflineCpu).toFixed(3);
      // The native raw steps split in two: the matrix products alone against the same roofline
      // (how near the weight stream runs to memory speed), and the rest of the step's time, which
      // no kernel speed removes (attention, norms, activations' quantization, the step's call).
      if (line['raw_matrix_ms_per_token'] !== undefined) {
        line['matrix_ratio'] = +(1000 / roofline / (line['raw_matrix_ms_per_token'] as number)).toFixed(3);
        line['other_share'] = +((line['raw_other_ms_per_token'] as number) / ((line['raw_matrix_ms_per_token'] as number) + (line['raw_other_ms_per_token'] as number))).toFixed(3);
      }
    }
    const ratio = (a: Record<string, number | string>, b: Record<string, number | string>, k: string): number => +((a[k] as number) / (b[k] as number)).toFixed(2);
    // Headline figures from the engine's default path: native where it ran, else ONNX (addon not built, or --kernels onnx).
    const headline = (q: Quant) => results[q] ?? results[`${q}-onnx`];
    const fp = headline('fp32');
    const fpOnnx = results['fp32-onnx'];
    const summary: Record<string, number | string> = {
      model: 'random SmolLM2-135M dims',
      threads,
      bandwidth_gb_s: +bandwidth.toFixed(2),
      bandwidth_read_gb_s: +bw.read_gb_s.toFixed(2),
      bandwidth_copy_gb_s: +bw.copy_gb_s.toFixed(2),
      bandwidth_read_cpu_gb_s: +bw.read_cpu_gb_s.toFixed(2),
    };
    if (bw.native_read_gb_s !== null) {
      summary['bandwidth_native_read_gb_s'] = +bw.native_read_gb_s.toFixed(2);
      summary['bandwidth_native_read_cpu_gb_s'] = +bw.native_read_cpu_gb_s!.toFixed(2);
    }
    if (bw.huge_read_gb_s !== null) {
      summary["bandwidth_cold_read_gb_s"] = +bw.huge_read_gb_s.toFixed(2);
      summary["bandwidth_cold_pattern"] = bw.huge_pattern!;
    }
    if (fp) {
      Object.assign(summary, {
        decode_kernel: fp['decode_kernel'],
        // ratio: the median of generations each compared with bandwidth sampled right before and after it;
        // ratio_global: the first generation against the best bandwidth seen in the whole run (drift included).
        ratio: fp['paired_ratio_median'], ratio_vs_copy: fp['paired_ratio_vs_copy_median'], paired: fp['paired'], ratio_global: fp['ratio'],
        decode_tok_s: fp['decode_tok_s'], roofline_tok_s: fp['roofline_tok_s'], ttft_ms: fp['ttft_ms'], peak_rss_mb: fp['peak_rss_mb'],
        weight_mb_per_token: fp['weight_mb_per_token'],
        decode_tok_s_median: fp['decode_tok_s_median'], ratio_median: fp['ratio_median'],
        decode_tok_per_cpu_s: fp['raw_decode_tok_per_cpu_s'], roofline_cpu_tok_s: fp['roofline_cpu_tok_s'], ratio_cpu: fp['ratio_cpu'],
      });
      if (fp['logit_rel_err'] !== undefined) for (const k of ['logit_rel_err', 'top1_agreement', 'ppl_ratio']) summary[k] = fp[k]!;
    }
    if (fpOnnx) {
      Object.assign(summary, {
        onnx_decode_tok_s: fpOnnx['decode_tok_s'], onnx_ratio: fpOnnx['paired_ratio_median'], onnx_ratio_vs_copy: fpOnnx['paired_ratio_vs_copy_median'], onnx_ratio_global: fpOnnx['ratio'], onnx_ttft_ms: fpOnnx['ttft_ms'], onnx_peak_rss_mb: fpOnnx['peak_rss_mb'],
        onnx_decode_tok_s_median: fpOnnx['decode_tok_s_median'], onnx_decode_tok_per_cpu_s: fpOnnx['raw_decode_tok_per_cpu_s'], onnx_ratio_cpu: fpOnnx['ratio_cpu'],
      });
      if (fp && fp !== fpOnnx) {
        summary['native_speedup'] = ratio(fp, fpOnnx, 'decode_tok_s');
        summary['native_speedup_paired'] = ratio(fp, fpOnnx, 'paired_tok_per_gb_median');
        summary['native_speedup_median'] = ratio(fp, fpOnnx, 'decode_tok_s_median');
        summary['native_speedup_cpu'] = ratio(fp, fpOnnx, 'raw_decode_tok_per_cpu_s');
      }
    }
    if (fp?.['loop_overhead_ms'] !== undefined) {
      summary['loop_overhead_ms'] = fp['loop_overhead_ms']!;
    }
    for (const q of ['int8', 'int4'] as const) {
      const r = headline(q);
      if (r) {
        for (const k of ['decode_tok_s', 'decode_tok_s_median', 'ttft_ms', 'peak_rss_mb', 'weight_mb_per_token', 'roofline_tok_s', 'logit_rel_err', 'top1_agreement', 'ppl_ratio']) if (r[k] !== undefined) summary[`${q}_${k}`] = r[k]!;
        summary[`${q}_decode_tok_per_cpu_s`] = r['raw_decode_tok_per_cpu_s']!;
        // Against its own roofline (its codes, scales and zero points read per token), paired with
        // bandwidth samples as the fp32 `ratio` is.
        summary[`${q}_ratio`] = r['paired_ratio_median']!;
        if (fp) {
          summary[`${q}_speedup`] = ratio(r, fp, 'decode_tok_s');
          summary[`${q}_speedup_paired`] = ratio(r, fp, 'paired_tok_per_gb_median');
          summary[`${q}_speedup_median`] = ratio(r, fp, 'decode_tok_s_median');
          summary[`${q}_speedup_cpu`] = ratio(r, fp, 'raw_decode_tok_per_cpu_s');
        }
      }
      const o = results[`${q}-onnx`];
      if (o && o !== r) {
        for (const k of ['decode_tok_s', 'decode_tok_s_median', 'logit_rel_err', 'top1_agreement', 'ppl_ratio']) if (o[k] !== undefined) summary[`${q}_onnx_${k}`] = o[k]!;
        summary[`${q}_onnx_decode_tok_per_cpu_s`] = o['raw_decode_tok_per_cpu_s']!;
        if (fpOnnx) summary[`${q}_onnx_speedup`] = ratio(o, fpOnnx, 'decode_tok_s');
      }
    }
    const own = (['fp32', 'int8', 'int4'] as const).filter((q) => headline(q)).map((q) => `${q} ${headline(q)!['paired_ratio_median']} (${headline(q)!['paired_decode_tok_s_median']} tok/s, ${headline(q)!['weight_mb_per_token']} MB/token)`);
    console.log(`decode / own roofline (paired median): ${own.join(', ')}`);
    const split = (['fp32', 'int8', 'int4'] as const).map((q) => [q, results[q]] as const).filter(([, r]) => r?.['matrix_ratio'] !== undefined);
    for (const [q, r] of split) {
      summary[`${q}_matrix_ratio`] = r!['matrix_ratio']!;
      summary[`${q}_other_ms_per_token`] = r!['raw_other_ms_per_token']!;
    }
    if (split.length) {
      const text = split.map(([q, r]) => `${q} matrices ${r!['raw_matrix_ms_per_token']} ms/token (${r!['matrix_ratio']} of its roofline at ${bandwidth.toFixed(2)} GB/s), the rest ${r!['raw_other_ms_per_token']} ms (${r!['other_share']} of the step)`);
      console.log(`native raw steps split: ${text.join('; ')}`);
    }
    Object.assign(summary, await realWeightsQuality(cacheDir, addon !== null));
    console.log(JSON.stringify(summary));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
