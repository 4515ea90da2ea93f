/**
 * Loads a compiled model (base + optional LoRA adapter, fp32/int8/int4) into @huggingface/transformers
 * and streams text from it. The graph comes from compile.ts; transformers.js runs the decode loop
 * with its KV cache. Token choice is ours (sampling.ts, via a logits processor that leaves exactly
 * one token standing), so seeded sampling is reproducible and independent of other generations.
 */
import {
  AutoModelForCausalLM,
  AutoTokenizer,
  BaseStreamer,
  LogitsProcessor,
  StoppingCriteria,
  env,
  random,
  type PreTrainedModel,
  type PreTrainedTokenizer,
  Tensor,
} from '@huggingface/transformers';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { MorrisError } from '../../errors.ts';
import { chatTokenIds, type ChatMessage } from '../../prompts.ts';
import { readJson } from '../checkpoint/config.ts';
import { childLog } from '../../log.ts';
import { compileModel, type Quant } from '../graph/compile.ts';
import { sessionOptions, withProviderFallback, type DeviceChoice, type OrtSession } from './runtime.ts';
import { chooseToken, type Rng, type SamplingOptions } from './sampling.ts';
import { TextDeltaStreamer } from './text-stream.ts';
import { logNativeUnavailable, nativeAddon, type DecodeKernelChoice } from './native-addon.ts';
import { createNativeDecoder, type NativeDecoder } from './native-decoder.ts';
import { withNativeDecode, type KernelStats, type NativeDecodeSession } from './native-session.ts';
import { AsyncChannel } from '../../async-channel.ts';

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
    /** Who runs the decode loop: our native loop, or transformers.js's generate. */
    decodeLoop: 'native' | 'transformers';
  };
  /** Decode steps run by the native kernel and calls that went to ONNX Runtime (prefill, batches). */
  readonly kernelStats: KernelStats;
  /** Messages are rendered by prompts.ts `renderChat` (the checkpoint's chat template, or the plain format); { text } is raw continuation. Yields text pieces as produced; stops early when signal aborts. */
  stream(input: { messages: ChatMessage[] } | { text: string }, opts: SamplingOptions, signal?: AbortSignal): AsyncIterable<string>;
  countTokens(text: string): number;
  dispose(): Promise<void>;
  /** Token counts and timings of the last finished generation (for logs and benchmarks). */
  readonly lastStats?: GenerationStats | null;
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
  /**
   * Who runs the decode loop when the native kernel decodes: 'native' (default), our own loop
   * (ONNX prefill, then one native step per token, our sampler and streamer), or 'transformers',
   * transformers.js's generate with native steps underneath. The first saves the 1-2 ms of JS and
   * garbage a token that generate spends (bench:generate shows both); outputs are identical.
   * Without the kernel, transformers.js always runs the loop.
   */
  decodeLoop?: 'native' | 'transformers';
}

/** Picks one token per row with our sampler and masks every other logit, so greedy decoding keeps it. */
class ChooseTokenProcessor extends LogitsProcessor {
  constructor(private readonly opts: SamplingOptions, private readonly rng: Rng) {
    super();
  }
  override _call(inputIds: bigint[][], logits: Tensor): Tensor {
    const data = logits.data as Float32Array;
    const vocab = logits.dims.at(-1)!;
    for (let row = 0; row < inputIds.length; row++) {
      const slice = data.subarray(row * vocab, (row + 1) * vocab);
      const chosen = chooseToken(slice, inputIds[row]!.map(Number), this.opts, this.rng);
      slice.fill(-Infinity);
      slice[chosen] = 0;
    }
    return logits;
  }
}

class AbortCriteria extends StoppingCriteria {
  constructor(private readonly isStopped: () => boolean) {
    super();
  }
  override _call(inputIds: readonly unknown[]): boolean[] {
    const stop = this.isStopped();
    return inputIds.map(() => stop);
  }
}

/**
 * The decode loop on the native kernel: the prompt through the ONNX graph, then per token our
 * sampler (the same chooseToken, over prompt + generated ids, that ChooseTokenProcessor applies
 * under transformers.js), the streamer, and one native step. It stops where generate stops: after
 * a stop token (which is kept, as generate keeps it), after maxNewTokens, or when asked to.
 */
async function nativeLoop(
  native: NativeDecodeSession,
  promptIds: readonly number[],
  maxNewTokens: number,
  sampling: SamplingOptions,
  rng: Rng,
  eos: readonly number[],
  streamer: BaseStreamer,
  isStopped: () => boolean,
): Promise<void> {
  const { seq, logits: first } = await native.prefill(promptIds);
  try {
    const seen = [...promptIds];
    streamer.put([promptIds.map((v) => BigInt(v))]);
    let logits = first;
    for (let n = 1; ; n++) {
      const token = chooseToken(logits, seen, sampling, rng);
      seen.push(token);
      streamer.put([[BigInt(token)]]);
      if (n >= maxNewTokens || eos.includes(token) || isStopped()) break;
      logits = await native.step(seq, token, seen.length - 1);
    }
    streamer.end();
  } finally {
    await native.release(seq);
  }
}

