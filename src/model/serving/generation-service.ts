/**
 * The generation service the bots, the CLI and the dashboard share: one loaded model (base +
 * optional LoRA adapter), loaded lazily on the first request and kept until it has been idle for
 * a while; a scheduler in front of it that admits requests in arrival order into the model's
 * batch (as many decode at once as the model's kernel advances per step: `info.maxBatch`, one
 * until the model is loaded) while the rest wait in a FIFO line that tells each its position
 * (position = requests ahead of it for a batch slot); streaming, cancellation, a time limit that
 * keeps the partial text, and adapter hot swap (the batch in flight finishes on the old model,
 * which is disposed afterwards; new requests start on the new one once it has).
 *
 * Events of one request, in order: `queued` (position 1 = next to run), `started`, any number of
 * `text`, then exactly one `done` (src/generation-events.ts). Failures (model missing or invalid,
 * generation error) are thrown from the iteration; bad input and a full queue throw from
 * `generate()` itself.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { AsyncChannel } from '../../async-channel.ts';
import { MorrisError, isMorrisError } from '../../errors.ts';
import type { DoneEvent, GenerationEvent } from '../../generation-events.ts';
import { childLog } from '../../log.ts';
import { articleMessages, revisionMessages } from '../../prompts.ts';
import { WaitingLine } from '../../waiting-line.ts';
import type { Quant } from '../graph/compile.ts';
import type { SamplingOptions } from '../inference/engine.ts';
import { ModelCache } from './model-cache.ts';
import { disposeServingModel, loadServingModel, servingKey, type AdapterRef, type EngineChoice, type LoadModelFn, type ServingModel } from './load.ts';
import { resolveSampling, validateInput, type GenerationInput, type ServiceRequest } from './request.ts';

export type { GenerationEvent } from '../../generation-events.ts';
export type { AdapterRef, LoadModelFn } from './load.ts';
export type { ServiceRequest } from './request.ts';

const log = childLog('generation');

export type StopReason = 'timeout' | 'cancelled' | 'length' | 'stop';

export interface GenerationServiceOptions extends EngineChoice {
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
}

/** The service always knows which model wrote the text, how long it took and how many tokens. */
export interface ServiceDoneEvent extends DoneEvent {
  reason: StopReason;
  adapterId: string | null;
  datasetId: string | null;
  baseModel: string | null;
  /** Tokens generated (the engine's count; for cut text, the tokenizer's count of `text`). */
  tokens: number;
  queuedMs: number;
  generationMs: number;
}

export interface GenerationStatus {
  loaded: boolean;
  loading: boolean;
  baseModel: string | null;
  adapterId: string | null;
  adapterDir: string | null;
  /** The dataset the current adapter was trained on, when known. */
  datasetId: string | null;
  device: string | null;
  quant: Quant | null;
  decodeKernel: string | null;
  running: boolean;
  /** Requests decoding now, and how many may (the loaded model's batch; 1 before a load). */
  runningCount: number;
  maxBatch: number;
  queueLength: number;
}

