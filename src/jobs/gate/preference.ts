/**
 * Readers' held-out preference pairs as a gate measure: each model's margin
 * log π(chosen) − log π(rejected) on the pairs DPO never trains on (pairs.ts splits by content
 * hash), against the base model's; the share where the model's implicit reward prefers the chosen
 * text is its preference accuracy (ties ½, so the base scores 0.5). Margins come from the DPO eval
 * graph, the same per-sequence log-probs the trainer uses.
 */
import type { PreTrainedTokenizer } from '@huggingface/transformers';
import { MorrisError } from '../../errors.ts';
import { readDecoderConfig } from '../../model/checkpoint/config.ts';
import { adapterTensors, readAdapter } from '../../model/checkpoint/lora.ts';
import type { LoraModule } from '../../model/graph/llama.ts';
import { loadTokenizer, padTokenId } from '../../model/train/data.ts';
import { pairMargins, preferenceAccuracy, preparePairs, splitPairs, type PreferenceRecord, type TokenizedPair } from '../../model/train/pairs.ts';
import { TrainingSessions } from '../../model/train/step.ts';
import type { PreferenceMeasure } from './evaluate.ts';

export interface PreferenceSet {
  modelDir: string;
  /** Every pair readers made; the held-out ones are picked here. */
  records: readonly PreferenceRecord[];
  maxSeqLen: number;
  threads: number;
  device: string;
}

/** Pairs scored per run of the graph. */
const PAIRS_PER_RUN = 4;

/** A measure for the gate's backend: base margins once, then one pass per model. */
export function preferenceMeasurer(v: PreferenceSet): (adapterDir: string | null, signal?: AbortSignal) => Promise<PreferenceMeasure | null> {
  let prepared: Promise<{ tok: PreTrainedTokenizer; pairs: TokenizedPair[]; base: Float64Array | null }> | null = null;
  const prepare = () =>
    (prepared ??= (async () => {
      const tok = await loadTokenizer(v.modelDir);
      const { pairs } = preparePairs(tok, splitPairs(v.records).heldOut, v.maxSeqLen, 'truncate');
      return { tok, pairs, base: pairs.length ? await margins(v, tok, pairs, null) : null };
    })());
  return async (adapterDir, signal) => {
    const { tok, pairs, base } = await prepare();
    if (!base) return null;
    if (signal?.aborted) throw new MorrisError('CANCELLED', 'evaluation cancelled');
    const m = adapterDir === null ? base : await margins(v, tok, pairs, adapterDir);
    return { accuracy: preferenceAccuracy(m, base), pairs: pairs.length };
  };
}

async function margins(v: PreferenceSet, tok: PreTrainedTokenizer, pairs: readonly TokenizedPair[], adapterDir: string | null): Promise<Float64Array> {
  const adapter = adapterDir ? readAdapter(adapterDir, readDecoderConfig(v.modelDir)) : null;
  const sessions = await TrainingSessions.open({
    modelDir: v.modelDir,
    rank: adapter?.r ?? 1,
    alpha: adapter?.alpha ?? 1,
    dropout: 0,
    targets: (adapter?.targetModules ?? ['q_proj']) as LoraModule[],
    device: v.device as never,
    threads: v.threads,
    objective: 'dpo',
  });
  try {
    return await pairMargins(sessions, pairs, adapterTensors(adapter, sessions.lora), padTokenId(tok), PAIRS_PER_RUN);
  } finally {
    await sessions.release();
  }
}
