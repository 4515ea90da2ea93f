/**
 * Morris's decode loop on the CPU: the prompt through a step kernel's prefill, then per token the
 * logits rules and our sampler, the streamer, and one kernel step. The kernel is the native one
 * (native-session.ts) or the ONNX decoder graph run by ONNX Runtime (onnx-steps.ts); the loop is
 * the same, so both choose the same tokens from the same logits.
 */
import type { BaseStreamer } from '@huggingface/transformers';

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
}

/**
 * Stops where transformers.js's generate stops: after a stop token (kept, as generate keeps it),
 * after maxNewTokens, or when asked to.
 */
export async function decodeLoop(kernel: StepKernel, g: Generation): Promise<void> {
  const { sequence, logits: first } = await kernel.prefill(g.promptIds);
  try {
    const seen = [...g.promptIds];
    g.streamer.put([g.promptIds.map((v) => BigInt(v))]);
    let logits = first;
    for (let n = 1; ; n++) {
      const token = g.choose(logits, seen);
      seen.push(token);
      g.streamer.put([[BigInt(token)]]);
      if (n >= g.maxNewTokens || g.eos.includes(token) || g.isStopped()) break;
      logits = await sequence.step(token, seen.length - 1);
    }
    g.streamer.end();
  } finally {
    await sequence.release();
  }
}
