/**
 * The platform-neutral command core. Adapters hand it what a person typed; it parses, checks
 * (topic length, blocklist, per-user rate limit), records the request in `generations`, drives
 * the TextGenerator and hands back a stream of `ReplyUpdate`s to render. Admin commands go
 * through it to admin-commands.ts (admin ids, audit log, AdminActions).
 */
import Bottleneck from 'bottleneck';
import type { Config } from '../config.ts';
import { isMorrisError, MorrisError } from '../errors.ts';
import { childLog } from '../log.ts';
import type { Store } from '../store/db.ts';
import { isAdmin, runAdminCommand } from './admin-commands.ts';
import { closeGeneration, newGenerationId, openGeneration, type GenerationKind } from '../store/generations.ts';
import { FeedbackDesk } from './feedback-desk.ts';
import { lineageOf } from './lineage.ts';
import { parseRequestText, usageText } from './parse-request.ts';
import { attributionOf, voiceName, voiceProblem, voiceSettingsFromConfig, withChannelVoice, type VoiceDirectory } from './voices.ts';
import { composeArticle, DEFAULT_COLUMNIST, echoTopic, findBlockedTerm, type RenderPlatform } from './render.ts';
import type {
  AdminActions,
  GenerationOptions,
  GenerationRequest,
  ReplyUpdate,
  Requester,
  Revision,
  TextGenerator,
} from './types.ts';
import type { GenerationEvent } from '../generation-events.ts';

const logger = childLog('bot-core');

export const RATE_LIMIT_WINDOW_MS = 60_000;
export { DEFAULT_COLUMNIST };

export interface CoreSettings {
  maxTopicChars: number;
  /** Requests per user per minute; 0 turns the limit off. */
  userRateLimitPerMin: number;
  /** Requests per dashboard session (or API token) per minute, the playground's own limit; 0 = off. */
  webRateLimitPerMin: number;
  blocklist: readonly string[];
  slackAdmins: readonly string[];
  /** Discord user ids or role ids. */
  discordAdmins: readonly string[];
  /** max_new_tokens for a medium article; short and long scale from it. */
  defaultMaxNewTokens: number;
  columnist: string;
  voices?: VoiceDirectory;
}

export function coreSettingsFromConfig(config: Config): CoreSettings {
  return {
    maxTopicChars: config.MORRIS_MAX_TOPIC_CHARS,
    userRateLimitPerMin: config.MORRIS_USER_RATE_LIMIT_PER_MIN,
    webRateLimitPerMin: config.MORRIS_WEB_RATE_LIMIT_PER_MIN,
    blocklist: config.MORRIS_BLOCKLIST,
    slackAdmins: config.MORRIS_SLACK_ADMINS,
    discordAdmins: config.MORRIS_DISCORD_ADMINS,
    defaultMaxNewTokens: config.MORRIS_MAX_NEW_TOKENS,
    ...voiceSettingsFromConfig(config),
  };
}

export type Prepared =
  | { ok: false; message: string; reason: RefusalReason }
  | {
      ok: true;
      request: GenerationRequest;
      /** Short "writing…" line for the immediate acknowledgement (platform-ready text). */
      ackText: string;
      run(signal?: AbortSignal): AsyncGenerator<ReplyUpdate>;
    };

/**
 * A request that passed every check in `precheck` (its rate-limit token is already spent).
 * Hand it to `accept` exactly once to open its `generations` row and get the run.
 */
export interface AcceptedRequest {
  readonly requester: Requester;
  readonly topic: string;
  readonly options: GenerationOptions;
}

/** Why a request was refused before it started (the web API maps these to HTTP statuses). */
export type RefusalReason = 'usage' | 'too_long' | 'blocked' | 'rate_limited';

export type Precheck = { ok: false; message: string; reason: RefusalReason } | { ok: true; accepted: AcceptedRequest };

export interface PrepareInput {
  requester: Requester;
  text: string;
  options?: Partial<GenerationOptions>;
}

export interface BotCoreDeps {
  store: Store;
  generator: TextGenerator;
  admin?: AdminActions;
  settings: CoreSettings;
  now?: () => number;
}

function renderPlatform(requester: Requester): RenderPlatform {
  return requester.platform === 'slack' || requester.platform === 'discord' ? requester.platform : 'plain';
}

