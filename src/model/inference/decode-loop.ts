/**
 * What the decode loop (batch-loop.ts) runs on and for: a Generation (prompt, sampler, stops,
 * streamer), the step kernels one sequence at a time (ONNX Runtime's, onnx-steps.ts) seen as a
 * batch kernel, and decodeLoop for one generation alone. The native kernel's batches are
 * native-batch.ts; whichever kernel runs, the loop and the sampler are the same, so both choose
 * the same tokens from the same logits.
 */
import type { BaseStreamer } from '@huggingface/transformers';
import { MorrisError } from '../../errors.ts';
import { BatchLoop, type BatchKernel } from './batch-loop.ts';

/** One sequence's KV cache inside a kernel. */
export interface DecodeSequence {
  /** Runs `token` at `position` against the cache, appends its K/V, returns the next logits. */
  step(token: number, position: number): Promise<Float32Array>;
  release(): Promise<void>;
}

/** What the loop needs from a kernel: the prompt's last logits and a sequence to step. */
export interface StepKernel {
  prefill(ids: readonly number[]): Promise<{ sequence: DecodeSequence; logits: Float32Array }>;
  /** Gives back what sequences hold while nothing decodes. */
  idle(): Promise<void>;
}

/** Decode steps run natively (and their time, for overhead checks) and calls that went to ONNX Runtime. */
export interface KernelStats {
  nativeSteps: number;
  nativeMs: number;
  onnxRuns: number;
  /** Of the native steps, those that held prompt rows (prefill chunks), and their time. */
  prefillSteps?: number;
  prefillMs?: number;
  /** Prompts that started from a cached prefix (native batches), and the prompt tokens that did not run. */
  prefix?: { hits: number; reusedTokens: number };
}

/** One generation, whichever loop runs it. */
export interface Generation {
  promptIds: readonly number[];
  maxNewTokens: number;
  /** Picks the next token from a row of logits given every id so far (prompt + generated); may change the row. */
  choose(logits: Float32Array, seen: readonly number[]): number;
  eos: readonly number[];
  streamer: BaseStreamer;
  isStopped(): boolean;
  /**
   * The LoRA adapter folder this generation runs with, where the kernel keeps several beside the
   * base weights (native batches); null: the base model alone; absent: the model's own.
   */
  adapterDir?: string | null;
}

/**
 * A step kernel seen as a batch kernel: each entry runs on its own (a whole prompt through the
 * kernel's prefill, or one token through its sequence's step), one after another. Generations
 * still share the loop, so they take turns token by token, but nothing is read once for all: that
 * takes the native batched step (native-batch.ts).
 */
export function stepKernelBatches(kernel: StepKernel): BatchKernel<{ inner: DecodeSequence | null }> {
  return {
    prefillChunk: Infinity,
    open: () => ({ sequence: { inner: null }, cached: 0 }),
    async step(entries) {
      const out: Float32Array[] = [];
      for (const e of entries) {
        if (!e.sequence.inner) {
          const { sequence, logits } = await kernel.prefill(e.tokens);
          e.sequence.inner = sequence;
          out.push(logits);
        } else {
          if (e.tokens.length !== 1) throw new MorrisError('INTERNAL', 'A step kernel takes one token a step after its prefill.');
          out.push(await e.sequence.inner.step(e.tokens[0]!, e.start));
        }
      }
      return out;
    },
    async close(s) {
      await s.inner?.release();
      s.inner = null;
    },
  };
}

/** One generation alone through the batch loop over a step kernel (tests compare loops with it). */
export function decodeLoop(kernel: StepKernel, g: Generation): Promise<void> {
  return new BatchLoop(stepKernelBatches(kernel), { prefillBudget: Infinity }).run(g);
}
