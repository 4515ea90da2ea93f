/**
 * Slack adapter (@slack/bolt 5). `/morris <topic>` acks at once, then posts to the channel and
 * streams by editing with chat.update; `@Morris <topic>` answers in a thread; `/morris-admin`
 * runs admin commands. HTTP mode exposes a request listener for POST /slack/events (Bolt's
 * HTTPReceiver verifies signatures: bad or stale ones get 401 and never reach a handler);
 * Socket Mode connects with the app token. Only translation lives here: the work is in the core.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { App, HTTPReceiver, LogLevel, type Logger as BoltLogger } from '@slack/bolt';
import Bottleneck from 'bottleneck';
import type { WebClient } from '@slack/web-api';
import { MorrisError } from '../errors.ts';
import { childLog } from '../log.ts';
import type { BotCore } from './core.ts';
import { SLACK_EDIT_INTERVAL_MS, SLACK_MAX_MESSAGE_LENGTH, SLACK_UPDATES_PER_MINUTE, toSlackMrkdwn } from './render.ts';
import { afterNotice, ReplyTracker, streamReply, type MessageSurface } from './stream-reply.ts';
import type { ReplyUpdate, Requester } from './types.ts';

const logger = childLog('slack');

export const SLACK_EVENTS_PATH = '/slack/events';
/** Slack wants an ack within 3 s; admin results that take longer arrive via response_url. */
export const SLACK_ADMIN_ACK_WAIT_MS = 2000;
/** Event ids remembered to drop Slack's redelivery of an event we already answered. */
export const SLACK_SEEN_EVENTS_MAX = 1000;

export interface SlackBotOptions {
  core: BotCore;
  botToken: string;
  /** HTTP mode (events at POST /slack/events). */
  signingSecret?: string;
  /** Socket Mode; takes precedence over HTTP mode when set. */
  appToken?: string;
  /** Web API base, e.g. http://127.0.0.1:8080/api/ (proxies and tests). */
  apiUrl?: string;
  editIntervalMs?: number;
  /** How long /morris-admin waits to put the result in the ack before answering via response_url. */
  adminAckWaitMs?: number;
  /** Workspace-wide chat.update budget shared by all streams (default SLACK_UPDATES_PER_MINUTE). */
  updatesPerMinute?: number;
  maxMessageLength?: number;
  /** Web API retry policy (tests shorten it). */
  retries?: number;
}

export interface SlackBot {
  app: App;
  mode: 'http' | 'socket';
  /** Node request listener for POST /slack/events (HTTP mode only). */
  httpHandler?: (req: IncomingMessage, res: ServerResponse) => void;
  start(): Promise<void>;
  /** Stops receiving, aborts replies in progress and waits for them to settle. */
  stop(): Promise<void>;
}

/** Bolt's logger interface over our pino logger. */
function boltLogger(): BoltLogger {
  let level = LogLevel.WARN;
  const l = childLog('slack-bolt');
  return {
    debug: (...m: unknown[]) => l.debug(m.map(String).join(' ')),
    info: (...m: unknown[]) => l.info(m.map(String).join(' ')),
    warn: (...m: unknown[]) => l.warn(m.map(String).join(' ')),
    error: (...m: unknown[]) => l.error(m.map(String).join(' ')),
    setLevel: (v: LogLevel) => {
      level = v;
    },
    getLevel: () => level,
    setName: () => undefined,
  };
}

function withSlash(url: string): string {
  return url.endsWith('/') ? url : `${url}/`;
}

function slackErrorCode(e: unknown): string | undefined {
  return (e as { data?: { error?: string } } | undefined)?.data?.error;
}