/** What a person sees when a generation fails: one short sentence and the reference id. */
export function failureText(e: unknown, ref: string): string {
  const code = isMorrisError(e) ? e.code : 'INTERNAL';
  const why: Partial<Record<string, string>> = {
    MODEL_MISSING: 'the model failed to load',
    MODEL_INVALID: 'the model failed to load',
    MODEL_UNSUPPORTED: 'the model failed to load',
    DEVICE_UNAVAILABLE: 'the model failed to load',
    ADAPTER_MISMATCH: 'the model failed to load',
    BUSY: 'the queue is full right now; try again in a few minutes',
    TIMEOUT: 'it ran out of time',
    CANCELLED: 'the request was cancelled',
    BACKEND_ERROR: 'the generation server did not answer properly',
  };
  // The engine's own input checks speak to the person directly (e.g. a limit it enforces).
  const reason = code === 'BAD_INPUT' && isMorrisError(e) ? e.message.replace(/[<>&]/g, '').replace(/\.$/, '') : why[code];
  return `Sorry, Morris couldn't write that: ${reason ?? 'something went wrong'}. (ref \`${ref}\`)`;
}

/**
 * A fixed one-minute reservoir per user; highWater 0 + OVERFLOW drops (never queues) a request
 * that finds the reservoir empty, so `schedule` rejects at once. 0 per minute → no limit.
 */
function perUserLimiter(perMin: number): Bottleneck.Group | null {
  return perMin > 0
    ? new Bottleneck.Group({
        reservoir: perMin,
        reservoirRefreshAmount: perMin,
        reservoirRefreshInterval: RATE_LIMIT_WINDOW_MS,
        highWater: 0,
        strategy: Bottleneck.strategy.OVERFLOW,
        timeout: 5 * RATE_LIMIT_WINDOW_MS,
      })
    : null;
}

export class BotCore {
  private readonly limiter: Bottleneck.Group | null;
  private readonly webLimiter: Bottleneck.Group | null;
  private readonly now: () => number;
  /** Requests that passed precheck and have not been accepted yet. */
  private readonly unaccepted = new WeakSet<AcceptedRequest>();

  /** Ratings, edits and Regenerate: reader feedback on the articles this core wrote. */
  readonly feedback: FeedbackDesk;

  constructor(private readonly deps: BotCoreDeps) {
    this.now = deps.now ?? Date.now;
    this.feedback = new FeedbackDesk(this, deps.store);
    this.limiter = perUserLimiter(deps.settings.userRateLimitPerMin);
    this.webLimiter = perUserLimiter(deps.settings.webRateLimitPerMin);
  }

  get settings(): CoreSettings {
    return this.deps.settings;
  }

  /** Parses and checks a request; on success the caller acks with `ackText` and renders `run()`. */
  async prepare(input: PrepareInput): Promise<Prepared> {
    const checked = await this.precheck(input);
    return checked.ok ? this.accept(checked.accepted) : checked;
  }

  /**
   * The checks of `prepare` without starting anything: parse, empty/too-long topic, blocklist and
   * the per-user rate limit (spending one token). No I/O but the refusal's `generations` row, so
   * an adapter can run it before answering a platform with a short deadline (Discord's 3 s) and
   * send refusals privately.
   */
  async precheck(input: PrepareInput): Promise<Precheck> {
    const { requester } = input;
    const platform = renderPlatform(requester);
    const { settings } = this.deps;
    if (input.text.length > settings.maxTopicChars * 4 + 200) {
      // Far over the cap (e.g. a pasted 50 kB document): refuse before parsing it at all.
      return this.refuse(requester, input.text, 'too_long', this.tooLongText(input.text.length));
    }
    const parsed = parseRequestText(input.text, withChannelVoice(this.deps.store, requester, input.options), (name) => voiceProblem(settings, { columnist: name }));
    if (!parsed.ok) return { ok: false, reason: 'usage', message: parsed.reason === 'empty' ? usageText(platform) : parsed.message };
    const { topic, options } = parsed;
    if (topic.length > settings.maxTopicChars) return this.refuse(requester, topic, 'too_long', this.tooLongText(topic.length));
    const blocked = findBlockedTerm(topic, settings.blocklist);
    if (blocked) {
      logger.info({ user: requester.userId, platform: requester.platform, term: blocked }, 'topic blocked');
      return this.refuse(requester, topic, 'blocked', "Sorry, that's a topic Morris won't write about.", `blocked term: ${blocked}`);
    }
    if (!(await this.takeRateToken(requester))) {
      const perMin = requester.platform === 'web' ? settings.webRateLimitPerMin : settings.userRateLimitPerMin;
      return this.refuse(
        requester,
        topic,
        'rate_limited',
        `Easy, there: you can ask for ${perMin} article${perMin === 1 ? '' : 's'} a minute. Try again shortly.`,
      );
    }
    const accepted: AcceptedRequest = Object.freeze({ requester, topic, options });
    this.unaccepted.add(accepted);
    return { ok: true, accepted };
  }

