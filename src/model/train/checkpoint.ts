/**
 * Training checkpoints: everything a resumed run needs to reach the same final weights as an
 * uninterrupted one — LoRA weights, AdamW moments and step count, the best weights so far,
 * early-stopping state, and the data position (the optimizer step; data order and dropout masks
 * are pure functions of seed and position). Written into a temp folder and renamed into place;
 * the previous checkpoint is kept as `checkpoint.old` until the new one is complete, so a kill at
 * any moment leaves one whole checkpoint.
 */
import fs from 'node:fs';
import path from 'node:path';
import { MorrisError, wrapFsError } from '../../errors.ts';
import { readSafetensorsHeader, readTensorF32, writeSafetensors, type TensorToWrite } from '../checkpoint/safetensors.ts';
import type { AdamWState } from './adamw.ts';

export interface TrainState {
  /** Optimizer steps completed. */
  step: number;
  bestEvalLoss: number | null;
  bestStep: number | null;
  /** Evaluations in a row without improvement (early stopping). */
  badEvals: number;
  /** Tokens trained on so far. */
  tokens: number;
  /** Training seconds so far (excluding time before a resume). */
  seconds: number;
  lastTrainLoss: number | null;
  firstEvalLoss: number | null;
  lastEvalLoss: number | null;
}

export interface Checkpoint {
  readonly state: TrainState;
  readonly weights: Map<string, Float32Array>;
  readonly best: Map<string, Float32Array> | null;
  readonly adam: AdamWState;
  /** Identity of the run (model, dataset, settings), checked on resume. */
  readonly fingerprint: string;
}

const DIR = 'checkpoint';

function tensors(map: ReadonlyMap<string, Float32Array>, shapes: ReadonlyMap<string, readonly number[]>, prefix = ''): Record<string, TensorToWrite> {
  const out: Record<string, TensorToWrite> = {};
  for (const [k, v] of map) out[prefix + k] = { dtype: 'F32', shape: shapes.get(k)!, data: v };
  return out;
}

export function saveCheckpoint(runDir: string, c: Checkpoint, shapes: ReadonlyMap<string, readonly number[]>): void {
  const final = path.join(runDir, DIR);
  const tmp = path.join(runDir, `${DIR}.tmp-${process.pid}`);
  const old = path.join(runDir, `${DIR}.old`);
  try {
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.mkdirSync(tmp, { recursive: true });
    writeSafetensors(path.join(tmp, 'lora.safetensors'), tensors(c.weights, shapes));
    writeSafetensors(path.join(tmp, 'optimizer.safetensors'), { ...tensors(c.adam.m, shapes, 'm:'), ...tensors(c.adam.v, shapes, 'v:') });
    if (c.best) writeSafetensors(path.join(tmp, 'best.safetensors'), tensors(c.best, shapes));
    fs.writeFileSync(path.join(tmp, 'state.json'), JSON.stringify({ ...c.state, adamT: c.adam.t, fingerprint: c.fingerprint }, null, 2));
    fs.rmSync(old, { recursive: true, force: true });
    if (fs.existsSync(final)) fs.renameSync(final, old);
    fs.renameSync(tmp, final);
    fs.rmSync(old, { recursive: true, force: true });
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw wrapFsError(e, `checkpoint in ${runDir}`);
  }
}

function readAll(file: string, prefix = ''): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const [name, entry] of readSafetensorsHeader(file).tensors) {
    if (name.startsWith(prefix)) out.set(name.slice(prefix.length), readTensorF32(entry));
  }
  return out;
}

/** The latest complete checkpoint of a run, or null when there is none. */
export function loadCheckpoint(runDir: string): Checkpoint | null {
  let dir = path.join(runDir, DIR);
  if (!fs.existsSync(path.join(dir, 'state.json'))) dir = path.join(runDir, `${DIR}.old`); // killed between the two renames
  if (!fs.existsSync(path.join(dir, 'state.json'))) return null;
  try {
    const raw = JSON.parse(fs.readFileSync(path.join(dir, 'state.json'), 'utf8')) as TrainState & { adamT: number; fingerprint: string };
    const { adamT, fingerprint, ...state } = raw;
    const best = fs.existsSync(path.join(dir, 'best.safetensors')) ? readAll(path.join(dir, 'best.safetensors')) : null;
    const opt = path.join(dir, 'optimizer.safetensors');
    return { state, weights: readAll(path.join(dir, 'lora.safetensors')), best, adam: { t: adamT, m: readAll(opt, 'm:'), v: readAll(opt, 'v:') }, fingerprint };
  } catch (e) {
    throw new MorrisError('BAD_INPUT', `The checkpoint in ${dir} is unreadable: ${(e as Error).message}`, {
      hint: 'Start the run again without --resume (the checkpoint folder can be deleted).',
      cause: e,
    });
  }
}
