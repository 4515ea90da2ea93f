/**
 * Renders one stream of `ReplyUpdate`s onto a platform's messages: the first update posts (or
 * fills) message 0, later ones edit it at most once per `editIntervalMs`, text that outgrows the
 * platform limit continues in further messages, and the terminal update is always written in
 * full. Platform adapters supply only `post` and `edit` (the llmcord loop, minus the platform).
 */
import { MorrisError } from '../errors.ts';
import { childLog } from '../log.ts';
import { editDelay, splitMessage, STREAMING_CURSOR } from './render.ts';
import type { ReplyUpdate } from './types.ts';

const logger = childLog('bot-stream');

export interface MessageSurface<H> {
  /** Posts message number `index` (0 = the reply itself) and returns a handle to edit it. */
  post(text: string, index: number): Promise<H>;
  edit(handle: H, text: string, index: number): Promise<void>;
  /**
   * Writes the last message of a finished article, posting it (`handle` undefined) or editing it,
   * with what ends an article on this platform (feedback buttons, the lineage footer). Without
   * it the last message is posted or edited like any other.
   */
  finish?(handle: H | undefined, text: string, index: number, final: FinalUpdate): Promise<H>;
}

export type FinalUpdate = Extract<ReplyUpdate, { kind: 'final' }>;

export interface StreamReplyOptions {
  maxLength: number;
  editIntervalMs: number;
  /** Raw article markdown → platform text (mentions neutralised, escaped). */
  format(markdown: string): string;
  now?: () => number;
  /** Called when the first content (notice or text) is about to be shown, e.g. to stop typing. */
  onUpdate?(update: ReplyUpdate): void;
}

export interface StreamReplyResult<H> {
  handles: H[];
  /** Texts as last written, message by message. */
  shown: string[];
  /** Number of edits made (not counting posts). */
  edits: number;
  final: ReplyUpdate | undefined;
}

/**
 * A message already on screen that the stream takes over as its message 0 (e.g. Slack's
 * acknowledgement, or a chat stream Slack stopped accepting): edited, never posted again, and
 * only after `editIntervalMs` from `at`, its last write.
 */
export interface AdoptedMessage<H> {
  handle: H;
  text: string;
  at: number;
}

/** Text in the messages a placeholder-only reply leaves behind when the final text is shorter. */
export const CONTINUATION_REMOVED = '…';

