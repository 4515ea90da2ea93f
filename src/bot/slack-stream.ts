/**
 * Slack's chat streaming for articles: the acknowledgement is posted first, then the article grows
 * as a reply in the thread under it (chat.startStream / appendStream / stopStream, through
 * web-api's `chatStream` helper), while `assistant.threads.setStatus` shows the queue position
 * and loading in that thread. Streaming is Slack's own typing animation and needs no chat.update
 * budget; where it is missing or gives out we fall back to the edit-based path (stream-reply.ts)
 * on the message already showing, so no text is ever lost:
 * - the methods are unavailable (unknown_method, not_allowed…): the acknowledgement becomes the
 *   article, edited as before, and later replies skip streaming altogether;
 * - a stream Slack stopped accepting (slow generations outlive it: message_not_in_streaming_state)
 *   or any other append/stop failure: the streamed message is finished with chat.update.
 */
import type { ChatStreamer, WebClient } from '@slack/web-api';
import { MorrisError } from '../errors.ts';
import { childLog } from '../log.ts';
import { neutraliseMentions } from './render.ts';
import { slackFeedbackBlocks } from './slack-feedback.ts';
import type { AdoptedMessage } from './stream-reply.ts';
import type { ReplyUpdate } from './types.ts';

const logger = childLog('slack-stream');

/** Answers meaning this workspace or token has no chat streaming: no retry will cure them. */
export const SLACK_STREAMING_UNAVAILABLE = new Set(['unknown_method', 'not_allowed', 'not_allowed_token_type', 'missing_scope', 'method_deprecated', 'feature_not_enabled']);
/** Answers to setStatus meaning the workspace has no assistant threads for this app: stop asking. */
const STATUS_UNAVAILABLE = new Set([...SLACK_STREAMING_UNAVAILABLE, 'no_permission', 'invalid_thread', 'not_supported']);

/** Slack takes at most this much markdown_text in one start/append/stop call. */
export const SLACK_STREAM_CALL_MAX_CHARS = 12_000;

/** `text` in pieces Slack accepts in one call each (a burst of text can outgrow one call). */
export function streamPieces(text: string, max = SLACK_STREAM_CALL_MAX_CHARS): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; ) {
    let end = Math.min(text.length, i + max);
    // Never between the two halves of a surrogate pair (an emoji would arrive as two U+FFFD).
    const last = text.charCodeAt(end - 1);
    if (end < text.length && last >= 0xd800 && last <= 0xdbff) end--;
    out.push(text.slice(i, end));
    i = end;
  }
  return out;
}

export function slackErrorCode(e: unknown): string | undefined {
  return (e as { data?: { error?: string } } | undefined)?.data?.error;
}

/**
 * The article as streamed: mentions disarmed, leading blank space dropped (the final text trims
 * it), and the last, possibly unfinished word held back, so what has been sent is always a prefix
 * of the finished article (a mention split across two pieces is disarmed whole).
 */
export function streamableText(raw: string, complete: boolean): string {
  const text = neutraliseMentions(raw.trimStart());
  if (complete) return text;
  const tail = /\s+\S*$/.exec(text);
  return tail ? text.slice(0, tail.index) : '';
}

export interface SlackStreamTarget {
  client: WebClient;
  channel: string;
  /** The thread the reply belongs to (a mention's); none: the acknowledgement opens one. */
  threadTs?: string;
  /** Who asked: Slack streams outside DMs only to a named recipient. */
  recipient: { teamId?: string; userId: string };
  /** The acknowledgement's text; without it, the first notice is the acknowledgement. */
  ackText?: string;
  /** Learns the thread the reply lives in, once the acknowledgement is posted. */
  onThread?(threadTs: string): void;
  /** The edit-based path: renders `updates` in `threadTs`, continuing on `adopt` when given. */
  editBased(threadTs: string | undefined, updates: AsyncIterable<ReplyUpdate>, adopt?: AdoptedMessage<string>): Promise<unknown>;
}

export interface SlackStreamingOptions {
  columnist: string;
  /** Least time between two appends; Slack limits appendStream calls per message. */
  appendIntervalMs: number;
  now?: () => number;
}

