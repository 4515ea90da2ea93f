/**
 * Decode steps through the ONNX decoder graph (graph/llama.ts) on ONNX Runtime, for our decode
 * loop where the native kernel does not apply: the prompt in one run, then one run per token
 * with the previous run's present.N.key/value fed back as past_key_values.
 */
import { MorrisError } from '../../errors.ts';
import type { DecoderConfig } from '../checkpoint/config.ts';
import type { DecodeSequence, KernelStats, StepKernel } from './decode-loop.ts';
import { int64Tensor, promptFeeds, type OrtSession, type OrtTensor } from './runtime.ts';

/** The last position's logits of a run that kept one (num_logits_to_keep 1). */
function lastLogits(out: Record<string, OrtTensor>, cfg: DecoderConfig): Float32Array {
  const logits = out['logits'];
  if (!logits || logits.type !== 'float32' || logits.data.length !== cfg.vocabSize) {
    throw new MorrisError('GENERATION_FAILED', `The decoder graph returned ${logits?.data.length ?? 'no'} logits where ${cfg.vocabSize} were expected.`);
  }
  return logits.data as Float32Array;
}

/** The presents of a run as the next run's past. */
function pastOf(out: Record<string, OrtTensor>, cfg: DecoderConfig): Record<string, OrtTensor> {
  const past: Record<string, OrtTensor> = {};
  for (let l = 0; l < cfg.numLayers; l++) for (const kind of ['key', 'value']) past[`past_key_values.${l}.${kind}`] = out[`present.${l}.${kind}`]!;
  return past;
}

export function onnxSteps(session: OrtSession, cfg: DecoderConfig, stats: KernelStats): StepKernel {
  const run = (feeds: Record<string, OrtTensor>): Promise<Record<string, OrtTensor>> => {
    stats.onnxRuns++;
    return session.run(feeds);
  };
  return {
    async prefill(ids) {
      const out = await run(promptFeeds(cfg, ids, 1));
      let past: Record<string, OrtTensor> | null = pastOf(out, cfg);
      const sequence: DecodeSequence = {
        async step(token, position) {
          if (!past) throw new MorrisError('GENERATION_FAILED', 'A decode step ran on a released sequence.');
          const next = await run({
            ...past,
            input_ids: int64Tensor([token], [1, 1]),
            attention_mask: int64Tensor(Array<number>(position + 1).fill(1), [1, position + 1]),
            position_ids: int64Tensor([position], [1, 1]),
            num_logits_to_keep: int64Tensor([1], []),
          });
          past = pastOf(next, cfg);
          return lastLogits(next, cfg);
        },
        async release() {
          past = null; // the cache is plain tensors: dropping them frees it
        },
      };
      return { sequence, logits: lastLogits(out, cfg) };
    },
    idle: async () => undefined,
  };
}
