/**
 * Loads a compiled model (base + optional LoRA adapter, fp32/int8/int4) and streams text from it.
 * The graph comes from compile.ts, the tokenizer and chat template from transformers.js. On the
 * CPU our own decode loop runs (decode-loop.ts: prefill, then per token the logits rules, our
 * sampler and one native or ONNX Runtime step); on a GPU provider transformers.js's generate does
 * (generate-loop.ts). Token choice is ours on both (logits-rules.ts, sampling.ts), so seeded
 * sampling is reproducible and independent of other generations.
 */
import { AutoTokenizer, env, random, type PreTrainedTokenizer } from '@huggingface/transformers';
import { AsyncChannel } from '../../async-channel.ts';
import { MorrisError, isMorrisError } from '../../errors.ts';
import { childLog } from '../../log.ts';
import { chatTokenIds, type ChatMessage } from '../../prompts.ts';
import { compileModel, type CompiledModel, type Quant } from '../graph/compile.ts';
import type { KernelStats } from './decode-loop.ts';
import { openCpuDecoder, openGpuDecoder, type Decoder } from './decoders.ts';
import { defaultKvBudgetBytes, defaultMaxBatch } from './batch-capacity.ts';
import { applyLogitsRules, parseLogitsRules, readGenerationConfig, stopTokenIds, type LogitsRules } from './logits-rules.ts';
import type { DecodeKernelChoice } from './native-addon.ts';
import { withProviderFallback, type DeviceChoice } from './runtime.ts';
import { chooseToken, type SamplingOptions } from './sampling.ts';
import { TextDeltaStreamer } from './text-stream.ts';

export type { SamplingOptions } from './sampling.ts';

const log = childLog('engine');

// Everything is local: checkpoints are pulled by `morris model pull`, never by the runtime.
env.allowRemoteModels = false;
env.allowLocalModels = true;

export interface LoadedModel {
  readonly info: {
    modelDir: string;
    adapterDir: string | null;
    device: string;
    quant: 'fp32' | 'int8' | 'int4';
    /** What runs single-token decode steps: the native CPU kernel (with its ISA) or the ONNX graph. */
    decodeKernel: string;
    /** Who runs the decode loop: Morris's own (on the CPU), or transformers.js's generate (on a GPU provider). */
    decodeLoop: Decoder['loop'];
    /** Generations decoded together in one step; the service admits this many at once. */
    maxBatch: number;
    /** Why maxBatch is below the batch asked for (KV cache memory), or null. */
    batchShrunk: string | null;
    /** Whether each generation may name its own adapter (StreamOptions.adapterDir), several decoding in one step. */
    adapterPool: boolean;
  };
  /** Decode steps run by the native kernel and calls that went to ONNX Runtime (prefill, batches). */
  readonly kernelStats: KernelStats;
  /** Messages are rendered by prompts.ts `renderChat` (the checkpoint's chat template, or the plain format); { text } is raw continuation. Yields text pieces as produced; stops early when signal aborts. */
  stream(input: { messages: ChatMessage[] } | { text: string }, opts: SamplingOptions, signal?: AbortSignal, options?: StreamOptions): AsyncIterable<string>;
  countTokens(text: string): number;
  dispose(): Promise<void>;
  /** Token counts and timings of the last finished generation (for logs and benchmarks). */
  readonly lastStats?: GenerationStats | null;
}

/** Per-generation settings beyond sampling. */
export interface StreamOptions {
  /** This generation's counts and timings, once it has ended (before the stream finishes); with several at once, `lastStats` may be another's. */
  onStats?(stats: GenerationStats): void;
  /**
   * The LoRA adapter folder to write with, where `info.adapterPool` says the model keeps several
   * (null: the base model alone); absent, or without a pool: the adapter the model was loaded with.
   */
  adapterDir?: string | null;
}

export interface GenerationStats {
  promptTokens: number;
  generatedTokens: number;
  /** From the call to the first generated token (prefill included). */
  ttftMs: number;
  /** From the first to the last generated token. */
  decodeMs: number;
  /** Time between consecutive generated tokens (decode steps), for latency percentiles. */
  intervalsMs: number[];
  /** The generated token ids, a stop token included. */
  tokenIds: number[];
}