/** An engine failure as the caller sees it: coded errors as they are, anything else GENERATION_FAILED. */
function asGenerationError(e: unknown): MorrisError {
  return isMorrisError(e) ? e : new MorrisError('GENERATION_FAILED', `Generation failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
}

interface Job {
  readonly input: GenerationInput;
  readonly sampling: SamplingOptions;
  readonly timeoutMs: number;
  readonly channel: AsyncChannel<GenerationEvent<ServiceDoneEvent>>;
  /** Aborted with reason 'cancelled' (caller) or 'timeout' (time limit). */
  readonly abort: AbortController;
  readonly enqueuedAt: number;
  readonly background: boolean;
  onPosition(position: number): void;
  /** The time limit, armed when generation starts. */
  timer?: NodeJS.Timeout;
  /** The adapter it runs with, fixed when it leaves the waiting line. */
  adapter?: AdapterRef | null;
  /** The adapter the request named (undefined: whatever the service's current one is then). */
  readonly requestedAdapter?: AdapterRef | null;
  /** The request's own system prompt (another columnist's style guide). */
  readonly systemPrompt?: string;
}

/** Two adapters are the same when they are the same folder (or both the plain base model). */
function sameAdapter(a: AdapterRef | null, b: AdapterRef | null): boolean {
  return (a?.dir ?? null) === (b?.dir ?? null);
}

export class GenerationService {
  private readonly opts: GenerationServiceOptions;
  private adapter: AdapterRef | null;
  private baseDir: string | null = null;
  private readonly models = new ModelCache<ServingModel>(disposeServingModel);
  private readonly waiting: WaitingLine<Job>;
  /** Requests decoding now (several share each step where the model batches). */
  private readonly running = new Set<Job>();
  /** The adapter the running requests use; a swap waits for them before admitting more. */
  private runningAdapter: AdapterRef | null = null;
  private closed = false;
  private readonly runningDone = new Set<Promise<void>>();

  constructor(opts: GenerationServiceOptions) {
    this.opts = opts;
    this.adapter = opts.adapter ?? null;
    if (typeof opts.baseModel === 'string') this.baseDir = resolve(opts.baseModel);
    this.waiting = new WaitingLine<Job>(opts.queueMax, opts.backgroundQueueMax ?? opts.queueMax, 'Every writing slot is busy and the line behind them is full.');
  }

  /**
   * Queues one request and returns its event stream. Throws BAD_INPUT (empty or too long topic)
   * and BUSY (queue full) at once, before anything is queued.
   */
  generate(req: ServiceRequest): AsyncIterable<GenerationEvent<ServiceDoneEvent>> {
    if (this.closed) throw new MorrisError('BUSY', 'The generation service is shutting down.', { hint: 'Try again in a moment.' });
    const input = validateInput(req, this.opts.maxTopicChars);
    const sampling = resolveSampling(req.sampling, this.opts.defaults);
    const timeoutS = req.timeoutS ?? this.opts.timeoutS;
    if (!(timeoutS > 0)) throw new MorrisError('BAD_INPUT', `Time limit must be positive, got ${timeoutS}.`);
    const abort = new AbortController();
    const channel = new AsyncChannel<GenerationEvent<ServiceDoneEvent>>(() => abort.abort('cancelled'));
    const job: Job = {
      input,
      sampling,
      timeoutMs: timeoutS * 1000,
      channel,
      abort,
      enqueuedAt: Date.now(),
      background: req.background === true,
      onPosition: (position) => channel.push({ type: 'queued', position }),
      ...(req.adapter !== undefined ? { requestedAdapter: req.adapter === null ? null : { ...req.adapter, dir: resolve(req.adapter.dir) } } : {}),
      ...(req.systemPrompt !== undefined ? { systemPrompt: req.systemPrompt } : {}),
    };
    // Foreground requests go ahead of every waiting background one; a full lane throws BUSY here.
    this.waiting.add(job);
    if (req.signal) {
      if (req.signal.aborted) abort.abort('cancelled');
      else req.signal.addEventListener('abort', () => abort.abort('cancelled'), { once: true });
    }
    // A request cancelled while it waits leaves the queue at once and gets its `done`.
    abort.signal.addEventListener('abort', () => this.dropWaiting(job), { once: true });
    this.models.cancelIdleUnload();
    queueMicrotask(() => this.pump());
    return channel;
  }

  /**
   * Switches the adapter (null = plain base model) without a restart. Requests already running
   * finish on the old model, which is disposed afterwards; later ones load the new one.
   */
  async setAdapter(adapterDir: string | null, adapterId: string | null, datasetId: string | null = null): Promise<void> {
    if (adapterDir !== null && !existsSync(join(adapterDir, 'adapter_config.json'))) {
      throw new MorrisError('NOT_FOUND', `No adapter at ${adapterDir} (adapter_config.json is missing).`, {
        hint: 'Point at a PEFT adapter folder (adapter_config.json + adapter_model.safetensors).',
      });
    }
    this.adapter = adapterDir === null ? null : { dir: resolve(adapterDir), id: adapterId ?? adapterDir, datasetId };
    log.info({ adapterId: this.adapter?.id ?? null }, 'adapter set');
    if (this.running.size === 0 && !this.models.loading) await this.disposeStale();
  }

  status(): GenerationStatus {
    const l = this.models.loaded;
    return {
      loaded: l !== null,
      loading: this.models.loading,
      baseModel: l?.baseDir ?? this.baseDir,
      adapterId: this.adapter?.id ?? null,
      adapterDir: this.adapter?.dir ?? null,
      datasetId: this.adapter?.datasetId ?? null,
      device: l?.model.info.device ?? null,
      quant: l?.model.info.quant ?? null,
      decodeKernel: l?.model.info.decodeKernel ?? null,
      running: this.running.size > 0,
      runningCount: this.running.size,
      maxBatch: this.capacity(),
      queueLength: this.waiting.length,
    };
  }

  /** Cancels waiting requests, lets the running one end as cut, and frees the model. */
  async close(): Promise<void> {
    this.closed = true;
    for (const job of this.waiting.waiters()) job.abort.abort('cancelled');
    for (const job of this.running) job.abort.abort('cancelled');
    await Promise.all([...this.runningDone]);
    await this.models.unload();
  }

  // ------------------------------------------------------------ queue

  private dropWaiting(job: Job): void {
    if (!this.waiting.remove(job)) return;
    job.channel.push(this.doneEvent(job, '', 'cancelled', null, 0));
    job.channel.end();
    if (this.running.size === 0 && this.waiting.length === 0) this.armIdleTimer();
  }

  /**
   * Requests that may decode at once: the loaded model's batch (it says how many its kernel
   * advances per step, shrunk to its memory budget), or one until a model is loaded.
   */
  private capacity(): number {
    return this.models.loaded?.model.info.maxBatch ?? 1;
  }

  /** Whether the loaded model keeps adapters beside its base weights (one per request) for the wanted base. */
  private servesAnyAdapter(): boolean {
    const l = this.models.loaded;
    return l !== null && l.model.info.adapterPool && (this.baseDir === null || l.baseDir === this.baseDir);
  }

  /**
   * Admits waiting requests in arrival order while batch slots are free. After an adapter swap,
   * nothing new starts until the requests still on the old adapter are done (the old model is
   * freed before the new one loads; two rarely fit in memory together).
   */
  private pump(): void {
    while (this.waiting.length > 0 && this.running.size < this.capacity()) {
      // A model with an adapter pool takes any adapter per request: nothing to drain. Otherwise a
      // request for another adapter (a swap, or another columnist's) waits for the running ones.
      const want = this.adapterFor(this.waiting.peek()!);
      if (this.running.size > 0 && !sameAdapter(this.runningAdapter, want) && !this.servesAnyAdapter()) return;
      const job = this.waiting.shift()!;
      job.adapter = want;
      this.runningAdapter = want;
      this.running.add(job);
      // run() answers the request itself; anything it throws past that (an engine whose stream()
      // or countTokens() throws outright) still ends this request's stream, never the process.
      const done: Promise<void> = this.run(job)
        .catch((e: unknown) => {
          clearTimeout(job.timer);
          log.error({ err: e }, 'generation failed outside the engine stream');
          job.channel.fail(asGenerationError(e));
        })
        .finally(async () => {
          this.running.delete(job);
          this.runningDone.delete(done);
          if (this.running.size === 0) {
            // A model made stale by setAdapter during these requests goes now.
            await this.disposeStale().catch((e) => log.warn({ err: e }, 'disposing the old model failed'));
          }
          if (this.waiting.length) this.pump();
          else if (this.running.size === 0) this.armIdleTimer();
        });
      this.runningDone.add(done);
    }
  }

  private async run(job: Job): Promise<void> {
    if (job.abort.signal.aborted) return; // already answered by dropWaiting
    job.channel.push({ type: 'started' });
    let loaded: ServingModel;
    try {
      loaded = await this.ensureLoaded(job.adapter ?? null);
    } catch (e) {
      job.channel.fail(e);
      return;
    }
    // The model is in: it may batch, so admit whoever waited behind this first request.
    this.pump();
    if (job.abort.signal.aborted) {
      job.channel.push(this.doneEvent(job, '', 'cancelled', loaded, 0));
      job.channel.end();
      return;
    }
    const started = Date.now();
    job.timer = setTimeout(() => job.abort.abort('timeout'), job.timeoutMs);
    const input = 'rawText' in job.input && job.input.rawText !== undefined
      ? { text: job.input.rawText }
      : job.input.revision
        ? { messages: revisionMessages(job.systemPrompt ?? loaded.systemPrompt, job.input.topic!, job.input.revision.previousArticle, job.input.revision.instruction) }
        : { messages: articleMessages(job.systemPrompt ?? loaded.systemPrompt, job.input.topic!) };
    let text = '';
    let pending: Promise<unknown> | null = null;
    let generatedTokens: number | null = null;
    const options = { onStats: (s: { generatedTokens: number }) => (generatedTokens = s.generatedTokens), adapterDir: job.adapter?.dir ?? null };
    const iterator = loaded.model.stream(input, job.sampling, job.abort.signal, options)[Symbol.asyncIterator]();
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
      tokens = generatedTokens ?? loaded.model.countTokens(text);
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

  private doneEvent(job: Job, text: string, reason: StopReason, loaded: ServingModel | null, generationMs: number, tokens = 0): ServiceDoneEvent {
    // A request that ran has its own adapter (a pool model serves several); one that never left the line, the current one.
    const adapter = job.adapter !== undefined ? job.adapter : loaded ? loaded.adapter : this.adapter;
    return {
      type: 'done',
      text,
      cut: reason === 'timeout' || reason === 'cancelled',
      reason,
      adapterId: adapter?.id ?? null,
      datasetId: adapter?.datasetId ?? null,
      baseModel: loaded?.baseDir ?? this.baseDir,
      tokens,
      queuedMs: Math.max(0, Date.now() - job.enqueuedAt - generationMs),
      generationMs,
    };
  }

  // ------------------------------------------------------------ model lifecycle

  private adapterFor(job: Job): AdapterRef | null {
    return job.requestedAdapter !== undefined ? job.requestedAdapter : this.adapter;
  }

  private async resolveBase(): Promise<string> {
    if (this.baseDir) return this.baseDir;
    const b = this.opts.baseModel;
    this.baseDir = resolve(typeof b === 'string' ? b : await b());
    return this.baseDir;
  }

  private async ensureLoaded(adapter: AdapterRef | null): Promise<ServingModel> {
    const baseDir = await this.resolveBase();
    if (this.servesAnyAdapter() && !this.models.loading) return this.models.loaded!;
    return this.models.get(servingKey(baseDir, adapter), () => loadServingModel(this.opts.load, baseDir, adapter, this.opts.systemPromptFile, this.opts));
  }

  /** Disposes the loaded model if it no longer matches the wanted base + adapter. */
  private async disposeStale(): Promise<void> {
    if (this.servesAnyAdapter()) return; // it serves the new adapter too
    await this.models.keepOnly(this.baseDir ? servingKey(this.baseDir, this.adapter) : null);
  }

  private armIdleTimer(): void {
    if (this.closed) return;
    this.models.unloadWhenIdle(
      this.opts.idleUnloadS * 1000,
      () => this.running.size === 0 && this.waiting.length === 0 && !this.models.loading,
      (e) => log.warn({ err: e }, 'idle unload failed'),
    );
  }
}
