/**
 * The memory budget: a step that would not fit shrinks the micro-batch first (same optimizer
 * step, more accumulation), then the sequence length, and says so; a second evaluation session
 * is only kept when it fits too.
 */
import { describe, expect, it } from 'vitest';
import { parseDecoderConfig } from '../../src/model/checkpoint/config.ts';
import { fitMemoryBudget, stepBytes } from '../../src/model/train/memory.ts';

const smollm = parseDecoderConfig({
  model_type: 'llama', hidden_size: 576, intermediate_size: 1536, num_hidden_layers: 30, num_attention_heads: 9,
  num_key_value_heads: 3, head_dim: 64, vocab_size: 49152, max_position_embeddings: 8192, rms_norm_eps: 1e-5,
  rope_theta: 100000, tie_word_embeddings: true, hidden_act: 'silu',
});
const mb = (bytes: number) => Math.ceil(bytes / 2 ** 20);

describe('fitMemoryBudget', () => {
  it('leaves a step that fits alone', () => {
    const fit = fitMemoryBudget(smollm, { memoryMb: 100_000 }, 4, 512);
    expect(fit).toMatchObject({ microBatch: 4, maxSeqLen: 512, separateEval: true });
    expect(fit.message).toBeUndefined();
  });

  it('shrinks the micro-batch, then the sequences, with a message', () => {
    const oneExample = mb(stepBytes(smollm, 1, 512));
    const fit = fitMemoryBudget(smollm, { memoryMb: oneExample + 1 }, 8, 512);
    expect(fit.microBatch).toBe(1);
    expect(fit.maxSeqLen).toBe(512);
    expect(fit.separateEval).toBe(false);
    expect(fit.message).toMatch(/micro-batches of 1 instead of 8/);

    const tight = fitMemoryBudget(smollm, { memoryMb: oneExample - 300 }, 2, 512);
    expect(tight.microBatch).toBe(1);
    expect(tight.maxSeqLen).toBeLessThan(512);
    expect(stepBytes(smollm, 1, tight.maxSeqLen)).toBeLessThanOrEqual((oneExample - 300) * 2 ** 20);
    expect(tight.message).toMatch(/sequences cut to \d+ tokens/);
  });
});