export interface LoadOptions {
  modelDir: string;
  adapterDir?: string | null;
  device?: string;
  quant?: Quant;
  threads?: number;
  /** Where compiled graphs go (see compile.ts); defaults next to the model. */
  cacheDir?: string;
  /**
   * Single-token decode on the CPU in fp32: 'auto' uses the native kernel when it is built,
   * 'native' requires it, 'onnx' always runs the graph (MORRIS_DECODE_KERNEL).
   */
  decodeKernel?: DecodeKernelChoice;
  /** Generations decoded together where the kernel batches (MORRIS_MAX_BATCH; default from the cores). */
  maxBatch?: number;
  /** Memory for the KV caches of one batch at full context (MORRIS_KV_MEMORY_MB; default a quarter of RAM). */
  kvBudgetBytes?: number;
  /** Recent prompts kept for shared-prefix reuse by the native kernel (0 = off; default 4). */
  prefixCacheEntries?: number;
}

async function loadTokenizer(compiledDir: string, modelDir: string): Promise<PreTrainedTokenizer> {
  try {
    return await AutoTokenizer.from_pretrained(compiledDir, { local_files_only: true });
  } catch (e) {
    throw new MorrisError('MODEL_INVALID', `Cannot load the tokenizer of ${modelDir}: ${e instanceof Error ? e.message : String(e)}.`, {
      hint: 'The model folder needs tokenizer.json and tokenizer_config.json.',
      cause: e,
    });
  }
}

export async function loadModel(opts: LoadOptions): Promise<LoadedModel> {
  const quant = opts.quant ?? 'fp32';
  const compiled = await compileModel({ modelDir: opts.modelDir, adapterDir: opts.adapterDir ?? null, quant, cacheDir: opts.cacheDir });
  const tokenizer = await loadTokenizer(compiled.dir, opts.modelDir);
  const generationConfig = readGenerationConfig(compiled.dir);
  const rules = parseLogitsRules(generationConfig, compiled.config.vocabSize);
  const eos = stopTokenIds(generationConfig, compiled.config.eosTokenIds);
  const t0 = Date.now();
  const decoderOpts = {
    compiled,
    modelDir: opts.modelDir,
    kernel: opts.decodeKernel ?? 'auto',
    threads: opts.threads ?? 1,
    maxBatch: opts.maxBatch ?? defaultMaxBatch(),
    kvBudgetBytes: opts.kvBudgetBytes ?? defaultKvBudgetBytes(),
    prefixCacheEntries: opts.prefixCacheEntries ?? 4,
  };
  const { value: decoder, device } = await withProviderFallback((opts.device ?? 'auto') as DeviceChoice, (p) =>
    p === 'cpu' ? openCpuDecoder(decoderOpts) : openGpuDecoder(decoderOpts, p),
  );
  const info = { modelDir: opts.modelDir, adapterDir: opts.adapterDir ?? null, device, quant, decodeKernel: decoder.kernel, decodeLoop: decoder.loop, maxBatch: decoder.maxBatch, batchShrunk: decoder.batchShrunk, adapterPool: decoder.adapterPool };
  if (decoder.batchShrunk) log.warn({ maxBatch: decoder.maxBatch }, decoder.batchShrunk);
  log.info({ modelDir: info.modelDir, adapter: info.adapterDir, device, quant, decodeKernel: info.decodeKernel, decodeLoop: info.decodeLoop, maxBatch: info.maxBatch, weights: decoder.layout ?? undefined, ms: Date.now() - t0 }, 'model loaded');
  return servedModel({ info, tokenizer, compiled, decoder, rules, eos });
}

interface Served {
  info: LoadedModel['info'];
  tokenizer: PreTrainedTokenizer;
  compiled: CompiledModel;
  decoder: Decoder;
  rules: LogitsRules;
  eos: readonly number[];
}

