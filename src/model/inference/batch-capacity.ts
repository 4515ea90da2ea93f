/**
 * How many generations one model decodes at once. Each member of a batch holds its own KV cache,
 * which grows to (layers × 2 × kvHeads × headDim) floats per position; a batch that could not fit
 * its caches at full context would be killed by the kernel's OOM handling halfway through a busy
 * hour, so the configured size shrinks up front, with a message that says what to change.
 */
import { availableParallelism, totalmem } from 'node:os';
import type { DecoderConfig } from '../checkpoint/config.ts';

/** Bytes one sequence's KV cache takes at `positions` positions (fp32, as the native kernel holds it). */
export function kvBytesPerSequence(cfg: DecoderConfig, positions: number): number {
  return cfg.numLayers * 2 * cfg.numKvHeads * cfg.headDim * positions * 4;
}

/**
 * MORRIS_MAX_BATCH=0's choice: 4 sequences per core, 4 to 16. One thread streams the weights once
 * per step whatever the batch, so up to about 8 rows a step cost little more than one (bench:serve);
 * beyond that the step turns compute-bound and each member slows down.
 */
export function defaultMaxBatch(cores = availableParallelism()): number {
  return Math.min(16, Math.max(4, 4 * cores));
}

/** MORRIS_KV_MEMORY_MB=0's choice: a quarter of the host's memory for the caches of one batch. */
export function defaultKvBudgetBytes(total = totalmem()): number {
  return Math.floor(total / 4);
}

export interface BatchCapacity {
  maxBatch: number;
  /** Why the batch is smaller than configured (logged at load and shown by status), or null. */
  shrunk: string | null;
}

/** The batch size to serve: the configured one, or fewer when their caches at full context exceed the budget. */
export function batchCapacity(cfg: DecoderConfig, configured: number, budgetBytes: number): BatchCapacity {
  const perSequence = kvBytesPerSequence(cfg, cfg.maxPositionEmbeddings);
  const fits = Math.max(1, Math.floor(budgetBytes / perSequence));
  if (fits >= configured) return { maxBatch: configured, shrunk: null };
  const mb = (b: number) => Math.ceil(b / 2 ** 20);
  return {
    maxBatch: fits,
    shrunk:
      `MORRIS_MAX_BATCH=${configured} needs ${mb(perSequence * configured)} MB of KV cache at this model's full context (${cfg.maxPositionEmbeddings} positions, ` +
      `${mb(perSequence)} MB a sequence), over the ${mb(budgetBytes)} MB budget (MORRIS_KV_MEMORY_MB); serving ${fits} at once. ` +
      `Raise MORRIS_KV_MEMORY_MB or lower MORRIS_MAX_BATCH to silence this.`,
  };
}
