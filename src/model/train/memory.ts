/**
 * Memory budget of one training step. The estimate counts what the graph keeps alive for the
 * backward pass (per layer and token: the residual, norms, projections, attention scores and
 * probabilities, MLP activations; per token: a few vocab-wide rows of the loss) plus the weights.
 * When the configured budget would be exceeded, the micro-batch shrinks first (more accumulation,
 * same optimizer step); if one example still does not fit, sequences are cut shorter.
 */
import type { DecoderConfig } from '../checkpoint/config.ts';

/** The runtime and everything that is not activations or weights. */
const BASE_BYTES = 200 * 2 ** 20;

export function activationBytes(m: DecoderConfig, batch: number, seqLen: number): number {
  const perTokenPerLayer = 8 * m.hiddenSize + 5 * m.intermediateSize + 2 * m.numHeads * seqLen;
  const perToken = m.numLayers * perTokenPerLayer + 3 * m.vocabSize;
  return 4 * batch * seqLen * perToken;
}

export function weightBytes(m: DecoderConfig): number {
  const attn = m.hiddenSize * (2 * m.numHeads * m.headDim + 2 * m.numKvHeads * m.headDim);
  const mlp = 3 * m.hiddenSize * m.intermediateSize;
  const embed = m.vocabSize * m.hiddenSize * (m.tieWordEmbeddings ? 1 : 2);
  return 4 * (m.numLayers * (attn + mlp) + embed);
}

/** Weights are read from the mapped file once and pre-packed by ONNX Runtime for the forward
 * GEMMs once more; the backward keeps weights unpacked (see the Gemm gradient rule). */
export function stepBytes(m: DecoderConfig, batch: number, seqLen: number): number {
  return BASE_BYTES + 2 * weightBytes(m) + activationBytes(m, batch, seqLen);
}

/** What a separate forward-only evaluation session adds (its own pre-packed weights). */
export function evalSessionBytes(m: DecoderConfig, batch: number, seqLen: number): number {
  return weightBytes(m) + activationBytes(m, batch, seqLen) / 3;
}

export interface MemoryFit {
  /** Room for a second, forward-only session for evaluation; else evaluate through the train graph. */
  readonly separateEval: boolean;
  readonly microBatch: number;
  readonly maxSeqLen: number;
  readonly estimateMb: number;
  readonly message?: string;
}

export function fitMemoryBudget(m: DecoderConfig, cfg: { memoryMb: number }, batchSize: number, longest: number): MemoryFit {
  const budget = cfg.memoryMb * 2 ** 20;
  const mb = (b: number) => Math.round(b / 2 ** 20);
  let micro = batchSize;
  while (micro > 1 && stepBytes(m, micro, longest) > budget) micro = Math.ceil(micro / 2);
  let seq = longest;
  while (seq > 16 && stepBytes(m, micro, seq) > budget) seq = Math.floor(seq * 0.8);
  const estimate = stepBytes(m, micro, seq);
  const separateEval = estimate + evalSessionBytes(m, micro, seq) <= budget;
  if (micro === batchSize && seq === longest) return { separateEval, microBatch: micro, maxSeqLen: seq, estimateMb: mb(estimate) };
  const parts = [];
  if (micro < batchSize) parts.push(`micro-batches of ${micro} instead of ${batchSize} (same optimizer step, more accumulation)`);
  if (seq < longest) parts.push(`sequences cut to ${seq} tokens (longest example: ${longest})`);
  return {
    separateEval,
    microBatch: micro,
    maxSeqLen: seq,
    estimateMb: mb(estimate),
    message: `A training step would need about ${mb(stepBytes(m, batchSize, longest))} MB, over the ${cfg.memoryMb} MB budget (MORRIS_TRAIN_MEMORY_MB): using ${parts.join(' and ')}.`,
  };
}

