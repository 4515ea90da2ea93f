/**
 * Slack adapter (@slack/bolt 5). `/morris <topic>` acks at once, then posts an acknowledgement
 * in the channel and streams the article into its thread with Slack's chat streaming
 * (slack-stream.ts), or, where a workspace has none, by editing with chat.update (stream-reply.ts);
 * `@Morris <topic>` answers in a thread; `/morris-admin`
 * runs admin commands. HTTP mode exposes a request listener for POST /slack/events (Bolt's
 * HTTPReceiver verifies signatures: bad or stale ones get 401 and never reach a handler);
 * Socket Mode connects with the app token. Only translation lives here: the work is in the core.
 * A finished article's last message becomes Block Kit with the lineage and feedback controls;
 * their handlers (clicks, the edit modal) are in slack-feedback.ts.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { App, HTTPReceiver, LogLevel, webApi, type Logger as BoltLogger } from '@slack/bolt';
import Bottleneck from 'bottleneck';
import type { WebClient } from '@slack/web-api';
import { MorrisError } from '../errors.ts';
import type { ReplayGuard } from '../store/slack-replays.ts';
import { childLog } from '../log.ts';
import type { BotCore, Prepared } from './core.ts';
import { onFinal, threadKey } from './revise.ts';
import { SLACK_EDIT_INTERVAL_MS, SLACK_MAX_MESSAGE_LENGTH, SLACK_UPDATES_PER_MINUTE, toSlackMrkdwn } from './render.ts';
import { registerSlackFeedback, slackArticleBlocks } from './slack-feedback.ts';
import { slackEventsHandler } from './slack-http.ts';
import { slackErrorCode, SlackStreaming } from './slack-stream.ts';
import { afterNotice, ReplyTracker, streamReply, type AdoptedMessage, type MessageSurface } from './stream-reply.ts';
import type { ReplyUpdate, Requester } from './types.ts';

const logger = childLog('slack');

export const SLACK_EVENTS_PATH = '/slack/events';
/** Slack wants an ack within 3 s; admin results that take longer arrive via response_url. */
export const SLACK_ADMIN_ACK_WAIT_MS = 2000;
/** Event ids remembered to drop Slack's redelivery of an event we already answered. */
export const SLACK_SEEN_EVENTS_MAX = 1000;
/** One connection check (auth.test) gives up after this, so a start attempt fails fast. */
export const SLACK_PROBE_TIMEOUT_MS = 10_000;
/** Slack errors that no retry will cure: the token itself is wrong. */
const SLACK_FATAL_AUTH_ERRORS = new Set(['invalid_auth', 'not_authed', 'account_inactive', 'token_revoked', 'token_expired', 'not_allowed_token_type']);

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
  /** Remembers handled request signatures (HTTP mode), so a replayed request runs once. */
  replayGuard?: ReplayGuard;
  /** Slack's chat streaming (default on; where a workspace lacks it, edits are used anyway). */
  chatStreaming?: boolean;
  /** Least time between two chat.appendStream calls of one stream (default: editIntervalMs). */
  appendIntervalMs?: number;
}

/** Who asked, and the acknowledgement to post in the channel before the article streams. */
export interface SlackDeliverOptions {
  recipient?: { teamId?: string; userId: string };
  ackText?: string;
}

export interface SlackBot {
  app: App;
  mode: 'http' | 'socket';
  /** Node request listener for POST /slack/events (HTTP mode only); 503 until start() succeeded. */
  httpHandler?: (req: IncomingMessage, res: ServerResponse) => void;
  /** Checks the token (auth.test, no retries) and connects; throws at once when Slack is unreachable. */
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

  const streaming = new SlackStreaming({ columnist: core.settings.columnist, appendIntervalMs: opts.appendIntervalMs ?? edit });

  /**
   * Edit-based streaming: posts/edits in `channel` (in a thread when `threadTs` is set), taking
   * over `adopt` as the first message when one is already showing. `onRoot` learns the ts of the
   * first message posted outside a thread (replies to the article go in its thread).
   */
  const editBased = (
    client: WebClient,
    channel: string,
    threadTs: string | undefined,
    updates: AsyncIterable<ReplyUpdate>,
    adopt?: AdoptedMessage<string>,
    onRoot?: (ts: string) => void,
  ) => {
    const posted = (ts: string) => {
      if (!threadTs) onRoot?.(ts);
      onRoot = undefined;
      return ts;
    };
    const surface: MessageSurface<string> = {
      async post(text) {
        const r = await client.chat.postMessage({
          channel,
          text,
          ...(threadTs ? { thread_ts: threadTs } : {}),
          unfurl_links: false,
          unfurl_media: false,
        });
        return posted(r.ts as string);
      },
      async edit(ts, text) {
        await updateLimiter.schedule(() => client.chat.update({ channel, ts, text }));
      },
      // The article's last message becomes blocks: text, lineage and the feedback controls
      // (the plain `text` stays, for notifications and clients without blocks).
      async finish(ts, text, _index, final) {
        const blocks = slackArticleBlocks(text, final, core.settings.columnist);
        if (ts) {
          await updateLimiter.schedule(() => client.chat.update({ channel, ts, text, blocks }));
          return ts;
        }
        const r = await client.chat.postMessage({ channel, text, blocks, ...(threadTs ? { thread_ts: threadTs } : {}), unfurl_links: false, unfurl_media: false });
        return posted(r.ts as string);
      },
    };
    return streamReply(updates, surface, { maxLength, editIntervalMs: edit, format: toSlackMrkdwn }, adopt);
  };