type Terminal = Extract<ReplyUpdate, { kind: 'final' | 'failed' }>;

/** One per bot: remembers whether the workspace streams, and whether it shows statuses. */
export class SlackStreaming {
  /** undefined until a stream was tried; false once Slack said the methods are unavailable. */
  private available: boolean | undefined;
  private statusOff = false;
  private statusWarned = false;
  private readonly now: () => number;

  constructor(private readonly opts: SlackStreamingOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** False once this workspace answered that it has no chat streaming (until restart). */
  get usable(): boolean {
    return this.available !== false;
  }

  /** Shows `status` in a thread; never throws (workspaces without the assistant scope refuse it). */
  async setStatus(client: WebClient, channel: string, threadTs: string, status: string, loading?: string): Promise<void> {
    if (this.statusOff) return;
    try {
      await client.assistant.threads.setStatus({ channel_id: channel, thread_ts: threadTs, status, ...(loading ? { loading_messages: [loading] } : {}) });
    } catch (e) {
      const code = slackErrorCode(e);
      if (code && STATUS_UNAVAILABLE.has(code)) this.statusOff = true;
      if (!this.statusWarned) logger.warn({ code, err: code ? undefined : e }, 'assistant.threads.setStatus refused; thread statuses are not shown');
      this.statusWarned = true;
    }
  }

  async deliver(target: SlackStreamTarget, updates: AsyncIterable<ReplyUpdate>): Promise<unknown> {
    const { client, channel } = target;
    const it = updates[Symbol.asyncIterator]();
    // The updates not yet shown, then whatever the generation still sends (closing the rest
    // closes the generation, as a broken-off reply must).
    const rest = (backlog: ReplyUpdate[]) =>
      (async function* () {
        yield* backlog;
        yield* { [Symbol.asyncIterator]: () => it };
      })();
    const first = await it.next();
    if (first.done) return;
    const ackText = target.ackText ?? (first.value.kind === 'notice' ? first.value.text : undefined);
    if (ackText === undefined) return target.editBased(target.threadTs, rest([first.value]));
    const ack = await client.chat.postMessage({ channel, text: ackText, ...(target.threadTs ? { thread_ts: target.threadTs } : {}), unfurl_links: false, unfurl_media: false });
    if (!ack.ts) throw new MorrisError('BACKEND_ERROR', 'Slack accepted the acknowledgement but gave no message ts to stream under.', { hint: 'Check the Slack API URL (SLACK_API_URL) points at Slack or a faithful proxy.' });
    const ackTs = ack.ts;
    const ackAt = this.now();
    const thread = target.threadTs ?? ackTs;
    target.onThread?.(thread);

    // Statuses go out one after another (a later one must not be overtaken) without holding text.
    let statuses = Promise.resolve();
    let statusShown = false;
    const status = (text: string) => {
      const queued = /^Queued: position (\d+)/.exec(text);
      statusShown = true;
      statuses = statuses.then(() => this.setStatus(client, channel, thread, queued ? `is queued (position ${queued[1]})…` : 'is writing…', text));
    };

    let streamer: ChatStreamer | null = null;
    const started = () => Boolean(streamer?.ts);
    let sent = '';
    let latest: string | null = null;
    let lastAppendAt = 0;
    let broken: unknown = null;
    let inFlight: Promise<void> | null = null;
    let timer: NodeJS.Timeout | null = null;
    const open = () =>
      (streamer ??= client.chatStream({
        channel,
        thread_ts: thread,
        recipient_user_id: target.recipient.userId,
        ...(target.recipient.teamId ? { recipient_team_id: target.recipient.teamId } : {}),
        // We coalesce by time ourselves; every append we make goes out at once.
        buffer_size: 1,
      }));
    const append = async () => {
      const text = streamableText(latest ?? '', false);
      if (text.length <= sent.length || !text.startsWith(sent)) return;
      // A status still on its way would land after the reply started and show again under it.
      if (!streamer) await statuses;
      for (const piece of streamPieces(text.slice(sent.length))) {
        await open().append({ markdown_text: piece });
        sent += piece;
      }
    };
    const pump = () => {
      if (inFlight || timer || broken) return;
      const wait = Math.max(0, lastAppendAt + this.opts.appendIntervalMs - this.now());
      if (wait > 0) {
        timer = setTimeout(() => {
          timer = null;
          pump();
        }, wait);
        return;
      }
      lastAppendAt = this.now();
      inFlight = append()
        .catch((e: unknown) => {
          broken = e;
        })
        .finally(() => {
          inFlight = null;
        });
    };

    let terminal: Terminal | undefined;
    let next: IteratorResult<ReplyUpdate> = first;
    try {
      for (; !next.done; next = await it.next()) {
        const u = next.value;
        if (u.kind === 'notice') {
          // Before the first words only (Slack clears a status once the reply posts); a notice
          // that became the acknowledgement is shown already.
          if (latest === null && !(u === first.value && target.ackText === undefined)) status(u.text);
        } else if (u.kind === 'partial') {
          latest = u.text;
          pump();
        } else {
          terminal = u;
          break;
        }
        if (broken) break;
      }
    } finally {
      if (timer) clearTimeout(timer);
      timer = null;
    }
    if (inFlight) await inFlight;
    await statuses;
    // What the edit-based path still has to show: the text so far, then the end. A failure
    // (blocked output among them) replaces the text, so the text is not shown again first.
    const backlog: ReplyUpdate[] =
      terminal?.kind === 'failed' ? [terminal] : [...(latest !== null ? [{ kind: 'partial' as const, text: latest }] : []), ...(terminal ? [terminal] : [])];

    // The edit-based path on the acknowledgement (no stream was started), as if never streamed.
    const onAck = () => {
      if (statusShown) void this.setStatus(client, channel, thread, '');
      return target.editBased(target.threadTs, rest(backlog), { handle: ackTs, text: ackText, at: ackAt });
    };
    // The edit-based path on the streamed message: chat.update with all the text so far.
    const onStreamed = () => target.editBased(thread, rest(backlog), { handle: streamer!.ts!, text: sent, at: this.now() });
    const stopQuietly = async () => {
      if (started()) await streamer!.stop().catch((e: unknown) => logger.debug({ err: e }, 'stopping a broken chat stream failed'));
    };
    const giveUp = async (e: unknown, what: string) => {
      const code = slackErrorCode(e);
      if (!started() && code && SLACK_STREAMING_UNAVAILABLE.has(code)) {
        if (this.available !== false) logger.warn({ code }, 'Slack chat streaming is unavailable here; articles stream by editing instead');
        this.available = false;
      } else logger.warn({ code, err: code ? undefined : e, channel, ts: streamer?.ts }, `chat stream ${what} failed; finishing with chat.update`);
      if (!started()) return onAck();
      // A stream that still counts as live (a failure other than expiry) might refuse edits.
      await stopQuietly();
      return onStreamed();
    };

    if (broken) return giveUp(broken, 'append');
    if (!terminal) {
      // The generation ended without a last word (it never does): leave what is shown.
      await stopQuietly();
      return;
    }
    if (terminal.kind === 'failed') {
      // A failure (or blocked output) replaces whatever was shown, like the edit-based path does.
      await stopQuietly();
      return started() ? onStreamed() : onAck();
    }
    const full = streamableText(terminal.text, true);
    if (!full.startsWith(sent)) {
      // The finished text is not a continuation of what streamed: write it whole.
      await stopQuietly();
      return started() ? onStreamed() : onAck();
    }
    try {
      const pieces = streamPieces(full.slice(sent.length));
      for (const piece of pieces.slice(0, -1)) {
        await open().append({ markdown_text: piece });
        sent += piece;
      }
      await open().stop({ markdown_text: pieces.at(-1) ?? '', blocks: slackFeedbackBlocks(terminal, this.opts.columnist) });
      this.available = true;
    } catch (e) {
      return giveUp(e, 'stop');
    }
    return undefined;
  }
}
