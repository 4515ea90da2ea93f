/**
 * Starts whichever bots are configured, over one shared core. Used by `morris serve`, which
 * mounts `slackHttpHandler` at POST /slack/events on its own HTTP server (HTTP mode) and calls
 * `stop()` on shutdown. Each platform starts, fails and retries on its own.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Config } from '../config.ts';
import { childLog } from '../log.ts';
import type { Store } from '../store/db.ts';
import { slackReplayGuard } from '../store/slack-replays.ts';
import { isMorrisError } from '../errors.ts';
import { BotCore, coreSettingsFromConfig, type CoreSettings } from './core.ts';
import { createDiscordBot, type DiscordBot } from './discord.ts';
import { createSlackBot, type SlackBot } from './slack.ts';
import type { AdminActions, TextGenerator } from './types.ts';

export type { AdminActions, AdminActor, TextGenerator, GeneratorInfo, GeneratorInput } from './types.ts';
export type { GenerationEvent } from '../generation-events.ts';
export { SLACK_EVENTS_PATH } from './slack.ts';

const logger = childLog('bots');

export interface StartBotsOptions {
  config: Config;
  store: Store;
  generator: TextGenerator;
  admin?: AdminActions;
  /** false: build the core only (the dashboard's playground still uses it); default true. */
  platforms?: boolean;
  /** Overrides for tests (edit intervals, core settings). */
  overrides?: {
    core?: Partial<CoreSettings>;
    editIntervalMs?: number;
    slackUpdatesPerMinute?: number;
    slackRetries?: number;
    /** Backoff between platform start attempts (tests shorten it). */
    retryFirstMs?: number;
    retryMaxMs?: number;
  };
}

export interface RunningBots {
  core: BotCore;
  slack?: SlackBot;
  discord?: DiscordBot;
  /** Node request listener for POST /slack/events when Slack runs in HTTP mode. */
  slackHttpHandler?: (req: IncomingMessage, res: ServerResponse) => void;
  /** Each platform's state now. */
  platforms(): Record<'slack' | 'discord', PlatformStatus>;
  /** Resolves when every configured platform has connected or given up for good (tests). */
  settled(): Promise<void>;
  stop(): Promise<void>;
}

export function slackConfigured(config: Config): boolean {
  return Boolean(config.SLACK_BOT_TOKEN && (config.SLACK_APP_TOKEN || config.SLACK_SIGNING_SECRET));
}

export function discordConfigured(config: Config): boolean {
  return Boolean(config.DISCORD_TOKEN);
}

/** A platform's connection state, as /healthz, `morris status` and the dashboard show it. */
export type PlatformState = 'off' | 'starting' | 'connected' | 'retrying' | 'failed';

export interface PlatformStatus {
  state: PlatformState;
  /** The last failure, for the operator (never a secret). */
  detail?: string;
  attempts: number;
}

/** Backoff between start attempts: doubles from the first delay up to the cap. */
export const PLATFORM_RETRY_FIRST_MS = 1_000;
export const PLATFORM_RETRY_MAX_MS = 60_000;

export function retryDelayMs(attempt: number, firstMs = PLATFORM_RETRY_FIRST_MS, maxMs = PLATFORM_RETRY_MAX_MS): number {
  return Math.min(maxMs, firstMs * 2 ** Math.max(0, attempt - 1));
}

/**
 * Keeps trying to start one platform in the background until it connects, fails for good
 * (CONFIG_INVALID: a wrong token will not heal) or `signal` aborts. The caller never waits for it.
 */