export function createSlackBot(opts: SlackBotOptions): SlackBot {
  const { core } = opts;
  const mode: 'http' | 'socket' = opts.appToken ? 'socket' : 'http';
  if (mode === 'http' && !opts.signingSecret) {
    throw new MorrisError('CONFIG_INVALID', 'Slack needs SLACK_SIGNING_SECRET (HTTP mode) or SLACK_APP_TOKEN (Socket Mode).', {
      hint: 'Copy the signing secret from your Slack app’s Basic Information page, or enable Socket Mode and set an xapp- token.',
    });
  }
  const clientOptions = {
    ...(opts.apiUrl ? { slackApiUrl: withSlash(opts.apiUrl) } : {}),
    ...(opts.retries !== undefined ? { retryConfig: { retries: opts.retries } } : {}),
  };
  const receiver =
    mode === 'http'
      ? new HTTPReceiver({ signingSecret: opts.signingSecret!, endpoints: [SLACK_EVENTS_PATH], logger: boltLogger() })
      : undefined;
  const app = new App({
    token: opts.botToken,
    ...(receiver ? { receiver } : { socketMode: true, appToken: opts.appToken }),
    clientOptions,
    logger: boltLogger(),
    // auth.test runs in start(), not in the constructor, so a missing Slack never blocks startup.
    deferInitialization: true,
  });

  const replies = new ReplyTracker('slack');

  const edit = opts.editIntervalMs ?? SLACK_EDIT_INTERVAL_MS;
  const maxLength = opts.maxMessageLength ?? SLACK_MAX_MESSAGE_LENGTH;
  // Streams coalesce their pending text while they wait here, so a busy workspace sees fewer,
  // larger edits instead of 429s.
  const updateLimiter = new Bottleneck({ maxConcurrent: 1, minTime: Math.ceil(60_000 / (opts.updatesPerMinute ?? SLACK_UPDATES_PER_MINUTE)) });
  const seenEvents = new Set<string>();

  /** Posts/edits in `channel` (in a thread when `threadTs` is set) and renders the stream. */
  const deliver = (client: WebClient, channel: string, threadTs: string | undefined, updates: AsyncIterable<ReplyUpdate>) => {
    const surface: MessageSurface<string> = {
      async post(text) {
        const r = await client.chat.postMessage({
          channel,
          text,
          ...(threadTs ? { thread_ts: threadTs } : {}),
          unfurl_links: false,
          unfurl_media: false,
        });
        return r.ts as string;
      },
      async edit(ts, text) {
        await updateLimiter.schedule(() => client.chat.update({ channel, ts, text }));
      },
    };
    return streamReply(updates, surface, { maxLength, editIntervalMs: edit, format: toSlackMrkdwn });
  };

  app.command('/morris', async ({ command, ack, respond, client }) => {
    const requester: Requester = { platform: 'slack', userId: command.user_id, channelId: command.channel_id };
    const prepared = await core.prepare({ requester, text: command.text ?? '' });
    if (!prepared.ok) {
      await ack({ response_type: 'ephemeral', text: prepared.message });
      return;
    }
    await ack({ response_type: 'ephemeral', text: prepared.ackText });
    replies.track('slash reply', async (signal) => {
      const updates = prepared.run(signal);
      try {
        await deliver(client, command.channel_id, undefined, updates);
      } catch (e) {
        // Nothing could be posted (or kept updated) in the channel: stop generating and tell the
        // person privately through response_url, which needs no channel membership.
        await updates.return(undefined);
        const code = slackErrorCode(e);
        logger.warn({ err: e, code, channel: command.channel_id }, 'cannot post the article in the channel');
        await respond({
          response_type: 'ephemeral',
          text:
            code === 'not_in_channel' || code === 'channel_not_found'
              ? 'I can’t post in this channel yet: invite me with `/invite @Morris` and ask again.'
              : `Sorry, Slack would not let me post the article here (${code ?? 'network error'}).`,
        });
      }
    });
  });

  app.event('app_mention', async ({ event, body, client, context }) => {
    if (event.bot_id || (context.botUserId && event.user === context.botUserId)) return;
    // Slack redelivers an event it thinks went unanswered; answer each one once.
    if (body.event_id) {
      if (seenEvents.has(body.event_id)) return;
      seenEvents.add(body.event_id);
      if (seenEvents.size > SLACK_SEEN_EVENTS_MAX) seenEvents.delete(seenEvents.values().next().value!);
    }
    const botId = context.botUserId;
    const text = (event.text ?? '').replace(botId ? new RegExp(`<@${botId}(\\|[^>]*)?>`, 'g') : /^\s*<@[A-Z0-9]+(\|[^>]*)?>/, ' ');
    const requester: Requester = { platform: 'slack', userId: event.user ?? 'unknown', channelId: event.channel };
    const threadTs = event.thread_ts ?? event.ts;
    const prepared = await core.prepare({ requester, text });
    if (!prepared.ok) {
      await client.chat.postMessage({ channel: event.channel, thread_ts: threadTs, text: prepared.message });
      return;
    }
    const { ackText, run } = prepared;
    replies.track('mention reply', async (signal) => {
      // A mention has no ack of its own: the thread reply starts as the "writing…" note.
      await deliver(client, event.channel, threadTs, afterNotice(ackText, () => run(signal)));
    });
  });

  app.command('/morris-admin', async ({ command, ack, respond }) => {
    const requester: Requester = { platform: 'slack', userId: command.user_id, channelId: command.channel_id };
    const result = core.admin({ requester, text: command.text ?? '' });
    let timer: NodeJS.Timeout | undefined;
    const quick = await Promise.race([result, new Promise<null>((r) => (timer = setTimeout(() => r(null), opts.adminAckWaitMs ?? SLACK_ADMIN_ACK_WAIT_MS)))]);
    clearTimeout(timer);
    if (quick !== null) {
      await ack({ response_type: 'ephemeral', text: quick });
      return;
    }
    await ack({ response_type: 'ephemeral', text: 'Working on it…' });
    await respond({ response_type: 'ephemeral', text: await result });
  });

  app.error(async (e) => {
    logger.error({ err: e }, 'slack handler error');
  });

  const httpHandler = receiver
    ? (req: IncomingMessage, res: ServerResponse) => {
        try {
          receiver.requestListener(req, res);
        } catch (e) {
          // Bolt throws for paths it does not own; the serve process routes only ours here.
          logger.debug({ err: e, url: req.url }, 'request not for the Slack receiver');
          if (!res.headersSent) {
            res.writeHead(404);
            res.end();
          }
        }
      }
    : undefined;

  return {
    app,
    mode,
    httpHandler,
    async start() {
      await app.init();
      if (mode === 'socket') await app.start();
      logger.info({ mode }, 'slack bot ready');
    },
    async stop() {
      replies.abortAll();
      if (mode === 'socket') await app.stop().catch((e: unknown) => logger.warn({ err: e }, 'slack stop failed'));
      await replies.settled();
    },
  };
}