/**
 * Keys of generation_config.json that make transformers.js's generate change logits before our
 * sampler sees them (min length, n-gram bans, forced or suppressed tokens, guidance), with the
 * values that do. Our native loop applies none of them, so a checkpoint that sets any decodes
 * through generate instead.
 */
function generateOnlySettings(g: Record<string, unknown>): string[] {
  const set = (k: string) => g[k] !== undefined && g[k] !== null;
  const positive = (k: string) => typeof g[k] === 'number' && (g[k] as number) > 0;
  const nonEmpty = (k: string) => Array.isArray(g[k]) && (g[k] as unknown[]).length > 0;
  return [
    ...['min_length', 'min_new_tokens', 'no_repeat_ngram_size'].filter(positive),
    ...['bad_words_ids', 'suppress_tokens', 'begin_suppress_tokens'].filter(nonEmpty),
    ...['forced_bos_token_id', 'forced_eos_token_id'].filter(set),
    ...(typeof g['guidance_scale'] === 'number' && (g['guidance_scale'] as number) > 1 ? ['guidance_scale'] : []),
  ];
}

/** The checkpoint's generation_config.json, or {} without one. */
function readGenerationConfig(dir: string): Record<string, unknown> {
  const file = join(dir, 'generation_config.json');
  return existsSync(file) ? readJson(file, 'generation_config.json') : {};
}

/** generation_config.json's eos ids (e.g. stories260K also stops on BOS) plus config.json's. */
function stopTokenIds(generationConfig: Record<string, unknown>, fromConfig: readonly number[]): number[] {
  const raw = generationConfig['eos_token_id'] as number | number[] | undefined;
  const fromGen = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw];
  return [...new Set([...fromGen, ...fromConfig])];
}

