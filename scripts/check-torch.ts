/**
 * npm run check:torch — the same model, LoRA weights and batch through our training graph and
 * through PyTorch autograd (float64, scripts/torch_lora_reference.py): the loss and every LoRA
 * gradient must agree within 1e-4 relative (max |ours − torch| / max |torch| per tensor), for
 * the SFT loss (weighted cross-entropy) and for the DPO loss (pairs of sequences, per-sequence
 * log-prob sums, a reference margin and β). Models: a tiny random Llama (GQA, tied head) and, when present, the real stories260K.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeRandomCheckpoint } from '../src/model/checkpoint/random-checkpoint.ts';
import { writeSafetensors, type TensorToWrite } from '../src/model/checkpoint/safetensors.ts';
import { Rng } from '../src/model/train/rng.ts';
import { TrainingSessions, type MicroBatch } from '../src/model/train/step.ts';
import type { LoraModule } from '../src/model/graph/llama.ts';
import { ensureTorch, PYTHON } from './torch-env.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const TOL = 1e-4;
const TARGETS: LoraModule[] = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

interface Outcome {
  model: string;
  objective: 'SFT' | 'DPO';
  lossRel: number;
  worstGradRel: number;
  worstTensor: string;
}

/** max |ours − torch| / max |torch| per LoRA tensor: the worst and where. */
function worstGradient(names: readonly string[], ours: ReadonlyMap<string, Float32Array>, ref: Record<string, number[]>): { worstGradRel: number; worstTensor: string } {
  let worstGradRel = 0;
  let worstTensor = '';
  for (const name of names) {
    const a = ours.get(name)!;
    const b = ref[name]!;
    let maxRef = 0;
    let maxDiff = 0;
    for (let i = 0; i < b.length; i++) {
      maxRef = Math.max(maxRef, Math.abs(b[i]!));
      maxDiff = Math.max(maxDiff, Math.abs(a[i]! - b[i]!));
    }
    const rel = maxDiff / Math.max(maxRef, 1e-30);
    if (rel > worstGradRel) {
      worstGradRel = rel;
      worstTensor = name;
    }
  }
  return { worstGradRel, worstTensor };
}