export async function streamReply<H>(
  updates: AsyncIterable<ReplyUpdate>,
  surface: MessageSurface<H>,
  opts: StreamReplyOptions,
  adopt?: AdoptedMessage<H>,
): Promise<StreamReplyResult<H>> {
  const now = opts.now ?? Date.now;
  const handles: H[] = adopt ? [adopt.handle] : [];
  const shown: string[] = adopt ? [adopt.text] : [];
  let edits = 0;
  let lastWriteAt: number | null = adopt ? adopt.at : null;
  let pending: string[] | null = null;
  let inFlight: Promise<void> | null = null;
  let timer: NodeJS.Timeout | null = null;
  let final: ReplyUpdate | undefined;
  let textStarted = false;
  let fatal: unknown = null;

  const reconcile = async (parts: string[], finish?: (handle: H | undefined, text: string, index: number) => Promise<H>) => {
    for (let i = 0; i < parts.length; i++) {
      if (finish && i === parts.length - 1) {
        // Always written, even when its text is unchanged: the decorations are new.
        const handle = await finish(handles[i], parts[i]!, i);
        if (i < handles.length) edits++;
        handles[i] = handle;
        shown[i] = parts[i]!;
      } else if (i < handles.length) {
        if (shown[i] !== parts[i]) {
          await surface.edit(handles[i]!, parts[i]!, i);
          shown[i] = parts[i]!;
          edits++;
        }
      } else {
        handles.push(await surface.post(parts[i]!, i));
        shown.push(parts[i]!);
      }
    }
    // A final text shorter than the live preview: empty the leftover continuation messages.
    for (let i = parts.length; i < handles.length; i++) {
      if (shown[i] !== CONTINUATION_REMOVED) {
        await surface.edit(handles[i]!, CONTINUATION_REMOVED, i);
        shown[i] = CONTINUATION_REMOVED;
        edits++;
      }
    }
    lastWriteAt = now();
  };

  const flush = () => {
    timer = null;
    const parts = pending;
    pending = null;
    if (!parts) return;
    inFlight = reconcile(parts)
      .catch((e: unknown) => {
        // Without a first message there is nothing to edit later: stop the reply.
        if (handles.length === 0) fatal ??= e;
        else logger.warn({ err: e }, 'streaming edit failed; the final text will still be written');
      })
      .finally(() => {
        inFlight = null;
        if (pending) schedule();
      });
  };

  const schedule = () => {
    if (inFlight || timer || fatal) return;
    const wait = editDelay(lastWriteAt, now(), opts.editIntervalMs);
    if (wait === 0) flush();
    else timer = setTimeout(flush, wait);
  };

  const show = (parts: string[]) => {
    pending = parts;
    schedule();
  };

  try {
    for await (const update of updates) {
      if (fatal) break;
      opts.onUpdate?.(update);
      if (update.kind === 'notice') {
        // Notices only fill the placeholder; once article text is showing they would hide it.
        if (!textStarted) show([update.text]);
      } else if (update.kind === 'partial') {
        textStarted = true;
        show(splitMessage(opts.format(update.text) + STREAMING_CURSOR, opts.maxLength));
      } else {
        final = update;
        break;
      }
    }
  } finally {
    // However the stream ended (even by throwing), no throttled edit may fire after this.
    if (timer) clearTimeout(timer);
    timer = null;
    pending = null;
  }
  if (inFlight) await inFlight;
  if (fatal) throw fatal;
  if (final) {
    const text = final.kind === 'final' ? opts.format(final.text) : final.kind === 'failed' ? final.text : '';
    // Respect the edit interval for the last write too (it is usually an edit of message 0).
    const wait = handles.length ? editDelay(lastWriteAt, now(), opts.editIntervalMs) : 0;
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const finish = final.kind === 'final' && surface.finish ? surface.finish.bind(surface) : undefined;
    await reconcile(splitMessage(text, opts.maxLength), finish && ((h, t, i) => finish(h, t, i, final as FinalUpdate)));
  }
  return { handles, shown, edits, final };
}

/** The reply as a person sees it: the acknowledgement note first, then the core's updates. */
export async function* afterNotice(notice: string, updates: () => AsyncIterable<ReplyUpdate>): AsyncGenerator<ReplyUpdate> {
  yield { kind: 'notice', text: notice };
  yield* updates();
}

/**
 * Replies running in the background of a platform adapter. Each gets its own AbortSignal so that
 * stopping the bot cancels its generation; a reply that fails is logged (it has already told the
 * person what it could).
 */
export class ReplyTracker {
  private readonly running = new Set<Promise<void>>();
  private readonly aborts = new Set<AbortController>();

  constructor(private readonly platform: string) {}

  track(what: string, work: (signal: AbortSignal) => Promise<void>): void {
    const ac = new AbortController();
    this.aborts.add(ac);
    const p = work(ac.signal)
      .catch((e: unknown) => logger.error({ err: e, platform: this.platform }, `${this.platform} ${what} failed`))
      .finally(() => {
        this.running.delete(p);
        this.aborts.delete(ac);
      });
    this.running.add(p);
  }

  /** Cancels every reply in progress (their generations end as cancelled). */
  abortAll(): void {
    for (const ac of this.aborts) ac.abort(new MorrisError('CANCELLED', 'bot stopping'));
  }

  /** Resolves once every reply in progress has finished, however it ended. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.running]);
  }
}