  /**
   * Renders a reply in `channel` (a thread when `threadTs` is set): by chat streaming when the
   * workspace has it and we know whom it is for, else by editing. Without `ackText` the first
   * notice is the acknowledgement. A finished article is remembered as its thread's (the thread
   * it was written in, or the one under it), so a reply there revises it (revise.ts): a later
   * article in the same thread takes over.
   */
  const deliver = (client: WebClient, channel: string, threadTs: string | undefined, updates: AsyncIterable<ReplyUpdate>, how: SlackDeliverOptions = {}) => {
    let root = threadTs;
    const onRoot = (ts: string) => {
      root ??= ts;
    };
    const linked = onFinal(updates, (id) => {
      if (root) core.feedback.linkMessages('slack', [threadKey(channel, root)], id);
    });
    if (opts.chatStreaming === false || !streaming.usable || !how.recipient) return editBased(client, channel, threadTs, linked, undefined, onRoot);
    return streaming.deliver(
      {
        client,
        channel,
        threadTs,
        recipient: how.recipient,
        ackText: how.ackText,
        onThread: onRoot,
        editBased: (thread, rest, adopt) => editBased(client, channel, thread, rest, adopt, onRoot),
      },
      linked,
    );
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
        await deliver(client, command.channel_id, undefined, updates, { recipient: { teamId: command.team_id, userId: command.user_id }, ackText: prepared.ackText });
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
    // A mention inside an article's thread revises that article (the message handler leaves it to us).
    const revising = event.thread_ts ? threadArticle(event.channel, event.thread_ts) : undefined;
    const prepared = revising ? await core.feedback.revise(requester, revising, text) : await core.prepare({ requester, text });
    await answerInThread(client, event.channel, threadTs, body.team_id, requester, prepared, revising ? 'revision reply' : 'mention reply');
  });

  /** The article whose thread this is (the latest one written there). */
  const threadArticle = (channel: string, threadTs: string) => core.feedback.generationForMessage('slack', threadKey(channel, threadTs));

  /** Posts a refusal, or streams the article into the thread and remembers the thread as its. */
  const answerInThread = async (client: WebClient, channel: string, threadTs: string, teamId: string | undefined, requester: Requester, prepared: Prepared, what: string) => {
    if (!prepared.ok) {
      await client.chat.postMessage({ channel, thread_ts: threadTs, text: prepared.message });
      return;
    }
    const { ackText, run } = prepared;
    replies.track(what, async (signal) => {
      // A thread has no ack of its own: the reply starts as the "writing…" note.
      const updates = afterNotice(ackText, () => run(signal));
      await deliver(client, channel, threadTs, updates, { recipient: { teamId, userId: requester.userId } });
    });
  };

  // A plain reply in an article's thread (no mention: app_mention handles those) revises it.
  app.event('message', async ({ event, body, client, context }) => {
    const e = event as { subtype?: string; bot_id?: string; user?: string; text?: string; channel: string; thread_ts?: string };
    if (e.subtype || e.bot_id || !e.thread_ts || (context.botUserId && e.user === context.botUserId)) return;
    const botId = context.botUserId;
    if (botId && (e.text ?? '').includes(`<@${botId}`)) return;
    const revising = threadArticle(e.channel, e.thread_ts);
    if (!revising) return;
    if (body.event_id) {
      if (seenEvents.has(body.event_id)) return;
      seenEvents.add(body.event_id);
    }
    const requester: Requester = { platform: 'slack', userId: e.user ?? 'unknown', channelId: e.channel };
    const prepared = await core.feedback.revise(requester, revising, e.text ?? '');
    await answerInThread(client, e.channel, e.thread_ts, body.team_id, requester, prepared, 'revision reply');
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

  registerSlackFeedback(app, { core, deliver, track: (what, work) => replies.track(what, work) });

  app.error(async (e) => {
    logger.error({ err: e }, 'slack handler error');
  });

  let ready = false;
  const httpHandler = receiver
    ? slackEventsHandler({ signingSecret: opts.signingSecret!, replayGuard: opts.replayGuard, ready: () => ready, receiver })
    : undefined;

  return {
    app,
    mode,
    httpHandler,
    async start() {
      // One quick check first: Bolt's own client retries for many minutes, which would hold a
      // start attempt (and its caller) that long while Slack is down.
      const probe = new webApi.WebClient(opts.botToken, { ...clientOptions, retryConfig: { retries: 0 }, timeout: SLACK_PROBE_TIMEOUT_MS, rejectRateLimitedCalls: true });
      try {
        await probe.auth.test();
      } catch (e) {
        const code = slackErrorCode(e);
        throw new MorrisError(code && SLACK_FATAL_AUTH_ERRORS.has(code) ? 'CONFIG_INVALID' : 'BACKEND_ERROR', `Slack did not answer auth.test: ${code ?? (e as Error).message}`, {
          hint: code && SLACK_FATAL_AUTH_ERRORS.has(code) ? 'Check SLACK_BOT_TOKEN (Install App → Bot User OAuth Token).' : 'Slack is unreachable from this host; retrying.',
          cause: e,
        });
      }
      await app.init();
      if (mode === 'socket') await app.start();
      ready = true;
      logger.info({ mode }, 'slack bot ready');
    },
    async stop() {
      ready = false;
      replies.abortAll();
      if (mode === 'socket') await app.stop().catch((e: unknown) => logger.warn({ err: e }, 'slack stop failed'));
      await replies.settled();
    },
  };
}
