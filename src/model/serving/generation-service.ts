/**
 * The generation service the bots, the CLI and the dashboard share: one loaded model (base +
 * optional LoRA adapter), loaded lazily on the first request and kept until it has been idle for
 * a while; one generation at a time through a FIFO queue that tells each request its position;
 * streaming, cancellation, a time limit that keeps the partial text, and adapter hot swap
 * (in-flight work finishes on the old model, which is disposed afterwards).
 *
 * Events of one request, in order: `queued` (position 1 = next to run), `started`, any number of
 * `text`, then exactly one `done`. Failures (model missing or invalid, generation error) are
 * thrown from the iteration; bad input and a full queue throw from `generate()` itself.
 */
import { getActiveAdapter } from '../../store/adapters.ts';
import { SYSTEM_PROMPT_FILE } from '../../paths.ts';
import { articlePrompt, FALLBACK_SYSTEM_PROMPT, readSystemPrompt, type ChatMessage } from '../../prompts.ts';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Config } from '../../config.ts';
import { MorrisError, isMorrisError } from '../../errors.ts';
import { childLog } from '../../log.ts';
import type { Store } from '../../store/db.ts';
import type { Quant } from '../graph/compile.ts';
import type { DecodeKernelChoice } from '../inference/native-addon.ts';
import type { LoadedModel, LoadOptions, SamplingOptions } from '../inference/engine.ts';
import { resolveBaseModel } from '../checkpoint/hub.ts';
import { AsyncChannel } from '../../async-channel.ts';

const log = childLog('generation');

/** Raw continuation text is for base-model checks from the CLI; this only guards memory. */
export const MAX_RAW_CHARS = 20_000;

export type StopReason = 'timeout' | 'cancelled' | 'length' | 'stop';

/** The engine's loadModel, or a stand-in with the same shape (tests). */
export type LoadModelFn = (opts: LoadOptions) => Promise<LoadedModel>;

export interface AdapterRef {
  readonly dir: string;
  readonly id: string;
}

export interface GenerationServiceOptions {
  load: LoadModelFn;
  /** Base model folder, or a function that finds it (and may download it) on first use. */
  baseModel: string | (() => Promise<string>);
  adapter?: AdapterRef | null;
  /** Markdown file with the columnist's system prompt, read at each model load; null → fallback. */
  systemPromptFile: string | null;
  defaults: Omit<SamplingOptions, 'seed'>;
  timeoutS: number;
  /** 0 keeps the model loaded forever. */
  idleUnloadS: number;
  /** Requests allowed to wait behind the running one; one more is BUSY. */
  queueMax: number;
  /** Background requests allowed to wait (their own cap; they never count against queueMax). */
  backgroundQueueMax?: number;
  maxTopicChars: number;
  device?: string;
  quant?: Quant;
  decodeKernel?: DecodeKernelChoice;
  threads?: number;
}

export type GenerationInput = { topic: string; rawText?: never } | { rawText: string; topic?: never };

export type GenerationRequest = GenerationInput & {
  sampling?: Partial<SamplingOptions>;
  /** Overrides the service's time limit for this request (seconds of generation, load excluded). */
  timeoutS?: number;
  /**
   * Background requests wait behind every foreground one (a foreground arrival goes ahead of
   * them) and have their own cap, so they can never fill the foreground queue.
   */
  background?: boolean;
  signal?: AbortSignal;
};

export interface DoneEvent {
  type: 'done';
  /** The whole text generated, authoritative even if some `text` events were not read. */
  text: string;
  /** True when stopped early by the time limit or cancellation: the text is partial. */
  cut: boolean;
  reason: StopReason;
  adapterId: string | null;
  baseModel: string | null;
  /** Tokens generated (the engine's count; for cut text, the tokenizer's count of `text`). */
  tokens: number;
  queuedMs: number;
  generationMs: number;
}

export type GenerationEvent = { type: 'queued'; position: number } | { type: 'started' } | { type: 'text'; text: string } | DoneEvent;