  /**
   * Opens the `generations` row for a request that passed `precheck`; once per precheck.
   * `parentId` links a regeneration to the article it replaces (see feedback-desk.ts).
   */
  accept(accepted: AcceptedRequest, link: { parentId?: string; revision?: Revision; kind?: GenerationKind } = {}): Extract<Prepared, { ok: true }> {
    // One rate-limit token pays for one generation: a request not from precheck, or accepted
    // twice, would generate without (or beyond) its token.
    if (!this.unaccepted.delete(accepted)) throw new MorrisError('INTERNAL', 'accept() needs a request from precheck(), once.');
    const { requester, topic, options } = accepted;
    const request: GenerationRequest = { ...requester, id: newGenerationId(), topic, options, ...(link.revision ? { revision: link.revision } : {}) };
    const kind = link.kind ?? (link.revision ? 'revise' : link.parentId ? 'regenerate' : 'ask');
    openGeneration(this.deps.store, { id: request.id, requester, topic, options, parentId: link.parentId, kind, instruction: link.revision?.instruction, columnist: voiceName(options) });
    return {
      ok: true,
      request,
      ackText: `Writing about “${echoTopic(topic, renderPlatform(requester))}”…`,
      run: (signal) => this.run(request, signal),
    };
  }

  private tooLongText(length: number): string {
    return `That topic is ${length.toLocaleString('en-GB')} characters; please keep it under ${this.deps.settings.maxTopicChars}.`;
  }

  private refuse(requester: Requester, topic: string, reason: Exclude<RefusalReason, 'usage'>, message: string, error?: string): Precheck {
    const outcome = reason === 'rate_limited' ? 'rate_limited' : 'refused';
    openGeneration(this.deps.store, { id: newGenerationId(), requester, topic, outcome, error: error ?? message });
    return { ok: false, reason, message };
  }

  private async takeRateToken(requester: Requester): Promise<boolean> {
    const limiter = requester.platform === 'web' ? this.webLimiter : this.limiter;
    if (!limiter) return true;
    try {
      await limiter.key(`${requester.platform}:${requester.userId}`).schedule(async () => undefined);
      return true;
    } catch (e) {
      if (e instanceof Bottleneck.BottleneckError) return false;
      throw e;
    }
  }

  private maxNewTokens(options: GenerationOptions): number {
    if (options.maxNewTokens !== undefined) return options.maxNewTokens;
    const base = this.deps.settings.defaultMaxNewTokens;
    const factor = { short: 0.4, medium: 1, long: 2 }[options.length];
    return Math.max(16, Math.min(8192, Math.round(base * factor)));
  }

