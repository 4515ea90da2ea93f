/**
 * Training settings: one commented defaults object (the original Morris Bot's LoRA recipe),
 * overridden by a JSON config file and then by flags. Unknown keys are rejected so a typo never
 * silently trains with a default.
 */
import fs from 'node:fs';
import { z } from 'zod';
import { MorrisError } from '../../errors.ts';

export const TRAIN_DEFAULTS = {
  // --- LoRA ---
  rank: 16, // r: width of the low-rank update
  alpha: 32, // scaling = alpha / rank
  dropout: 0.1, // dropout on the LoRA branch's input, training only
  targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj'], // the attention projections, as the original did

  // --- optimisation ---
  lr: 1e-4, // peak learning rate
  epochs: 2,
  maxSteps: 0, // cap on optimizer steps (0: no cap, epochs decide)
  batchSize: 1, // examples per micro-batch
  gradAccum: 8, // micro-batches per optimizer step
  schedule: 'cosine' as 'cosine' | 'linear' | 'constant',
  warmupRatio: 0.03, // fraction of the total steps spent warming up (ignored when warmupSteps > 0)
  warmupSteps: 0,
  minLrRatio: 0, // the schedule's floor, as a fraction of lr
  weightDecay: 0, // decoupled (AdamW); PEFT recipes usually leave LoRA weights undecayed
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  maxGradNorm: 1.0, // global-norm clipping (0: off)

  // --- preference training (DPO) ---
  dpoBeta: 0.1, // β: how far the policy may move from the reference per nat of margin (TRL's default)

  // --- data ---
  maxSeqLen: 1024, // tokens per example; longer ones are handled by `overLong`
  overLong: 'truncate' as 'truncate' | 'skip',

  // --- evaluation, checkpoints, early stopping ---
  evalEvery: 50, // optimizer steps between validation-loss evaluations (0: only at the end)
  saveEvery: 50, // optimizer steps between checkpoints (0: only at the end)
  patience: 3, // evaluations without improvement before stopping early (0: never)
  minDelta: 0, // improvement smaller than this does not count

  // --- run ---
  seed: 42,
  device: 'auto', // onnxruntime execution provider, or 'auto' for the best one present
  threads: 0, // intra-op threads (0: onnxruntime's default)
  memoryMb: 8192, // budget for one training step; above it, smaller micro-batches / shorter sequences
};

export type TrainConfig = typeof TRAIN_DEFAULTS;

const pos = z.number().positive();
/**
 * Learning rates outside (0, 1] are refused before anything loads: 1e9 once trained a collapsed
 * model. LoRA usually trains at 1e-5 to 1e-3; up to 1 stays allowed for experiments, and the
 * judge (judge.ts) catches what such a rate does to the model.
 */
export const LR_RANGE = { min: 0, max: 1 } as const;
const lrError = `expected a learning rate greater than ${LR_RANGE.min} and at most ${LR_RANGE.max} (LoRA usually trains at 1e-5 to 1e-3)`;
const learningRate = z.number({ error: lrError }).gt(LR_RANGE.min, { error: lrError }).max(LR_RANGE.max, { error: lrError });
const nonneg = z.number().min(0);
const int0 = z.number().int().min(0);
const int1 = z.number().int().min(1);

const schema = z
  .object({
    rank: int1,
    alpha: pos,
    dropout: z.number().min(0).max(0.95),
    targets: z.array(z.enum(['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'])).min(1),
    lr: learningRate,
    epochs: pos,
    maxSteps: int0,
    batchSize: int1,
    gradAccum: int1,
    schedule: z.enum(['cosine', 'linear', 'constant']),
    warmupRatio: z.number().min(0).max(1),
    warmupSteps: int0,
    minLrRatio: z.number().min(0).max(1),
    weightDecay: nonneg,
    beta1: z.number().min(0).max(1),
    beta2: z.number().min(0).max(1),
    eps: pos,
    maxGradNorm: nonneg,
    dpoBeta: pos,
    maxSeqLen: z.number().int().min(4),
    overLong: z.enum(['truncate', 'skip']),
    evalEvery: int0,
    saveEvery: int0,
    patience: int0,
    minDelta: nonneg,
    seed: z.number().int().min(0).max(2 ** 31 - 1),
    device: z.enum(['auto', 'cpu', 'cuda', 'coreml', 'dml', 'webgpu']),
    threads: int0,
    memoryMb: z.number().int().min(64),
  })
  .strict();

/** Merges overrides onto the defaults (later wins) and validates; throws CONFIG_INVALID. */
export function resolveTrainConfig(...overrides: ReadonlyArray<Record<string, unknown> | undefined>): TrainConfig {
  const merged: Record<string, unknown> = { ...TRAIN_DEFAULTS };
  for (const o of overrides) {
    if (!o) continue;
    for (const [k, v] of Object.entries(o)) if (v !== undefined) merged[k] = v;
  }
  const r = schema.safeParse(merged);
  if (!r.success) {
    const lines = r.error.issues.map((i) => `  ${i.path.join('.') || '(config)'}: ${i.message}`);
    throw new MorrisError('CONFIG_INVALID', `Invalid training settings:\n${lines.join('\n')}`, {
      hint: `Fix the setting (a flag, the --config file or MORRIS_TRAIN_CONFIG's file). Known keys: ${Object.keys(TRAIN_DEFAULTS).join(', ')}.`,
    });
  }
  return Object.freeze(r.data) as TrainConfig;
}

/** Reads a JSON training-config file (an object with any subset of TRAIN_DEFAULTS' keys). */
export function readTrainConfigFile(file: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new MorrisError('CONFIG_INVALID', `Cannot read training config ${file}: ${(e as Error).message}`, { cause: e });
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new MorrisError('CONFIG_INVALID', `Training config ${file} must be a JSON object.`);
  }
  return raw as Record<string, unknown>;
}

/**
 * The settings the environment provides (see .env.example): a config file named by
 * MORRIS_TRAIN_CONFIG, then the memory budget, threads, device and sequence limit.
 */
export function trainSettingsFromEnv(c: {
  MORRIS_TRAIN_CONFIG?: string;
  MORRIS_TRAIN_MEMORY_MB: number;
  MORRIS_TRAIN_THREADS: number;
  MORRIS_DEVICE: string;
  MORRIS_MAX_SEQ_TOKENS: number;
}): Record<string, unknown> {
  return {
    memoryMb: c.MORRIS_TRAIN_MEMORY_MB,
    threads: c.MORRIS_TRAIN_THREADS,
    device: c.MORRIS_DEVICE,
    maxSeqLen: c.MORRIS_MAX_SEQ_TOKENS,
    ...(c.MORRIS_TRAIN_CONFIG ? readTrainConfigFile(c.MORRIS_TRAIN_CONFIG) : {}),
  };
}
