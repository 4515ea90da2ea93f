/**
 * A local stand-in for Slack, enough for the real @slack/bolt client: the Web API methods the bot
 * calls (auth.test, chat.postMessage, chat.update, views.open, apps.connections.open, the chat
 * streaming methods and assistant.threads.setStatus), response_url
 * endpoints, and a Socket Mode websocket that delivers envelopes and collects acks. Also signs
 * requests for HTTP mode the way Slack does, including the interactivity payloads a click sends
 * (block_actions) and a modal's submission (view_submission). Everything is recorded for the tests.
 */
import { createHmac, randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';

export const BOT_USER_ID = 'UMORRISBOT';

export interface SlackMessage {
  channel: string;
  ts: string;
  text: string;
  thread_ts?: string;
  /** Every text this message has had, first post then each edit, with times. */
  history: { text: string; at: number }[];
  /** Block Kit blocks as last set (none while the article streams). */
  blocks?: Record<string, unknown>[];
  /** Started with chat.startStream; `streamingUntil` is when Slack stops accepting appends. */
  streamed?: boolean;
  streamingUntil?: number;
  /** Set by chat.stopStream. */
  streamStopped?: boolean;
}

export interface StatusCall {
  channel_id: string;
  thread_ts: string;
  status: string;
  loading_messages?: string[];
  at: number;
}

export interface ApiCall {
  method: string;
  body: Record<string, unknown>;
  at: number;
  /** The error answered, when the call failed. */
  error?: string;
}

async function readBody(req: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function parseBody(raw: string, contentType: string | undefined): Record<string, unknown> {
  if (!raw) return {};
  if (contentType?.includes('application/json')) return JSON.parse(raw) as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [k, v] of new URLSearchParams(raw)) {
    // The Web API client form-encodes nested values as JSON strings (text may look like JSON too).
    try {
      out[k] = /^[[{]/.test(v) ? (JSON.parse(v) as unknown) : v;
    } catch {
      out[k] = v;
    }
  }
  return out;
}

export class FakeSlack {
  readonly calls: ApiCall[] = [];
  readonly messages: SlackMessage[] = [];
  readonly responses: { id: string; body: Record<string, unknown> }[] = [];
  /** Modals opened with views.open. */
  readonly views: { trigger_id: string; view: Record<string, unknown> }[] = [];
  /** Channels where chat.postMessage fails with not_in_channel. */
  readonly closedChannels = new Set<string>();
  /** When set, auth.test with another token answers invalid_auth. */
  acceptedToken: string | null = null;
  /**
   * chat.startStream / appendStream / stopStream exist only when this is on; off (the default),
   * they answer unknown_method as in a workspace without chat streaming, so the bot edits.
   */
  chatStreaming = false;
  /** How long a stream accepts appends after it started (then: message_not_in_streaming_state). */
  streamTtlMs = 5 * 60_000;
  /** When set, chat.appendStream answers this error (a stream failing some other way). */
  appendError: string | null = null;
  /** assistant.threads.setStatus calls, in order; `assistantScope` off answers missing_scope. */
  readonly statuses: StatusCall[] = [];
  assistantScope = true;
  private readonly server = http.createServer((req, res) => void this.handle(req, res));
  private readonly wss = new WebSocketServer({ noServer: true });
  private socket: WebSocket | null = null;
  private readonly acks = new Map<string, (payload: unknown) => void>();
  private tsCounter = 1_700_000_000_000;
  private pinger: NodeJS.Timeout | null = null;
  port = 0;

  /** Listens on `port` (0: any free one), e.g. the port a bot was already told to use. */
  async start(port = 0): Promise<void> {
    this.server.on('upgrade', (req, sock, head) => {
      this.wss.handleUpgrade(req, sock, head, (ws) => this.onSocket(ws));
    });
    await new Promise<void>((r) => this.server.listen(port, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
  }

  get apiUrl(): string {
    return `http://127.0.0.1:${this.port}/api/`;
  }

  responseUrl(id: string): string {
    return `http://127.0.0.1:${this.port}/response/${id}`;
  }

  async stop(): Promise<void> {
    if (this.pinger) clearInterval(this.pinger);
    for (const c of this.wss.clients) c.terminate();
    this.wss.close();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  callsTo(method: string): ApiCall[] {
    return this.calls.filter((c) => c.method === method);
  }

  private nextTs(): string {
    this.tsCounter += 1;
    return `${Math.floor(this.tsCounter / 1000)}.${String(this.tsCounter % 1_000_000).padStart(6, '0')}`;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const raw = await readBody(req);
    const url = new URL(req.url ?? '/', 'http://x');
    let call: ApiCall | undefined;
    const send = (body: unknown) => {
      if (call && (body as { ok?: boolean }).ok === false) call.error = (body as { error?: string }).error;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (url.pathname.startsWith('/response/')) {
      this.responses.push({ id: url.pathname.slice('/response/'.length), body: parseBody(raw, req.headers['content-type']) });
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok');
      return;
    }
    const method = url.pathname.replace(/^\/api\//, '');
    const body = parseBody(raw, req.headers['content-type']);
    call = { method, body, at: Date.now() };
    this.calls.push(call);
    switch (method) {
      case 'auth.test':
        if (this.acceptedToken && req.headers.authorization !== `Bearer ${this.acceptedToken}`) return send({ ok: false, error: 'invalid_auth' });
        return send({ ok: true, url: 'https://fake.slack/', team: 'Fake', user: 'morris', team_id: 'T1', user_id: BOT_USER_ID, bot_id: 'BMORRIS' });
      case 'apps.connections.open':
        return send({ ok: true, url: `ws://127.0.0.1:${this.port}/socket` });
      case 'chat.postMessage': {
        const channel = String(body.channel);
        if (this.closedChannels.has(channel)) return send({ ok: false, error: 'not_in_channel' });
        const ts = this.nextTs();
        const text = String(body.text ?? '');
        this.messages.push({
          channel,
          ts,
          text,
          ...(body.thread_ts ? { thread_ts: String(body.thread_ts) } : {}),
          history: [{ text, at: Date.now() }],
          ...(Array.isArray(body.blocks) ? { blocks: body.blocks as Record<string, unknown>[] } : {}),
        });
        return send({ ok: true, channel, ts, message: { text, ts, user: BOT_USER_ID } });
      }
      case 'chat.update': {
        const m = this.messages.find((x) => x.ts === body.ts && x.channel === body.channel);
        if (!m) return send({ ok: false, error: 'message_not_found' });
        m.text = String(body.text ?? '');
        m.blocks = Array.isArray(body.blocks) ? (body.blocks as Record<string, unknown>[]) : undefined;
        m.history.push({ text: m.text, at: Date.now() });
        return send({ ok: true, channel: m.channel, ts: m.ts, text: m.text });
      }
      case 'chat.startStream':
      case 'chat.appendStream':
      case 'chat.stopStream':
        return send(this.stream(method, body));
      case 'assistant.threads.setStatus':
        if (!this.assistantScope) return send({ ok: false, error: 'missing_scope', needed: 'assistant:write' });
        if (!body.channel_id || !body.thread_ts) return send({ ok: false, error: 'invalid_arguments' });
        this.statuses.push({
          channel_id: String(body.channel_id),
          thread_ts: String(body.thread_ts),
          status: String(body.status ?? ''),
          ...(Array.isArray(body.loading_messages) ? { loading_messages: body.loading_messages as string[] } : {}),
          at: Date.now(),
        });
        return send({ ok: true });
      case 'views.open': {
        if (!body.trigger_id) return send({ ok: false, error: 'invalid_trigger_id' });
        const view = body.view as Record<string, unknown>;
        this.views.push({ trigger_id: String(body.trigger_id), view });
        return send({ ok: true, view: { id: `V${this.views.length}`, ...view } });
      }
      default:
        return send({ ok: false, error: 'unknown_method' });
    }
  }

  /** The chat streaming methods: a message whose text grows by markdown chunks until stopped. */
  private stream(method: string, body: Record<string, unknown>): Record<string, unknown> {
    if (!this.chatStreaming) return { ok: false, error: 'unknown_method' };
    const channel = String(body.channel ?? '');
    const chunks = Array.isArray(body.chunks) ? (body.chunks as { type: string; text?: string }[]) : [];
    const piece = String(body.markdown_text ?? '') + chunks.filter((c) => c.type === 'markdown_text').map((c) => c.text ?? '').join('');
    const now = Date.now();
    if (method === 'chat.startStream') {
      if (this.closedChannels.has(channel)) return { ok: false, error: 'not_in_channel' };
      if (!body.thread_ts) return { ok: false, error: 'invalid_arguments' };
      const ts = this.nextTs();
      this.messages.push({ channel, ts, text: piece, thread_ts: String(body.thread_ts), history: [{ text: piece, at: now }], streamed: true, streamingUntil: now + this.streamTtlMs });
      return { ok: true, channel, ts };
    }
    if (method === 'chat.appendStream' && this.appendError) return { ok: false, error: this.appendError };
    const m = this.messages.find((x) => x.ts === body.ts && x.channel === channel);
    if (!m) return { ok: false, error: 'message_not_found' };
    if (!m.streamed || m.streamStopped || now > (m.streamingUntil ?? 0)) return { ok: false, error: 'message_not_in_streaming_state' };
    m.text += piece;
    m.history.push({ text: m.text, at: now });
    if (method === 'chat.stopStream') {
      m.streamStopped = true;
      if (Array.isArray(body.blocks)) m.blocks = body.blocks as Record<string, unknown>[];
    }
    return { ok: true, channel, ts: m.ts };
  }

  // ---------------------------------------------------------------- Socket Mode

  private onSocket(ws: WebSocket): void {
    this.socket = ws;
    ws.send(JSON.stringify({ type: 'hello', num_connections: 1, debug_info: { host: 'fake' }, connection_info: { app_id: 'A1' } }));
    ws.on('message', (data) => {
      const msg = JSON.parse(String(data)) as { envelope_id?: string; payload?: unknown };
      if (msg.envelope_id) this.acks.get(msg.envelope_id)?.(msg.payload ?? null);
    });
    // Socket Mode clients expect server pings (they reconnect after 30 s without one).
    this.pinger ??= setInterval(() => this.socket?.ping(), 5000);
  }

  get socketConnected(): boolean {
    return this.socket?.readyState === 1;
  }

  /** Sends one envelope over Socket Mode; resolves with the ack's payload (null if none). */
  envelope(type: 'slash_commands' | 'events_api' | 'interactive', payload: Record<string, unknown>): Promise<unknown> {
    if (!this.socket) throw new Error('no Socket Mode client connected');
    const id = randomUUID();
    const acked = new Promise<unknown>((r) => this.acks.set(id, r));
    this.socket.send(JSON.stringify({ envelope_id: id, type, payload, accepts_response_payload: type !== 'events_api' }));
    return acked;
  }
}

export function slashCommand(fake: FakeSlack, fields: { command: string; text: string; user_id: string; channel_id?: string }) {
  const id = randomUUID();
  return {
    token: 'legacy',
    team_id: 'T1',
    team_domain: 'fake',
    channel_id: fields.channel_id ?? 'C1',
    channel_name: 'general',
    user_id: fields.user_id,
    user_name: fields.user_id.toLowerCase(),
    command: fields.command,
    text: fields.text,
    api_app_id: 'A1',
    is_enterprise_install: 'false',
    response_url: fake.responseUrl(id),
    trigger_id: `trig-${id}`,
  };
}

/** The Events API envelope around one event, as Slack posts it to the app. */
function eventCallback(event: Record<string, unknown>) {
  return {
    token: 'legacy',
    team_id: 'T1',
    api_app_id: 'A1',
    type: 'event_callback',
    event_id: `Ev${randomUUID().slice(0, 8)}`,
    event_time: Math.floor(Date.now() / 1000),
    authorizations: [{ team_id: 'T1', user_id: BOT_USER_ID, is_bot: true }],
    event,
  };
}

export function appMention(fields: { user: string; text: string; channel?: string; ts?: string }) {
  const ts = fields.ts ?? `${Math.floor(Date.now() / 1000)}.000100`;
  return eventCallback({ type: 'app_mention', user: fields.user, text: fields.text, ts, channel: fields.channel ?? 'C1', event_ts: ts });
}

/** A plain message event (a reply in a thread when `thread_ts` is set), as Slack sends it. */
export function messageEvent(fields: { user: string; text: string; channel?: string; thread_ts?: string; ts?: string; bot_id?: string }) {
  const ts = fields.ts ?? `${Math.floor(Date.now() / 1000)}.${String(Math.floor(Math.random() * 1e6)).padStart(6, '0')}`;
  return eventCallback({
    type: 'message',
    channel_type: 'channel',
    user: fields.user,
    text: fields.text,
    ts,
    channel: fields.channel ?? 'C1',
    event_ts: ts,
    ...(fields.thread_ts ? { thread_ts: fields.thread_ts } : {}),
    ...(fields.bot_id ? { bot_id: fields.bot_id } : {}),
  });
}

/** Signs a body as Slack does: v0=HMAC-SHA256(secret, "v0:{timestamp}:{body}"). */
export function slackSignature(secret: string, timestamp: number, body: string): string {
  return `v0=${createHmac('sha256', secret).update(`v0:${timestamp}:${body}`).digest('hex')}`;
}

/** POSTs a signed request to the bot's HTTP endpoint; returns status and body. */
export async function postSigned(
  url: string,
  body: string,
  opts: { secret: string; contentType: string; timestamp?: number; signature?: string },
): Promise<{ status: number; text: string }> {
  const ts = opts.timestamp ?? Math.floor(Date.now() / 1000);
  const res = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': opts.contentType,
      'x-slack-request-timestamp': String(ts),
      'x-slack-signature': opts.signature ?? slackSignature(opts.secret, ts, body),
    },
    body,
  });
  return { status: res.status, text: await res.text() };
}

/**
 * What Slack POSTs to the interactivity URL when `user` clicks a button in `message`: a signed
 * form body with one `payload` field. `action` is the element as it appears in the message's
 * blocks; for feedback_buttons, `value` picks the positive or negative button.
 */
export function blockActions(fake: FakeSlack, fields: { user: string; message: SlackMessage; action: Record<string, unknown>; value?: string }) {
  const id = randomUUID();
  const { action } = fields;
  return {
    type: 'block_actions',
    team: { id: 'T1', domain: 'fake' },
    user: { id: fields.user, username: fields.user.toLowerCase(), name: fields.user.toLowerCase(), team_id: 'T1' },
    api_app_id: 'A1',
    token: 'legacy',
    container: { type: 'message', message_ts: fields.message.ts, channel_id: fields.message.channel, is_ephemeral: false },
    trigger_id: `trig-${id}`,
    channel: { id: fields.message.channel, name: 'general' },
    message: { type: 'message', ts: fields.message.ts, text: fields.message.text, blocks: fields.message.blocks ?? [], ...(fields.message.thread_ts ? { thread_ts: fields.message.thread_ts } : {}) },
    response_url: fake.responseUrl(id),
    actions: [
      {
        type: action.type,
        action_id: action.action_id,
        block_id: 'b1',
        action_ts: String(Date.now() / 1000),
        text: action.type === 'feedback_buttons' ? { type: 'plain_text', text: fields.value?.startsWith('up') ? '👍' : '👎' } : action.text,
        value: fields.value ?? action.value,
      },
    ],
  };
}

/** What Slack POSTs when `user` submits modal `view` (as opened) with `values` by block id. */
export function viewSubmission(fields: { user: string; view: Record<string, unknown>; values: Record<string, string> }) {
  const blocks = (fields.view.blocks ?? []) as { block_id: string; element: { action_id: string } }[];
  const values = Object.fromEntries(
    blocks.filter((b) => b.block_id in fields.values).map((b) => [b.block_id, { [b.element.action_id]: { type: 'plain_text_input', value: fields.values[b.block_id] } }]),
  );
  return {
    type: 'view_submission',
    team: { id: 'T1', domain: 'fake' },
    user: { id: fields.user, name: fields.user.toLowerCase(), team_id: 'T1' },
    api_app_id: 'A1',
    token: 'legacy',
    trigger_id: `trig-${randomUUID()}`,
    view: {
      id: 'V1',
      team_id: 'T1',
      app_id: 'A1',
      bot_id: 'BMORRIS',
      type: 'modal',
      callback_id: fields.view.callback_id,
      private_metadata: fields.view.private_metadata ?? '',
      title: fields.view.title,
      blocks: fields.view.blocks,
      close: null,
      submit: fields.view.submit ?? null,
      state: { values },
      hash: 'h1',
      root_view_id: 'V1',
      previous_view_id: null,
      clear_on_close: false,
      notify_on_close: false,
    },
    response_urls: [],
  };
}

/** POSTs an interactivity payload (block_actions, view_submission) signed, as Slack does. */
export function postInteraction(
  url: string,
  payload: Record<string, unknown>,
  opts: { secret: string; timestamp?: number; signature?: string },
): Promise<{ status: number; text: string }> {
  const body = new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
  return postSigned(url, body, { ...opts, contentType: 'application/x-www-form-urlencoded' });
}