  /** Drives the generator for one prepared request and records the outcome. Never throws. */
  private async *run(request: GenerationRequest, outer?: AbortSignal): AsyncGenerator<ReplyUpdate> {
    const { store, generator, settings } = this.deps;
    const platform = renderPlatform(request);
    const started = this.now();
    let ttft: number | null = null;
    let text = '';
    const abort = new AbortController();
    const onOuterAbort = () => abort.abort(outer?.reason);
    outer?.addEventListener('abort', onOuterAbort, { once: true });
    let closed = false;
    const close = (r: Parameters<typeof closeGeneration>[2]) => {
      closed = true;
      closeGeneration(store, request.id, r);
    };
    try {
      const events = generator.generate(
        {
          topic: request.topic,
          ...(request.revision ? { revision: request.revision } : {}),
          maxNewTokens: this.maxNewTokens(request.options),
          temperature: request.options.temperature,
          requestId: request.id,
          ...(request.options.columnist ? { columnist: request.options.columnist } : {}),
          // The dashboard's playground waits behind the bots and has its own small share of the
          // queue, so web traffic never makes a Slack or Discord user wait or be turned away.
          background: request.platform === 'web',
        },
        abort.signal,
      );
      let done: Extract<GenerationEvent, { type: 'done' }> | undefined;
      for await (const ev of events) {
        if (ev.type === 'queued') {
          yield {
            kind: 'notice',
            text: `Queued: position ${ev.position}. Morris will write about “${echoTopic(request.topic, platform)}” soon.`,
          };
        } else if (ev.type === 'started') {
          yield { kind: 'notice', text: `Writing about “${echoTopic(request.topic, platform)}”…` };
        } else if (ev.type === 'text') {
          ttft ??= this.now() - started;
          text += ev.text;
          const blocked = findBlockedTerm(text, settings.blocklist);
          if (blocked) {
            abort.abort(new MorrisError('CONTENT_BLOCKED', 'output blocked'));
            closed = true;
            yield this.blockedOutput(request, started, ttft, text, blocked);
            return;
          }
          yield { kind: 'partial', text };
        } else {
          done = ev;
          break;
        }
      }
      if (!done) throw new MorrisError('GENERATION_FAILED', 'The generator stopped without finishing.');
      ttft ??= this.now() - started;
      const body = done.text || text;
      const blocked = findBlockedTerm(body, settings.blocklist);
      if (blocked) {
        closed = true;
        yield this.blockedOutput(request, started, ttft, body, blocked, done);
        return;
      }
      close({
        outcome: done.cut ? 'cut' : 'ok',
        durationMs: this.now() - started,
        ttftMs: ttft,
        nChars: body.length,
        baseModel: done.baseModel,
        adapterId: done.adapterId,
        datasetId: done.datasetId,
        error: done.cut ? `cut: ${done.reason ?? 'unknown'}` : null,
        article: body.trim(),
      });
      yield {
        kind: 'final',
        text: composeArticle(body, { columnist: attributionOf(settings, voiceName(request.options)), cut: done.cut, cutReason: done.reason, platform }),
        cut: done.cut,
        generationId: request.id,
        reason: done.reason,
        lineage: { ...lineageOf(store, done), columnist: attributionOf(settings, voiceName(request.options)) },
      };
    } catch (e) {
      const cancelled = outer?.aborted || (isMorrisError(e) && e.code === 'CANCELLED');
      const who = { ref: request.id, user: request.userId, platform: request.platform };
      // A refusal the user is told about (busy, cancelled, bad input) is not a fault: no stack.
      if (cancelled || (isMorrisError(e) && e.status < 500)) logger.warn({ ...who, code: isMorrisError(e) ? e.code : 'CANCELLED', why: e instanceof Error ? e.message : String(e) }, 'generation refused or cancelled');
      else logger.error({ err: e, ...who }, 'generation failed');
      close({
        outcome: cancelled ? 'cancelled' : 'failed',
        durationMs: this.now() - started,
        ttftMs: ttft,
        nChars: text.length,
        error: e instanceof Error ? `${isMorrisError(e) ? `${e.code}: ` : ''}${e.message}` : String(e),
      });
      yield { kind: 'failed', text: failureText(e, request.id), generationId: request.id };
    } finally {
      // The adapter stopped reading (e.g. it could not post): the request ends as cancelled.
      if (!closed && !abort.signal.aborted) {
        close({ outcome: 'cancelled', durationMs: this.now() - started, ttftMs: ttft, nChars: text.length, error: 'reply abandoned' });
      }
      outer?.removeEventListener('abort', onOuterAbort);
      if (!abort.signal.aborted) abort.abort(new MorrisError('CANCELLED', 'reply finished'));
    }
  }

  private blockedOutput(
    request: GenerationRequest,
    started: number,
    ttft: number | null,
    text: string,
    term: string,
    done?: Extract<GenerationEvent, { type: 'done' }>,
  ): ReplyUpdate {
    logger.warn({ ref: request.id, term }, 'generated text blocked');
    closeGeneration(this.deps.store, request.id, {
      outcome: 'refused',
      durationMs: this.now() - started,
      ttftMs: ttft,
      nChars: text.length,
      adapterId: done?.adapterId,
      datasetId: done?.datasetId,
      baseModel: done?.baseModel,
      error: `output blocked: ${term}`,
    });
    return {
      kind: 'failed',
      text: `Morris wrote something its content filter won't let through, so nothing was posted. (ref \`${request.id}\`)`,
      generationId: request.id,
    };
  }

  // ---------------------------------------------------------------- admin

  isAdmin(requester: Requester): boolean {
    return isAdmin(requester, this.deps.settings);
  }

  /** Runs an admin command (see admin-commands.ts); returns platform-ready text. */
  admin(input: { requester: Requester; text: string }): Promise<string> {
    return runAdminCommand(this.deps, input);
  }
}