function keepStarting(
  name: string,
  status: PlatformStatus,
  attempt: () => Promise<void>,
  cleanup: () => Promise<void>,
  signal: AbortSignal,
  retry: { firstMs?: number; maxMs?: number },
): Promise<void> {
  return (async () => {
    while (!signal.aborted) {
      status.attempts++;
      try {
        await attempt();
        if (signal.aborted) return;
        status.state = 'connected';
        status.detail = undefined;
        if (status.attempts > 1) logger.info({ platform: name, attempts: status.attempts }, `${name} connected after retrying`);
        return;
      } catch (e) {
        await cleanup().catch((err: unknown) => logger.debug({ err }, `stopping the half-started ${name} bot failed`));
        status.detail = e instanceof Error ? e.message : String(e);
        if (isMorrisError(e) && e.code === 'CONFIG_INVALID') {
          status.state = 'failed';
          logger.error({ err: e, platform: name }, `${name} bot cannot start: ${e.hint ?? 'check its settings'}`);
          return;
        }
        const delay = retryDelayMs(status.attempts, retry.firstMs, retry.maxMs);
        // Loud once, then quiet: a long outage should not fill the log.
        if (status.state !== 'retrying') logger.warn({ err: e, platform: name, retryInMs: delay }, `${name} bot did not start; retrying in the background`);
        else logger.debug({ platform: name, attempts: status.attempts, retryInMs: delay, detail: status.detail }, `${name} still unreachable`);
        status.state = 'retrying';
        await new Promise<void>((r) => {
          const t = setTimeout(r, delay);
          signal.addEventListener('abort', () => (clearTimeout(t), r()), { once: true });
        });
      }
    }
  })();
}

/**
 * Builds the core and starts Slack and/or Discord as configured, each on its own in the
 * background: this returns at once, a platform that cannot connect retries with backoff (its
 * state in `platforms()`), and neither holds up the other, the HTTP port or the scheduler.
 */
export function startBots(opts: StartBotsOptions): RunningBots {
  const { config } = opts;
  const core = new BotCore({
    store: opts.store,
    generator: opts.generator,
    admin: opts.admin,
    settings: { ...coreSettingsFromConfig(config), ...opts.overrides?.core },
  });
  const stopping = new AbortController();
  const retry = { firstMs: opts.overrides?.retryFirstMs, maxMs: opts.overrides?.retryMaxMs };
  const statuses: Record<'slack' | 'discord', PlatformStatus> = {
    slack: { state: 'off', attempts: 0 },
    discord: { state: 'off', attempts: 0 },
  };
  const starting: Promise<void>[] = [];
  const running: RunningBots = {
    core,
    platforms: () => ({ slack: { ...statuses.slack }, discord: { ...statuses.discord } }),
    settled: () => Promise.all(starting).then(() => undefined),
    stop: async () => undefined,
  };

  const wanted = opts.platforms ?? true;
  if (wanted && slackConfigured(config)) {
    const slack = createSlackBot({
      core,
      botToken: config.SLACK_BOT_TOKEN!,
      signingSecret: config.SLACK_SIGNING_SECRET,
      appToken: config.SLACK_APP_TOKEN,
      apiUrl: config.SLACK_API_URL,
      editIntervalMs: opts.overrides?.editIntervalMs,
      updatesPerMinute: opts.overrides?.slackUpdatesPerMinute,
      retries: opts.overrides?.slackRetries,
      replayGuard: slackReplayGuard(opts.store),
    });
    running.slack = slack;
    // The handler exists from the start and answers 503 until Slack is connected.
    running.slackHttpHandler = slack.httpHandler;
    statuses.slack.state = 'starting';
    starting.push(keepStarting('slack', statuses.slack, () => slack.start(), () => slack.stop(), stopping.signal, retry));
  } else if (wanted && config.SLACK_BOT_TOKEN) {
    logger.warn('SLACK_BOT_TOKEN is set but neither SLACK_SIGNING_SECRET nor SLACK_APP_TOKEN: Slack stays off');
  }

  if (wanted && discordConfigured(config)) {
    statuses.discord.state = 'starting';
    let discord: DiscordBot | undefined;
    starting.push(
      keepStarting(
        'discord',
        statuses.discord,
        async () => {
          // A fresh client per attempt: discord.js does not promise a failed login can be retried.
          discord = createDiscordBot({ core, token: config.DISCORD_TOKEN!, apiUrl: config.DISCORD_API_URL, editIntervalMs: opts.overrides?.editIntervalMs });
          await discord.start();
          running.discord = discord;
        },
        async () => {
          await discord?.stop();
          discord = undefined;
        },
        stopping.signal,
        retry,
      ),
    );
  }

  running.stop = async () => {
    stopping.abort();
    await Promise.allSettled(starting);
    await Promise.allSettled([running.slack?.stop(), running.discord?.stop()]);
  };
  return running;
}
