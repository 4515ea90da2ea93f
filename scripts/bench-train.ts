/**
 * npm run bench:train — one LoRA training step at SmolLM2-135M dimensions (30 layers, hidden 576,
 * 9 heads / 3 KV heads, intermediate 1536, vocab 49152), sequence 512, r=16 on q/v, dropout 0.1,
 * fp32, random weights: forward + backward + AdamW, for this engine and for the PyTorch reference
 * (scripts/torch_lora_reference.py), each in its own process so each peak RSS is its own.
 * The median of the timed steps after one warm-up step counts. Last line: one JSON object.
 * PyTorch runs with OMP_WAIT_POLICY=PASSIVE: the engine's threads do not spin either.
 *
 *   npm run bench:train [-- --steps 2 --threads 2 --seq 512]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { writeRandomCheckpoint } from '../src/model/checkpoint/random-checkpoint.ts';
import { adamwStep, newAdamWState } from '../src/model/train/adamw.ts';
import { initLora } from '../src/model/train/peft.ts';
import { Rng } from '../src/model/train/rng.ts';
import { TrainingSessions } from '../src/model/train/step.ts';
import { ensureTorch, PYTHON } from './torch-env.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const SMOLLM2_135M = {
  model_type: 'llama', hidden_size: 576, intermediate_size: 1536, num_hidden_layers: 30, num_attention_heads: 9,
  num_key_value_heads: 3, head_dim: 64, vocab_size: 49152, max_position_embeddings: 8192, rms_norm_eps: 1e-5,
  rope_theta: 100000, tie_word_embeddings: true,
};

interface StepReport {
  tok_s: number;
  step_ms: number;
  /** CPU time of the step (all threads): a second view when the machine is busy. */
  cpu_ms: number;
  peak_rss_mb: number;
  loss: number;
}

/** Child process: our engine's step. */
async function engineStep(modelDir: string, threads: number, seq: number, steps: number): Promise<void> {
  const s = await TrainingSessions.open({ modelDir, rank: 16, alpha: 32, dropout: 0.1, targets: ['q_proj', 'v_proj'], device: 'cpu', threads, cacheDir: join(modelDir, 'cache') });
  const rng = new Rng(1);
  const weights = initLora(s.lora, rng);
  const adam = newAdamWState(weights);
  const vocab = SMOLLM2_135M.vocab_size;
  const ids = Array.from({ length: seq }, () => Math.floor(rng.next() * vocab));
  const targets = Array.from({ length: seq }, () => Math.floor(rng.next() * vocab));
  const mb = { batch: 1, seqLen: seq, ids, targets, counted: new Uint8Array(seq).fill(1) };
  const times: number[] = [];
  const cpu: number[] = [];
  let loss = 0;
  for (let i = 0; i <= steps; i++) {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const r = await s.step(mb, weights, 1 / seq, new Rng(100 + i));
    adamwStep(weights, r.grads, adam, 1e-4, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 });
    loss = r.loss;
    if (i > 0) {
      // step 0 warms up the session
      times.push(performance.now() - t0);
      const c = process.cpuUsage(c0);
      cpu.push((c.user + c.system) / 1000);
    }
  }
  await s.release();
  const stepMs = times.sort((a, b) => a - b)[Math.floor(times.length / 2)]!;
  const cpuMs = cpu.sort((a, b) => a - b)[Math.floor(cpu.length / 2)]!;
  const report: StepReport = { tok_s: seq / (stepMs / 1000), step_ms: stepMs, cpu_ms: cpuMs, peak_rss_mb: process.resourceUsage().maxRSS / 1024, loss };
  process.stdout.write(JSON.stringify(report) + '\n');
}

function lastJson(out: string, who: string): StepReport {
  const line = out.trim().split('\n').filter((l) => l.startsWith('{') && l.includes('tok_s')).pop();
  if (!line) throw new Error(`${who} printed no result:\n${out.slice(-2000)}`);
  return JSON.parse(line) as StepReport;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { engine: { type: 'string' }, threads: { type: 'string' }, seq: { type: 'string', default: '512' }, steps: { type: 'string', default: '2' } },
  });
  const threads = Number(values.threads ?? Math.min(availableParallelism(), 16));
  const seq = Number(values.seq);
  const steps = Number(values.steps);
  if (values.engine) return engineStep(values.engine, threads, seq, steps);

  ensureTorch();
  const work = mkdtempSync(join(tmpdir(), 'morris-bench-train-'));
  try {
    process.stderr.write(`writing a random SmolLM2-135M-sized checkpoint (fp32) to ${work}…\n`);
    writeRandomCheckpoint(join(work, 'model'), { seed: 1, std: 0.02, config: SMOLLM2_135M });
    process.stderr.write(`engine: ${steps} timed steps after a warm-up, seq ${seq}, ${threads} threads…\n`);
    const eng = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--engine', join(work, 'model'), '--threads', String(threads), '--seq', String(seq), '--steps', String(steps)], {
      encoding: 'utf8',
      env: { ...process.env, LOG_LEVEL: 'warn' },
      maxBuffer: 64 * 2 ** 20,
    });
    if (eng.status !== 0) throw new Error(`engine step failed:\n${eng.stderr}`);
    const engine = lastJson(eng.stdout, 'engine');
    process.stderr.write(`engine: ${JSON.stringify(engine)}\npytorch: same step (OMP_WAIT_POLICY=PASSIVE)…\n`);
    // Both sides idle their threads without spinning (the engine's sessions turn spinning off):
    // with spinning, PyTorch's OpenMP threads collapse on a busy machine and the ratio means nothing.
    const py = spawnSync(PYTHON, [join(HERE, 'torch_lora_reference.py'), 'bench', `threads=${threads}`, `seq=${seq}`, `steps=${steps}`], {
      encoding: 'utf8',
      maxBuffer: 64 * 2 ** 20,
      env: { ...process.env, OMP_WAIT_POLICY: 'PASSIVE' },
    });
    if (py.status !== 0) throw new Error(`pytorch step failed:\n${py.stderr}`);
    const torch = lastJson(py.stdout, 'pytorch');
    process.stderr.write(`pytorch: ${JSON.stringify(torch)}\n`);
    const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
    process.stderr.write(`load average ${loadavg().map((x) => x.toFixed(2)).join(' ')} on ${availableParallelism()} CPUs (timings are wall-clock; busy machines distort them)\n`);
    process.stdout.write(
      JSON.stringify({
        engine_tok_s: round(engine.tok_s),
        torch_tok_s: round(torch.tok_s),
        ratio: round(engine.tok_s / torch.tok_s, 3),
        engine_peak_rss_mb: Math.round(engine.peak_rss_mb),
        torch_peak_rss_mb: Math.round(torch.peak_rss_mb),
      }) + '\n',
    );
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