export interface GenerationStatus {
  loaded: boolean;
  loading: boolean;
  baseModel: string | null;
  adapterId: string | null;
  adapterDir: string | null;
  device: string | null;
  quant: Quant | null;
  decodeKernel: string | null;
  running: boolean;
  queueLength: number;
}

/**
 * Sampling as the checkpoint's generation_config.json asks for it, with transformers' defaults
 * for missing fields (do_sample false → greedy, repetition penalty 1). Used for raw continuation,
 * where the base model should behave as its authors configured it. No file → {}.
 */
export function checkpointSamplingDefaults(modelDir: string): Partial<SamplingOptions> {
  const file = join(modelDir, 'generation_config.json');
  if (!existsSync(file)) return {};
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new MorrisError('MODEL_INVALID', `${file} is not valid JSON.`, { cause: e });
  }
  const n = (key: string, fallback: number) => (typeof cfg[key] === 'number' ? (cfg[key] as number) : fallback);
  return {
    temperature: cfg['do_sample'] === true ? n('temperature', 1) : 0,
    topP: n('top_p', 1),
    topK: n('top_k', 50),
    repetitionPenalty: n('repetition_penalty', 1),
    ...(typeof cfg['max_new_tokens'] === 'number' ? { maxNewTokens: cfg['max_new_tokens'] as number } : {}),
  };
}

