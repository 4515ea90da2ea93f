/**
 * Preference pairs for DPO: TRL's conversational records (prompt / chosen / rejected messages) →
 * token ids with assistant masks, by the same tokenizer path and length rule as SFT examples
 * (data.ts) → micro-batches of 2P sequences (P chosen, then P rejected) for the DPO graph.
 *
 * The held-out split is a pure function of each record's content, so the same pair is held out
 * in every DPO run and in the gate's evaluation, however many pairs arrive later: the gate never
 * judges an adapter on a pair it was trained on.
 */
import { createHash } from 'node:crypto';
import type { PreTrainedTokenizer } from '@huggingface/transformers';
import type { ChatMessage } from '../../prompts.ts';
import { applyLengthRule, makeMicroBatch, targetCount, tokenizeConversation, type TokenizedExample } from './data.ts';
import type { PairMicroBatch, TrainingSessions } from './step.ts';

export interface PreferenceRecord {
  readonly prompt: readonly ChatMessage[];
  readonly chosen: readonly ChatMessage[];
  readonly rejected: readonly ChatMessage[];
}

export interface TokenizedPair {
  readonly chosen: TokenizedExample;
  readonly rejected: TokenizedExample;
}

export interface PairCounts {
  pairs: number;
  kept: number;
  /** chosen and rejected are the same text (or the same tokens once cut to the context): no signal. */
  skippedIdentical: number;
  /** Either side was cut to the context. */
  truncated: number;
  /** Either side was longer than the context with overLong 'skip'. */
  skippedTooLong: number;
  /** Either side had no assistant token left to score. */
  skippedNoAssistant: number;
}

/** One in HELD_OUT_EVERY pairs (by content hash) is held out for evaluation. */
export const HELD_OUT_EVERY = 10;

function recordHash(r: PreferenceRecord): number {
  return createHash('sha256').update(JSON.stringify([r.prompt, r.chosen, r.rejected])).digest().readUInt32BE(0);
}

/**
 * Train / held-out split by content hash; when the hash holds none out of two or more pairs, the
 * last one is held out, so a small file still gets a preference figure.
 */
export function splitPairs<T extends PreferenceRecord>(records: readonly T[]): { train: T[]; heldOut: T[] } {
  const train: T[] = [];
  const heldOut: T[] = [];
  for (const r of records) (recordHash(r) % HELD_OUT_EVERY === 0 ? heldOut : train).push(r);
  if (heldOut.length === 0 && train.length >= 2) heldOut.push(train.pop()!);
  return { train, heldOut };
}

const text = (ms: readonly ChatMessage[]) => ms.map((m) => `${m.role}\u0000${m.content.trim()}`).join('\u0001');

/** Tokenizes pairs (prompt + completion each) and applies SFT's length rule to both sides. */
export function preparePairs(
  tok: PreTrainedTokenizer,
  records: readonly PreferenceRecord[],
  maxSeqLen: number,
  overLong: 'truncate' | 'skip',
): { pairs: TokenizedPair[]; counts: PairCounts } {
  const counts: PairCounts = { pairs: records.length, kept: 0, skippedIdentical: 0, truncated: 0, skippedTooLong: 0, skippedNoAssistant: 0 };
  const pairs: TokenizedPair[] = [];
  for (const r of records) {
    if (text(r.chosen) === text(r.rejected)) {
      counts.skippedIdentical++;
      continue;
    }
    const c = applyLengthRule(tokenizeConversation(tok, [...r.prompt, ...r.chosen]), maxSeqLen, overLong);
    const j = applyLengthRule(tokenizeConversation(tok, [...r.prompt, ...r.rejected]), maxSeqLen, overLong);
    if (c.truncated || j.truncated) counts.truncated++;
    if ('skipped' in c || 'skipped' in j) {
      if (('skipped' in c && c.skipped === 'tooLong') || ('skipped' in j && j.skipped === 'tooLong')) counts.skippedTooLong++;
      else counts.skippedNoAssistant++;
      continue;
    }
    if (sameScoredTokens(c.example, j.example)) {
      counts.skippedIdentical++; // they differed only past the cut
      continue;
    }
    counts.kept++;
    pairs.push({ chosen: c.example, rejected: j.example });
  }
  return { pairs, counts };
}

function sameScoredTokens(a: TokenizedExample, b: TokenizedExample): boolean {
  return a.ids.length === b.ids.length && a.ids.every((x, i) => x === b.ids[i] && a.assistant[i] === b.assistant[i]);
}

export function pairTargets(p: TokenizedPair): number {
  return targetCount(p.chosen) + targetCount(p.rejected);
}

/** P pairs → 2P right-padded sequences (chosen rows first) with each pair's reference margin. */
export function makePairBatch(pairs: readonly TokenizedPair[], refMargins: ArrayLike<number>, padId: number): PairMicroBatch {
  const mb = makeMicroBatch([...pairs.map((p) => p.chosen), ...pairs.map((p) => p.rejected)], padId);
  return { mb, refMargin: Float32Array.from(refMargins) };
}

/**
 * log π(chosen) − log π(rejected) of every pair under `weights` (dropout off), `perBatch` pairs
 * per run. With the reference's weights these are the margins DPO subtracts, computed once.
 */
export async function pairMargins(sessions: TrainingSessions, pairs: readonly TokenizedPair[], weights: ReadonlyMap<string, Float32Array>, padId: number, perBatch: number): Promise<Float64Array> {
  const out = new Float64Array(pairs.length);
  for (let i = 0; i < pairs.length; i += perBatch) {
    const chunk = pairs.slice(i, i + perBatch);
    const r = await sessions.dpoEval(makePairBatch(chunk, new Float32Array(chunk.length), padId), weights, 0, 1);
    for (let p = 0; p < chunk.length; p++) out[i + p] = r.seqLogp[p]! - r.seqLogp[chunk.length + p]!;
  }
  return out;
}

/**
 * Nats within which two margins count as equal: float32 sums of a few hundred log-probs round at
 * about this size, and a policy equal to its reference must score a tie, not a coin flip.
 */
export const TIE_NATS = 1e-4;

/**
 * Preference accuracy: the share of pairs whose implicit reward β·(log π − log πref) is higher
 * for the chosen text, i.e. policy margin > reference margin; a tie counts one half, so a policy
 * equal to its reference scores 0.5 (chance), not 0.
 */
export function preferenceAccuracy(policy: ArrayLike<number>, reference: ArrayLike<number>): number {
  if (policy.length === 0) return NaN;
  let score = 0;
  for (let i = 0; i < policy.length; i++) {
    const d = policy[i]! - reference[i]!;
    score += Math.abs(d) <= TIE_NATS * Math.max(1, Math.abs(reference[i]!)) ? 0.5 : d > 0 ? 1 : 0;
  }
  return score / policy.length;
}