function runTorch(mode: 'check' | 'dpo', dir: string): { loss: number; grads: Record<string, number[]> } {
  const py = spawnSync(PYTHON, [join(HERE, 'torch_lora_reference.py'), mode, dir], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (py.status !== 0) throw new Error(`the PyTorch reference failed (exit ${py.status})`);
  return JSON.parse(readFileSync(join(dir, 'torch.json'), 'utf8')) as { loss: number; grads: Record<string, number[]> };
}

/**
 * DPO on the same model and LoRA weights: P = 2 pairs whose chosen and rejected rows share a
 * prompt, rows of different lengths, reference margins away from zero so σ is not at ½.
 */
async function compareDpo(name: string, modelDir: string, work: string, vocab: number, lora: ReadonlyMap<string, Float32Array>): Promise<Outcome> {
  const rank = 4;
  const alpha = 8;
  const s = await TrainingSessions.open({ modelDir, rank, alpha, dropout: 0, targets: TARGETS, device: 'cpu', threads: 1, cacheDir: join(work, 'cache'), objective: 'dpo' });
  const rng = new Rng(77);
  const P = 2;
  const S = 20;
  const prompt = 6;
  const lengths = [S, 15, 18, 12];
  const ids: number[] = [];
  const targets: number[] = [];
  const counted = new Uint8Array(2 * P * S);
  const prompts = Array.from({ length: P }, () => Array.from({ length: prompt }, () => Math.floor(rng.next() * vocab)));
  for (let b = 0; b < 2 * P; b++) {
    const row = [...prompts[b % P]!, ...Array.from({ length: S - prompt + 1 }, () => Math.floor(rng.next() * vocab))];
    for (let t = 0; t < S; t++) {
      const real = t < lengths[b]!;
      ids.push(real ? row[t]! : 0);
      targets.push(real ? row[t + 1]! : 0);
      counted[b * S + t] = real && t >= prompt - 1 ? 1 : 0;
    }
  }
  const refMargin = Float32Array.from([1.5, -2.25]);
  const beta = 0.5;
  const ours = await s.dpoStep({ mb: { batch: 2 * P, seqLen: S, ids, targets, counted }, refMargin }, lora, 1 / P, beta, rng);
  await s.release();
  const dir = join(work, `${name}-dpo`);
  writeInputs(dir, modelDir, s.lora.map((t) => t.name), lora, new Map(s.lora.map((t) => [t.name, t.shape])));
  writeFileSync(join(dir, 'batch.json'), JSON.stringify({ batch: 2 * P, seqLen: S, ids, targets, counted: [...counted], ref_margin: [...refMargin], beta, rank, alpha }));
  const ref = runTorch('dpo', dir);
  return { model: name, objective: 'DPO', lossRel: Math.abs(ours.loss - ref.loss) / Math.abs(ref.loss), ...worstGradient(s.lora.map((t) => t.name), ours.grads!, ref.grads) };
}

/** The model (hard links) and the LoRA weights where the Python reference reads them. */
function writeInputs(dir: string, modelDir: string, names: readonly string[], lora: ReadonlyMap<string, Float32Array>, shapes: ReadonlyMap<string, readonly [number, number]>): void {
  mkdirSync(join(dir, 'model'), { recursive: true });
  for (const f of ['config.json', 'model.safetensors']) linkSync(join(modelDir, f), join(dir, 'model', f));
  const tensors: Record<string, TensorToWrite> = {};
  for (const n of names) tensors[n] = { dtype: 'F32', shape: shapes.get(n)!, data: lora.get(n)! };
  writeSafetensors(join(dir, 'lora.safetensors'), tensors);
}

async function compare(name: string, modelDir: string, work: string, vocab: number): Promise<Outcome[]> {
  const rank = 4;
  const alpha = 8;
  const s = await TrainingSessions.open({ modelDir, rank, alpha, dropout: 0, targets: TARGETS, device: 'cpu', threads: 1, cacheDir: join(work, 'cache') });
  const rng = new Rng(2024);
  // LoRA as after some training: A as PEFT initialises it, B non-zero so A gets gradients too.
  const lora = new Map<string, Float32Array>();
  for (const t of s.lora) {
    const n = t.shape[0] * t.shape[1];
    lora.set(t.name, Float32Array.from({ length: n }, () => (t.which === 'A' ? (2 * rng.next() - 1) / Math.sqrt(t.shape[1]) : rng.normal() * 0.05)));
  }
  // Two right-padded rows: a prompt (not counted), an answer (counted), then padding.
  const B = 2;
  const S = 24;
  const ids: number[] = [];
  const targets: number[] = [];
  const counted = new Uint8Array(B * S);
  const lengths = [S, 17];
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < S; t++) {
      const real = t < lengths[b]!;
      ids.push(real ? Math.floor(rng.next() * vocab) : 0);
      targets.push(real ? Math.floor(rng.next() * vocab) : 0);
      counted[b * S + t] = real && t >= 6 ? 1 : 0;
    }
  }
  const mb: MicroBatch = { batch: B, seqLen: S, ids, targets, counted };
  const nCounted = counted.reduce((a, x) => a + x, 0);
  const ours = await s.step(mb, lora, 1 / nCounted, rng);
  await s.release();

  const dir = join(work, name);
  writeInputs(dir, modelDir, s.lora.map((t) => t.name), lora, new Map(s.lora.map((t) => [t.name, t.shape])));
  const weights = Array.from(counted, (c) => (c ? 1 / nCounted : 0));
  writeFileSync(join(dir, 'batch.json'), JSON.stringify({ batch: B, seqLen: S, ids, targets, weights, rank, alpha }));
  const ref = runTorch('check', dir);
  const sft: Outcome = { model: name, objective: 'SFT', lossRel: Math.abs(ours.loss - ref.loss) / Math.abs(ref.loss), ...worstGradient(s.lora.map((t) => t.name), ours.grads, ref.grads) };
  return [sft, await compareDpo(name, modelDir, work, vocab, lora)];
}

async function main(): Promise<void> {
  ensureTorch();
  const work = mkdtempSync(join(tmpdir(), 'morris-check-torch-'));
  try {
    const outcomes: Outcome[] = [];
    const tiny = join(work, 'tiny-random');
    writeRandomCheckpoint(tiny, {
      seed: 11,
      std: 0.1,
      config: {
        model_type: 'llama', hidden_size: 48, intermediate_size: 96, num_hidden_layers: 2, num_attention_heads: 6,
        num_key_value_heads: 2, vocab_size: 320, max_position_embeddings: 256, rms_norm_eps: 1e-5, rope_theta: 10000,
        tie_word_embeddings: true,
      },
    });
    outcomes.push(...(await compare('tiny-random', tiny, work, 320)));
    const stories = resolve(HERE, '../../shared/models/stories260K');
    if (existsSync(join(stories, 'model.safetensors'))) {
      // Hard links must stay on one file system: copy the small real model into the work dir.
      const local = join(work, 'stories260K');
      mkdirSync(local);
      for (const f of ['config.json', 'model.safetensors']) copyFileSync(join(stories, f), join(local, f));
      outcomes.push(...(await compare('stories260K', local, work, 512)));
    } else {
      process.stdout.write('stories260K not found next to the repo: checked the random model only\n');
    }
    let ok = true;
    for (const o of outcomes) {
      const pass = o.lossRel <= TOL && o.worstGradRel <= TOL;
      ok &&= pass;
      process.stdout.write(`${pass ? 'PASS' : 'FAIL'} ${o.model} ${o.objective}: loss rel ${o.lossRel.toExponential(2)}, worst LoRA gradient rel ${o.worstGradRel.toExponential(2)} (${o.worstTensor}), tolerance ${TOL}\n`);
    }
    process.stdout.write(JSON.stringify({ ok, tolerance: TOL, results: outcomes }) + '\n');
    process.exitCode = ok ? 0 : 1;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
