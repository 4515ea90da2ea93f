/**
 * Starts whichever bots are configured, over one shared core. Used by `morris serve`, which
 * mounts `slackHttpHandler` at POST /slack/events on its own HTTP server (HTTP mode) and calls
 * `stop()` on shutdown.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Config } from '../config.ts';
import { childLog } from '../log.ts';
import type { Store } from '../store/db.ts';
import { BotCore, coreSettingsFromConfig, type CoreSettings } from './core.ts';
import { createDiscordBot, type DiscordBot } from './discord.ts';
import { createSlackBot, type SlackBot } from './slack.ts';
import type { AdminActions, TextGenerator } from './types.ts';

export type { AdminActions, AdminActor, TextGenerator, GeneratorEvent, GeneratorInfo, GeneratorInput } from './types.ts';
export { SLACK_EVENTS_PATH } from './slack.ts';

const logger = childLog('bots');

export interface StartBotsOptions {
  config: Config;
  store: Store;
  generator: TextGenerator;
  admin?: AdminActions;
  /** Overrides for tests (edit intervals, core settings). */
  overrides?: { core?: Partial<CoreSettings>; editIntervalMs?: number; slackUpdatesPerMinute?: number; slackRetries?: number };
}

export interface RunningBots {
  core: BotCore;
  slack?: SlackBot;
  discord?: DiscordBot;
  /** Node request listener for POST /slack/events when Slack runs in HTTP mode. */
  slackHttpHandler?: (req: IncomingMessage, res: ServerResponse) => void;
  stop(): Promise<void>;
}

export function slackConfigured(config: Config): boolean {
  return Boolean(config.SLACK_BOT_TOKEN && (config.SLACK_APP_TOKEN || config.SLACK_SIGNING_SECRET));
}

export function discordConfigured(config: Config): boolean {
  return Boolean(config.DISCORD_TOKEN);
}

/**
 * Builds the core and starts Slack and/or Discord as configured. A platform that fails to start
 * is logged and left out (the other one and the serve process keep running).
 */
export async function startBots(opts: StartBotsOptions): Promise<RunningBots> {
  const { config } = opts;
  const core = new BotCore({
    store: opts.store,
    generator: opts.generator,
    admin: opts.admin,
    settings: { ...coreSettingsFromConfig(config), ...opts.overrides?.core },
  });
  const running: RunningBots = { core, stop: async () => undefined };

  const startSlack = async () => {
    if (!slackConfigured(config)) {
      if (config.SLACK_BOT_TOKEN) logger.warn('SLACK_BOT_TOKEN is set but neither SLACK_SIGNING_SECRET nor SLACK_APP_TOKEN: Slack stays off');
      return;
    }
    const slack = createSlackBot({
      core,
      botToken: config.SLACK_BOT_TOKEN!,
      signingSecret: config.SLACK_SIGNING_SECRET,
      appToken: config.SLACK_APP_TOKEN,
      apiUrl: config.SLACK_API_URL,
      editIntervalMs: opts.overrides?.editIntervalMs,
      updatesPerMinute: opts.overrides?.slackUpdatesPerMinute,
      retries: opts.overrides?.slackRetries,
    });
    try {
      await slack.start();
      running.slack = slack;
      running.slackHttpHandler = slack.httpHandler;
    } catch (e) {
      logger.error({ err: e }, 'Slack bot did not start (check SLACK_BOT_TOKEN and the app settings)');
      await slack.stop().catch((err: unknown) => logger.debug({ err }, 'stopping the half-started Slack bot failed'));
    }
  };

  const startDiscord = async () => {
    if (!discordConfigured(config)) return;
    const discord = createDiscordBot({
      core,
      token: config.DISCORD_TOKEN!,
      apiUrl: config.DISCORD_API_URL,
      editIntervalMs: opts.overrides?.editIntervalMs,
    });
    try {
      await discord.start();
      running.discord = discord;
    } catch (e) {
      logger.error({ err: e }, 'Discord bot did not start (check DISCORD_TOKEN)');
      await discord.stop().catch((err: unknown) => logger.debug({ err }, 'stopping the half-started Discord bot failed'));
    }
  };

  // Side by side: a slow platform does not hold up the other (each handles its own failure).
  await Promise.all([startSlack(), startDiscord()]);

  running.stop = async () => {
    await Promise.allSettled([running.slack?.stop(), running.discord?.stop()]);
  };
  return running;
}