export async function loadModel(opts: LoadOptions): Promise<LoadedModel> {
  const quant = opts.quant ?? 'fp32';
  const compiled = await compileModel({ modelDir: opts.modelDir, adapterDir: opts.adapterDir ?? null, quant, cacheDir: opts.cacheDir });
  let tokenizer: PreTrainedTokenizer;
  try {
    tokenizer = await AutoTokenizer.from_pretrained(compiled.dir, { local_files_only: true });
  } catch (e) {
    throw new MorrisError('MODEL_INVALID', `Cannot load the tokenizer of ${opts.modelDir}: ${e instanceof Error ? e.message : String(e)}.`, {
      hint: 'The model folder needs tokenizer.json and tokenizer_config.json.',
      cause: e,
    });
  }
  const t0 = Date.now();
  const { value: model, device } = await withProviderFallback((opts.device ?? 'auto') as DeviceChoice, (p) =>
    AutoModelForCausalLM.from_pretrained(compiled.dir, {
      local_files_only: true,
      device: p,
      dtype: 'fp32',
      session_options: sessionOptions(opts.threads ?? 1),
    }) as Promise<PreTrainedModel>,
  );
  const kernelStats: KernelStats = { nativeSteps: 0, nativeMs: 0, onnxRuns: 0 };
  let native: NativeDecoder | null = null;
  let nativeSession: NativeDecodeSession | null = null;
  let running = 0;
  const kernelChoice = opts.decodeKernel ?? 'auto';
  if (kernelChoice !== 'onnx') {
    const { addon, reason } = nativeAddon();
    let why: string | null = null; // a reason the kernel does not apply to this model
    if (device !== 'cpu') why = `the model runs on ${device}`;
    // Quantized weights only pay off natively with the vector kernel; the scalar one is slower than ONNX Runtime.
    else if (kernelChoice === 'auto' && quant !== 'fp32' && addon && addon.kernelInfo().quantIsa !== 'avx512') why = `this CPU lacks AVX-512 for ${quant} weights`;
    if (kernelChoice === 'native' && (why || !addon)) {
      await model.dispose();
      throw new MorrisError('CONFIG_INVALID', `MORRIS_DECODE_KERNEL=native, but ${why ?? reason}.`, {
        hint: 'The native kernel runs decode on the CPU. Use MORRIS_DECODE_KERNEL=auto to fall back to ONNX Runtime.',
      });
    }
    if (!why && !addon) logNativeUnavailable(reason);
    if (!why && addon) {
      try {
        native = createNativeDecoder(addon, compiled.config, opts.modelDir, compiled.adapter, compiled.quantized);
      } catch (e) {
        await model.dispose();
        throw e;
      }
      const sessions = (model as unknown as { sessions: Record<string, OrtSession> }).sessions;
      nativeSession = withNativeDecode(sessions['model']!, native, compiled.config, kernelStats);
      sessions['model'] = nativeSession.session;
    }
  }
  const decodeKernel = native ? `native-${native.isa}` : 'onnx';
  const generationConfig = readGenerationConfig(compiled.dir);
  const generateOnly = nativeSession ? generateOnlySettings(generationConfig) : [];
  if (generateOnly.length > 0) log.info({ settings: generateOnly }, 'generation_config.json sets logits rules only transformers.js applies; its generate loop runs over the native steps');
  const decodeLoop = nativeSession && opts.decodeLoop !== 'transformers' && generateOnly.length === 0 ? 'native' : 'transformers';
  log.info({ modelDir: opts.modelDir, adapter: opts.adapterDir ?? null, device, quant, decodeKernel, decodeLoop, weights: native?.layout, ms: Date.now() - t0 }, 'model loaded');
  const eos = stopTokenIds(generationConfig, compiled.config.eosTokenIds);
  let disposed = false;
  let lastStats: GenerationStats | null = null;

  async function* stream(input: { messages: ChatMessage[] } | { text: string }, sampling: SamplingOptions, signal?: AbortSignal): AsyncGenerator<string> {
    if (disposed) throw new MorrisError('GENERATION_FAILED', 'The model was unloaded.');
    if (!(sampling.maxNewTokens >= 1)) throw new MorrisError('BAD_INPUT', `maxNewTokens must be at least 1, got ${sampling.maxNewTokens}.`);
    let promptIds: number[];
    if ('messages' in input) {
      // As training rendered it: the checkpoint's chat template, or the plain format without one.
      promptIds = chatTokenIds(tokenizer, input.messages, { addGenerationPrompt: true });
    } else {
      promptIds = tokenizer.encode(input.text);
    }
    if (promptIds.length === 0) throw new MorrisError('BAD_INPUT', 'The prompt is empty.');
    const context = compiled.config.maxPositionEmbeddings;
    if (promptIds.length >= context) {
      throw new MorrisError('BAD_INPUT', `The prompt is ${promptIds.length} tokens; this model reads at most ${context}.`, { hint: 'Shorten the topic or prompt.' });
    }
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
    const isStopped = () => stopped || signal?.aborted === true;
    const generation = decodeLoop === 'native'
      ? nativeLoop(nativeSession!, promptIds, maxNewTokens, sampling, rng, eos, streamer, isStopped)
      : model.generate({
        inputs: new Tensor('int64', BigInt64Array.from(promptIds, (v) => BigInt(v)), [1, promptIds.length]),
        attention_mask: new Tensor('int64', new BigInt64Array(promptIds.length).fill(1n), [1, promptIds.length]),
        max_new_tokens: maxNewTokens,
        do_sample: false,
        repetition_penalty: 1,
        eos_token_id: eos.length ? [...eos] : undefined,
        logits_processor: [new ChooseTokenProcessor(sampling, rng)],
        stopping_criteria: [new AbortCriteria(isStopped)],
        streamer,
      } as unknown as Parameters<PreTrainedModel["generate"]>[0]);
    const run = generation
      .then(
        () => pieces.end(),
        (e: unknown) => pieces.fail(new MorrisError('GENERATION_FAILED', `Generation failed: ${e instanceof Error ? e.message : String(e)}.`, { cause: e })),
      )
      .finally(() => {
        const times = streamer.tokenTimes;
        if (times.length > 0) {
          lastStats = {
            promptTokens: promptIds.length,
            generatedTokens: times.length,
            ttftMs: times[0]! - started,
            decodeMs: times.at(-1)! - times[0]!,
            intervalsMs: times.slice(1).map((t, i) => t - times[i]!),
            tokenIds: [...streamer.ids],
          };
        }
      });
    try {
      yield* pieces;
    } finally {
      stopped = true; // a consumer that stops iterating stops the decode loop too
      signal?.removeEventListener('abort', onAbort);
      await run;
      if (--running === 0) await nativeSession?.freeSequences(); // KV caches go back as soon as nothing decodes
    }
  }

  return {
    info: { modelDir: opts.modelDir, adapterDir: opts.adapterDir ?? null, device, quant, decodeKernel, decodeLoop },
    kernelStats,
    stream,
    countTokens: (text: string) => tokenizer.encode(text, { add_special_tokens: false }).length,
    get lastStats() {
      return lastStats;
    },
    async dispose() {
      disposed = true;
      await model.dispose();
      try {
        native?.release(); // unmaps now rather than at garbage collection
      } catch (e) {
        log.warn({ err: e instanceof Error ? e.message : String(e) }, 'native decoder not released early; it goes at garbage collection');
      }
    },
  };
}
