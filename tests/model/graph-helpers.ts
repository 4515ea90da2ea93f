/** Runs a compiled decoder graph directly through ONNX Runtime (full pass, or prefill + cached steps). */
import type { DecoderConfig } from '../../src/model/checkpoint/config.ts';
import { Tensor, int64Tensor, type OrtSession, type OrtTensor } from '../../src/model/inference/runtime.ts';

function emptyPast(cfg: DecoderConfig): Record<string, OrtTensor> {
  const past: Record<string, OrtTensor> = {};
  for (let l = 0; l < cfg.numLayers; l++) {
    for (const k of ['key', 'value']) past[`past_key_values.${l}.${k}`] = new Tensor('float32', new Float32Array(0), [1, cfg.numKvHeads, 0, cfg.headDim]);
  }
  return past;
}

async function step(session: OrtSession, cfg: DecoderConfig, ids: readonly number[], pastLen: number, past: Record<string, OrtTensor>, keep = 0) {
  const T = pastLen + ids.length;
  const res = await session.run({
    input_ids: int64Tensor(ids, [1, ids.length]),
    attention_mask: int64Tensor(Array(T).fill(1), [1, T]),
    position_ids: int64Tensor(ids.map((_, i) => pastLen + i), [1, ids.length]),
    num_logits_to_keep: int64Tensor([keep], []),
    ...past,
  });
  const next: Record<string, OrtTensor> = {};
  for (let l = 0; l < cfg.numLayers; l++) for (const k of ['key', 'value']) next[`past_key_values.${l}.${k}`] = res[`present.${l}.${k}`]!;
  const logits = res['logits']!.data as Float32Array;
  const rows = logits.length / cfg.vocabSize;
  return { rows: Array.from({ length: rows }, (_, r) => logits.slice(r * cfg.vocabSize, (r + 1) * cfg.vocabSize)), past: next };
}

/** Logits of every position from one pass without cache. */
export async function fullLogits(session: OrtSession, cfg: DecoderConfig, ids: readonly number[]): Promise<Float32Array[]> {
  return (await step(session, cfg, ids, 0, emptyPast(cfg))).rows;
}

/** Prefill `prefill` tokens (keeping only the last logits), then one token per run through the KV cache. */
export async function cachedLogits(session: OrtSession, cfg: DecoderConfig, ids: readonly number[], prefill: number): Promise<Float32Array[]> {
  let { rows, past } = await step(session, cfg, ids.slice(0, prefill), 0, emptyPast(cfg), 1);
  const out = [rows[0]!];
  for (let t = prefill; t < ids.length; t++) {
    ({ rows, past } = await step(session, cfg, [ids[t]!], t, past, 1));
    out.push(rows[0]!);
  }
  return out; // logits for positions prefill-1 .. S-1
}

export async function greedyIds(session: OrtSession, cfg: DecoderConfig, prompt: readonly number[], n: number): Promise<number[]> {
  let { rows, past } = await step(session, cfg, prompt, 0, emptyPast(cfg), 1);
  const out: number[] = [];
  let pos = prompt.length;
  while (true) {
    const r = rows[0]!;
    let best = 0;
    for (let i = 1; i < r.length; i++) if (r[i]! > r[best]!) best = i;
    out.push(best);
    if (out.length === n) return out;
    ({ rows, past } = await step(session, cfg, [best], pos++, past, 1));
  }
}

/** max |a - b| / max |b| over all rows. */
export function relError(a: ArrayLike<number>[], b: ArrayLike<number>[]): number {
  let num = 0;
  let den = 0;
  a.forEach((row, r) => {
    for (let i = 0; i < row.length; i++) {
      num = Math.max(num, Math.abs(row[i]! - b[r]![i]!));
      den = Math.max(den, Math.abs(b[r]![i]!));
    }
  });
  return num / den;
}