/** An engine failure as the caller sees it: coded errors as they are, anything else GENERATION_FAILED. */
function asGenerationError(e: unknown): MorrisError {
  return isMorrisError(e) ? e : new MorrisError('GENERATION_FAILED', `Generation failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
}

// ---------------------------------------------------------------- the service

interface Job {
  readonly input: GenerationInput;
  readonly sampling: SamplingOptions;
  readonly timeoutMs: number;
  readonly channel: AsyncChannel<GenerationEvent>;
  /** Aborted with reason 'cancelled' (caller) or 'timeout' (time limit). */
  readonly abort: AbortController;
  readonly enqueuedAt: number;
  readonly background: boolean;
  lastPosition: number;
  /** The time limit, armed when generation starts. */
  timer?: NodeJS.Timeout;
}

interface Loaded {
  readonly model: LoadedModel;
  readonly key: string;
  readonly baseDir: string;
  readonly adapter: AdapterRef | null;
  readonly systemPrompt: string;
}

export class GenerationService {
  private readonly opts: GenerationServiceOptions;
  private adapter: AdapterRef | null;
  private baseDir: string | null = null;
  private loaded: Loaded | null = null;
  private loading = false;
  private readonly waiting: Job[] = [];
  private running: Job | null = null;
  private idleTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private runningDone: Promise<void> = Promise.resolve();

  constructor(opts: GenerationServiceOptions) {
    this.opts = opts;
    this.adapter = opts.adapter ?? null;
    if (typeof opts.baseModel === 'string') this.baseDir = resolve(opts.baseModel);
  }

  /**
   * Queues one request and returns its event stream. Throws BAD_INPUT (empty or too long topic)
   * and BUSY (queue full) at once, before anything is queued.
   */
  generate(req: GenerationRequest): AsyncIterable<GenerationEvent> {
    if (this.closed) throw new MorrisError('BUSY', 'The generation service is shutting down.', { hint: 'Try again in a moment.' });
    const input = this.validateInput(req);
    const sampling = this.sampling(req.sampling);
    const timeoutS = req.timeoutS ?? this.opts.timeoutS;
    if (!(timeoutS > 0)) throw new MorrisError('BAD_INPUT', `Time limit must be positive, got ${timeoutS}.`);
    const background = req.background === true;
    const sameLane = this.waiting.filter((j) => j.background === background).length;
    const cap = background ? (this.opts.backgroundQueueMax ?? this.opts.queueMax) : this.opts.queueMax;
    if (sameLane >= cap) {
      throw new MorrisError('BUSY', `Too many requests waiting (${sameLane}); please try again shortly.`, {
        hint: 'The writer works on one article at a time and its queue is full.',
      });
    }
    const abort = new AbortController();
    const job: Job = {
      input,
      sampling,
      timeoutMs: timeoutS * 1000,
      channel: new AsyncChannel<GenerationEvent>(() => abort.abort('cancelled')),
      abort,
      enqueuedAt: Date.now(),
      background,
      lastPosition: 0,
    };
    if (req.signal) {
      if (req.signal.aborted) abort.abort('cancelled');
      else req.signal.addEventListener('abort', () => abort.abort('cancelled'), { once: true });
    }
    // A request cancelled while it waits leaves the queue at once and gets its `done`.
    abort.signal.addEventListener('abort', () => this.dropWaiting(job), { once: true });
    this.clearIdleTimer();
    // Foreground requests go ahead of every waiting background one; each lane stays FIFO.
    const firstBackground = this.waiting.findIndex((j) => j.background);
    if (background || firstBackground < 0) this.waiting.push(job);
    else this.waiting.splice(firstBackground, 0, job);
    this.reportPositions();
    queueMicrotask(() => this.pump());
    return job.channel;
  }

  /**
   * Switches the adapter (null = plain base model) without a restart. Requests already running
   * finish on the old model, which is disposed afterwards; later ones load the new one.
   */
  async setAdapter(adapterDir: string | null, adapterId: string | null): Promise<void> {
    if (adapterDir !== null && !existsSync(join(adapterDir, 'adapter_config.json'))) {
      throw new MorrisError('NOT_FOUND', `No adapter at ${adapterDir} (adapter_config.json is missing).`, {
        hint: 'Point at a PEFT adapter folder (adapter_config.json + adapter_model.safetensors).',
      });
    }
    this.adapter = adapterDir === null ? null : { dir: resolve(adapterDir), id: adapterId ?? adapterDir };
    log.info({ adapterId: this.adapter?.id ?? null }, 'adapter set');
    if (!this.running && !this.loading) await this.disposeStale();
  }

  status(): GenerationStatus {
    const l = this.loaded;
    return {
      loaded: l !== null,
      loading: this.loading,
      baseModel: l?.baseDir ?? this.baseDir,
      adapterId: this.adapter?.id ?? null,
      adapterDir: this.adapter?.dir ?? null,
      device: l?.model.info.device ?? null,
      quant: l?.model.info.quant ?? null,
      decodeKernel: l?.model.info.decodeKernel ?? null,
      running: this.running !== null,
      queueLength: this.waiting.length,
    };
  }

  /** Cancels waiting requests, lets the running one end as cut, and frees the model. */
  async close(): Promise<void> {
    this.closed = true;
    for (const job of [...this.waiting]) job.abort.abort('cancelled');
    this.running?.abort.abort('cancelled');
    await this.runningDone;
    this.clearIdleTimer();
    await this.unload();
  }

  // ------------------------------------------------------------ input

  private validateInput(req: GenerationRequest): GenerationInput {
    if (typeof req.rawText === 'string') {
      if (!req.rawText.trim()) throw new MorrisError('BAD_INPUT', 'Nothing to continue: the text is empty.', { hint: 'Usage: morris generate --raw "Once upon a time"' });
      if (req.rawText.length > MAX_RAW_CHARS) throw new MorrisError('BAD_INPUT', `Text is ${req.rawText.length} characters; the limit is ${MAX_RAW_CHARS}.`);
      return { rawText: req.rawText };
    }
    const topic = typeof req.topic === 'string' ? req.topic : '';
    // Length first, so a 100 kB topic costs one comparison.
    if (topic.length > this.opts.maxTopicChars) {
      throw new MorrisError('BAD_INPUT', `Topic is ${topic.length} characters; the limit is ${this.opts.maxTopicChars}.`, {
        hint: 'Give a shorter topic: a phrase or a sentence is enough.',
      });
    }
    const clean = topic.replace(/\s+/g, ' ').trim();
    if (!clean) {
      throw new MorrisError('BAD_INPUT', 'No topic given.', { hint: 'Usage: give a topic to write about, e.g. "the joy of late trains".' });
    }
    return { topic: clean };
  }

  private sampling(over: Partial<SamplingOptions> | undefined): SamplingOptions {
    const d = this.opts.defaults;
    const s: SamplingOptions = {
      maxNewTokens: over?.maxNewTokens ?? d.maxNewTokens,
      temperature: over?.temperature ?? d.temperature,
      topP: over?.topP ?? d.topP,
      topK: over?.topK ?? d.topK,
      repetitionPenalty: over?.repetitionPenalty ?? d.repetitionPenalty,
      ...(over?.seed !== undefined ? { seed: over.seed } : {}),
    };
    const bad = (what: string) => new MorrisError('BAD_INPUT', `Invalid sampling option: ${what}.`);
    if (!Number.isInteger(s.maxNewTokens) || s.maxNewTokens < 1) throw bad(`max new tokens ${s.maxNewTokens} (a positive integer)`);
    if (!(s.temperature >= 0)) throw bad(`temperature ${s.temperature} (0 = greedy, or positive)`);
    if (!(s.topP > 0 && s.topP <= 1)) throw bad(`top-p ${s.topP} (in (0, 1])`);
    if (!Number.isInteger(s.topK) || s.topK < 0) throw bad(`top-k ${s.topK} (0 = off, or a positive integer)`);
    if (!(s.repetitionPenalty > 0)) throw bad(`repetition penalty ${s.repetitionPenalty} (positive; 1 = off)`);
    if (s.seed !== undefined && !Number.isInteger(s.seed)) throw bad(`seed ${s.seed} (an integer)`);
    return s;
  }

  // ------------------------------------------------------------ queue

  private reportPositions(): void {
    this.waiting.forEach((job, i) => {
      if (job.lastPosition !== i + 1) {
        job.lastPosition = i + 1;
        job.channel.push({ type: 'queued', position: i + 1 });
      }
    });
  }

  private dropWaiting(job: Job): void {
    const i = this.waiting.indexOf(job);
    if (i < 0) return;
    this.waiting.splice(i, 1);
    job.channel.push(this.doneEvent(job, '', 'cancelled', null, 0));
    job.channel.end();
    this.reportPositions();
    if (!this.running && this.waiting.length === 0) this.armIdleTimer();
  }

  private pump(): void {
    if (this.running || this.waiting.length === 0) return;
    const job = this.waiting.shift()!;
    this.running = job;
    this.reportPositions();
    // run() answers the request itself; anything it throws past that (an engine whose stream()
    // or countTokens() throws outright) still ends this request's stream, never the process.
    this.runningDone = this.run(job)
      .catch((e: unknown) => {
        clearTimeout(job.timer);
        log.error({ err: e }, 'generation failed outside the engine stream');
        job.channel.fail(asGenerationError(e));
      })
      .finally(async () => {
        this.running = null;
        // A model made stale by setAdapter during this request goes now.
        await this.disposeStale().catch((e) => log.warn({ err: e }, 'disposing the old model failed'));
        if (this.waiting.length) this.pump();
        else this.armIdleTimer();
      });
  }

  private async run(job: Job): Promise<void> {
    if (job.abort.signal.aborted) return; // already answered by dropWaiting
    job.channel.push({ type: 'started' });
    let loaded: Loaded;
    try {
      loaded = await this.ensureLoaded();
    } catch (e) {
      job.channel.fail(e);
      return;
    }
    if (job.abort.signal.aborted) {
      job.channel.push(this.doneEvent(job, '', 'cancelled', loaded, 0));
      job.channel.end();
      return;
    }
    const started = Date.now();
    job.timer = setTimeout(() => job.abort.abort('timeout'), job.timeoutMs);
    const input = 'rawText' in job.input && job.input.rawText !== undefined
      ? { text: job.input.rawText }
      : { messages: this.messages(loaded, job.input.topic!) };
    let text = '';
    let pending: Promise<unknown> | null = null;
    const iterator = loaded.model.stream(input, job.sampling, job.abort.signal)[Symbol.asyncIterator]();
    try {
      const aborted = new Promise<'aborted'>((res) => {
        if (job.abort.signal.aborted) res('aborted');
        job.abort.signal.addEventListener('abort', () => res('aborted'), { once: true });
      });
      for (;;) {
        const next = iterator.next();
        const r = await Promise.race([next, aborted]);
        if (r === 'aborted') {
          pending = next;
          break;
        }
        if (r.done) break;
        text += r.value;
        job.channel.push({ type: 'text', text: r.value });
      }
    } catch (e) {
      if (!job.abort.signal.aborted) {
        clearTimeout(job.timer);
        job.channel.fail(asGenerationError(e));
        return;
      }
    }
    clearTimeout(job.timer);
    const elapsed = Date.now() - started;
    let reason: StopReason;
    let tokens: number;
    if (job.abort.signal.aborted) {
      reason = job.abort.signal.reason === 'timeout' ? 'timeout' : 'cancelled';
      tokens = text ? loaded.model.countTokens(text) : 0;
    } else {
      // The engine's own count when it has one (exact); re-tokenizing the text otherwise.
      tokens = loaded.model.lastStats?.generatedTokens ?? loaded.model.countTokens(text);
      reason = tokens >= job.sampling.maxNewTokens ? 'length' : 'stop';
    }
    // The caller gets its answer now; the model is released only once the engine has stopped.
    job.channel.push(this.doneEvent(job, text, reason, loaded, elapsed, tokens));
    job.channel.end();
    if (pending) {
      await pending.catch(() => undefined);
      await iterator.return?.().catch(() => undefined);
    }
  }

  private doneEvent(job: Job, text: string, reason: StopReason, loaded: Loaded | null, generationMs: number, tokens = 0): DoneEvent {
    return {
      type: 'done',
      text,
      cut: reason === 'timeout' || reason === 'cancelled',
      reason,
      adapterId: loaded ? (loaded.adapter?.id ?? null) : (this.adapter?.id ?? null),
      baseModel: loaded?.baseDir ?? this.baseDir,
      tokens,
      queuedMs: Math.max(0, Date.now() - job.enqueuedAt - generationMs),
      generationMs,
    };
  }

  private messages(loaded: Loaded, topic: string): ChatMessage[] {
    return [
      { role: 'system', content: loaded.systemPrompt },
      { role: 'user', content: articlePrompt(topic) },
    ];
  }

  // ------------------------------------------------------------ model lifecycle

  private async resolveBase(): Promise<string> {
    if (this.baseDir) return this.baseDir;
    const b = this.opts.baseModel;
    this.baseDir = resolve(typeof b === 'string' ? b : await b());
    return this.baseDir;
  }

  private async ensureLoaded(): Promise<Loaded> {
    const baseDir = await this.resolveBase();
    const adapter = this.adapter;
    const key = `${baseDir}\u0000${adapter?.dir ?? ''}`;
    if (this.loaded?.key === key) return this.loaded;
    await this.unload();
    if (!existsSync(join(baseDir, 'config.json'))) {
      throw new MorrisError('MODEL_MISSING', `No model at ${baseDir} (config.json is missing).`, {
        hint: 'Set MORRIS_BASE_MODEL to a model folder or Hub repo id, or create a test model with `morris model init-tiny models/tiny`.',
      });
    }
    let systemPrompt = readSystemPrompt(this.opts.systemPromptFile);
    if (systemPrompt === null) {
      log.warn({ file: this.opts.systemPromptFile }, 'system prompt file missing or empty; using the built-in short prompt');
      systemPrompt = FALLBACK_SYSTEM_PROMPT;
    }
    this.loading = true;
    const t0 = Date.now();
    try {
      const model = await this.opts.load({
        modelDir: baseDir,
        adapterDir: adapter?.dir ?? null,
        ...(this.opts.device !== undefined ? { device: this.opts.device } : {}),
        ...(this.opts.quant !== undefined ? { quant: this.opts.quant } : {}),
        ...(this.opts.decodeKernel !== undefined ? { decodeKernel: this.opts.decodeKernel } : {}),
        ...(this.opts.threads !== undefined ? { threads: this.opts.threads } : {}),
      });
      this.loaded = { model, key, baseDir, adapter, systemPrompt };
      log.info({ baseDir, adapterId: adapter?.id ?? null, device: model.info.device, decodeKernel: model.info.decodeKernel, ms: Date.now() - t0 }, 'model loaded');
      return this.loaded;
    } catch (e) {
      if (isMorrisError(e)) throw e;
      throw new MorrisError('MODEL_INVALID', `Could not load the model at ${baseDir}${adapter ? ` with adapter ${adapter.id}` : ''}: ${e instanceof Error ? e.message : String(e)}`, {
        hint: 'Check that the folder holds a complete Hugging Face checkpoint (config.json, tokenizer.json, safetensors weights).',
        cause: e,
      });
    } finally {
      this.loading = false;
    }
  }

  /** Disposes the loaded model if it no longer matches the wanted base + adapter. */
  private async disposeStale(): Promise<void> {
    const wantKey = this.baseDir ? `${this.baseDir}\u0000${this.adapter?.dir ?? ''}` : null;
    if (this.loaded && this.loaded.key !== wantKey) await this.unload();
  }

  private async unload(): Promise<void> {
    const l = this.loaded;
    if (!l) return;
    this.loaded = null;
    await l.model.dispose();
    log.info({ baseDir: l.baseDir, adapterId: l.adapter?.id ?? null }, 'model unloaded');
  }

  private armIdleTimer(): void {
    this.clearIdleTimer();
    if (this.opts.idleUnloadS <= 0 || !this.loaded || this.closed) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = null;
      if (this.running || this.waiting.length || this.loading) return;
      this.unload().catch((e) => log.warn({ err: e }, 'idle unload failed'));
    }, this.opts.idleUnloadS * 1000);
    // An idle model must not keep a CLI process alive.
    this.idleTimer.unref();
  }

  private clearIdleTimer(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }
}

// ---------------------------------------------------------------- wiring

/** The active adapter recorded in the store (`adapters.status = 'active'`), if any. */
export function activeAdapterFromStore(store: Store): AdapterRef | null {
  const row = getActiveAdapter(store);
  return row ? { id: row.id, dir: row.path } : null;
}

/** The service as the app runs it: real engine, settings from config. */
export function createGenerationService(config: Config, opts: { adapter?: AdapterRef | null; baseModel?: string } = {}): GenerationService {
  return new GenerationService({
    // Imported on first load so that merely constructing the service (bots, --help) stays cheap.
    load: async (o) => (await import('../inference/engine.ts')).loadModel(o),
    baseModel: opts.baseModel ?? (() => resolveBaseModel(config)),
    adapter: opts.adapter ?? null,
    systemPromptFile: SYSTEM_PROMPT_FILE,
    defaults: {
      maxNewTokens: config.MORRIS_MAX_NEW_TOKENS,
      temperature: config.MORRIS_TEMPERATURE,
      topP: config.MORRIS_TOP_P,
      topK: config.MORRIS_TOP_K,
      repetitionPenalty: config.MORRIS_REPETITION_PENALTY,
    },
    timeoutS: config.MORRIS_GENERATION_TIMEOUT_S,
    idleUnloadS: config.MORRIS_IDLE_UNLOAD_S,
    queueMax: config.MORRIS_QUEUE_MAX,
    backgroundQueueMax: config.MORRIS_WEB_QUEUE_MAX,
    maxTopicChars: config.MORRIS_MAX_TOPIC_CHARS,
    device: config.MORRIS_DEVICE,
    quant: config.MORRIS_QUANT,
    decodeKernel: config.MORRIS_DECODE_KERNEL,
    ...(config.MORRIS_THREADS > 0 ? { threads: config.MORRIS_THREADS } : {}),
  });
}