/** The prompt's token ids, refused when empty or as long as the context. */
function promptTokenIds(tokenizer: PreTrainedTokenizer, input: { messages: ChatMessage[] } | { text: string }, context: number): number[] {
  // Messages as training rendered them: the checkpoint's chat template, or the plain format without one.
  const ids = 'messages' in input ? chatTokenIds(tokenizer, input.messages, { addGenerationPrompt: true }) : tokenizer.encode(input.text);
  if (ids.length === 0) throw new MorrisError('BAD_INPUT', 'The prompt is empty.');
  if (ids.length >= context) throw new MorrisError('BAD_INPUT', `The prompt is ${ids.length} tokens; this model reads at most ${context}.`, { hint: 'Shorten the topic or prompt.' });
  return ids;
}

/** Token counts and timings from the streamer's token times. */
function generationStats(streamer: TextDeltaStreamer, promptTokens: number, started: number): GenerationStats | null {
  const times = streamer.tokenTimes;
  if (times.length === 0) return null;
  return {
    promptTokens,
    generatedTokens: times.length,
    ttftMs: times[0]! - started,
    decodeMs: times.at(-1)! - times[0]!,
    intervalsMs: times.slice(1).map((t, i) => t - times[i]!),
    tokenIds: [...streamer.ids],
  };
}

function servedModel({ info, tokenizer, compiled, decoder, rules, eos }: Served): LoadedModel {
  let disposed = false;
  let running = 0;
  let lastStats: GenerationStats | null = null;

  async function* stream(input: { messages: ChatMessage[] } | { text: string }, sampling: SamplingOptions, signal?: AbortSignal, options?: StreamOptions): AsyncGenerator<string> {
    if (disposed) throw new MorrisError('GENERATION_FAILED', 'The model was unloaded.');
    if (!(sampling.maxNewTokens >= 1)) throw new MorrisError('BAD_INPUT', `maxNewTokens must be at least 1, got ${sampling.maxNewTokens}.`);
    const context = compiled.config.maxPositionEmbeddings;
    const promptIds = promptTokenIds(tokenizer, input, context);
    const maxNewTokens = Math.min(sampling.maxNewTokens, context - promptIds.length);
    const promptText = tokenizer.decode(promptIds, { skip_special_tokens: true });

    // A consumer that stops iterating (or an abort) stops the decode loop at the next token.
    let stopped = false;
    const pieces = new AsyncChannel<string>();
    const onAbort = () => {
      stopped = true;
    };
    signal?.addEventListener('abort', onAbort);
    const started = performance.now();
    const streamer = new TextDeltaStreamer(tokenizer, promptIds, promptText, (piece) => pieces.push(piece));
    running++;
    const rngState = new random.Random(sampling.seed ?? Math.floor(Math.random() * 2 ** 31));
    const rng = () => rngState.random();
    const ruleContext = { promptLength: promptIds.length, eos, maxNewTokens };
    const run = decoder
      .run({
        promptIds,
        maxNewTokens,
        choose(logits, seen) {
          applyLogitsRules(logits, rules, { ...ruleContext, seen });
          return chooseToken(logits, seen, sampling, rng);
        },
        eos,
        streamer,
        isStopped: () => stopped || signal?.aborted === true,
        ...(info.adapterPool && options?.adapterDir !== undefined ? { adapterDir: options.adapterDir } : {}),
      })
      .then(
        () => pieces.end(),
        // Coded errors (a broken adapter file: MODEL_INVALID) reach the caller as they are.
        (e: unknown) => pieces.fail(isMorrisError(e) ? e : new MorrisError('GENERATION_FAILED', `Generation failed: ${e instanceof Error ? e.message : String(e)}.`, { cause: e })),
      )
      .finally(() => {
        const stats = generationStats(streamer, promptIds.length, started);
        if (stats) {
          lastStats = stats;
          options?.onStats?.(stats);
        }
      });
    try {
      yield* pieces;
    } finally {
      stopped = true; // a consumer that stops iterating stops the decode loop too
      signal?.removeEventListener('abort', onAbort);
      await run;
      if (--running === 0) await decoder.idle(); // KV caches go back as soon as nothing decodes
    }
  }

  return {
    info,
    kernelStats: decoder.stats,
    stream,
    countTokens: (text: string) => tokenizer.encode(text, { add_special_tokens: false }).length,
    get lastStats() {
      return lastStats;
    },
    async dispose() {
      disposed = true;
      await decoder.dispose();
    },
  };
}
