/**
 * A local stand-in for Discord, enough for the real discord.js client: REST (/api/v10) for the
 * routes the bot uses, and a JSON gateway websocket (HELLO → IDENTIFY → READY + GUILD_CREATE,
 * heartbeats acked) that can dispatch MESSAGE_CREATE, INTERACTION_CREATE (slash commands, button
 * clicks, modal submits) and MESSAGE_REACTION_ADD. Every message the bot writes is recorded with
 * its allowed_mentions, components, embeds and edit history; interaction callbacks with their data
 * (a modal's form, an ephemeral answer).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';

export const BOT_ID = '400000000000000001';
export const APP_ID = '400000000000000002';
export const GUILD_ID = '500000000000000001';
export const CHANNEL_ID = '500000000000000002';
export const DM_CHANNEL_ID = '500000000000000003';
/** A guild role the tests configure as a Morris admin role. */
export const ADMIN_ROLE_ID = '900000000000000009';

export interface DiscordMessage {
  id: string;
  channel_id: string;
  content: string;
  /** The message this one replies to (message_reference), if any. */
  reply_to?: string;
  /** allowed_mentions of the create and of every edit. */
  allowed_mentions: unknown[];
  /** 'channel' (channel message), 'original' (interaction reply), 'followup'. */
  kind: 'channel' | 'original' | 'followup';
  /** Message flags a follow-up was created with (64 = ephemeral). */
  flags?: number;
  interaction_token?: string;
  history: { content: string; at: number }[];
  /** Message components (button rows) and embeds as last set. */
  components?: unknown[];
  embeds?: unknown[];
}

export interface InteractionCallback {
  id: string;
  token: string;
  type: number;
  flags?: number;
  at: number;
  /** The callback's data: a reply's content, or a modal (custom_id, title, components). */
  data?: Record<string, unknown>;
}

export interface RestCall {
  method: string;
  path: string;
  body: unknown;
  at: number;
}

export interface FakeUser {
  id: string;
  username: string;
  bot?: boolean;
}

/** The components and embeds a create request set, if any. */
function created(body: Record<string, unknown>): Pick<DiscordMessage, 'components' | 'embeds'> {
  return {
    ...(Array.isArray(body.components) ? { components: body.components } : {}),
    ...(Array.isArray(body.embeds) ? { embeds: body.embeds } : {}),
  };
}

function userJson(u: FakeUser) {
  return { id: u.id, username: u.username, discriminator: '0', global_name: null, avatar: null, ...(u.bot ? { bot: true } : {}) };
}

function memberJson(u: FakeUser, roles: string[] = []) {
  return { user: userJson(u), roles, permissions: '0', joined_at: new Date().toISOString(), deaf: false, mute: false, flags: 0 };
}

export class FakeDiscord {
  readonly calls: RestCall[] = [];
  readonly messages: DiscordMessage[] = [];
  readonly interactionCallbacks: InteractionCallback[] = [];
  readonly typing: { channel: string; at: number }[] = [];
  registeredCommands: unknown[] = [];
  /** When set, REST calls with another bot token get 401 (as Discord answers a bad token). */
  acceptedToken: string | null = null;
  private readonly server = http.createServer((req, res) => void this.handle(req, res));
  private readonly wss = new WebSocketServer({ noServer: true });
  private socket: WebSocket | null = null;
  private seq = 0;
  private nextId = 600000000000000000n;
  port = 0;

  async start(): Promise<void> {
    this.server.on('upgrade', (req, sock, head) => this.wss.handleUpgrade(req, sock, head, (ws) => this.onSocket(ws)));
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
  }

  get apiUrl(): string {
    return `http://127.0.0.1:${this.port}/api`;
  }

  async stop(): Promise<void> {
    for (const c of this.wss.clients) c.terminate();
    this.wss.close();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  snowflake(): string {
    this.nextId += 1n;
    return String(this.nextId);
  }

  // ---------------------------------------------------------------- REST

  private messageJson(m: DiscordMessage, guild = true) {
    return {
      id: m.id,
      channel_id: m.channel_id,
      ...(guild && m.channel_id === CHANNEL_ID ? { guild_id: GUILD_ID } : {}),
      author: { id: BOT_ID, username: 'Morris', discriminator: '0', global_name: null, avatar: null, bot: true },
      content: m.content,
      timestamp: new Date().toISOString(),
      edited_timestamp: m.history.length > 1 ? new Date().toISOString() : null,
      tts: false,
      mention_everyone: false,
      mentions: [],
      mention_roles: [],
      attachments: [],
      embeds: m.embeds ?? [],
      components: m.components ?? [],
      pinned: false,
      type: m.reply_to ? 19 : 0,
      flags: 0,
      ...(m.reply_to ? { message_reference: { message_id: m.reply_to, channel_id: m.channel_id } } : {}),
      ...(m.kind !== 'channel' ? { webhook_id: APP_ID, application_id: APP_ID } : {}),
    };
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const body = raw && req.headers['content-type']?.includes('json') ? (JSON.parse(raw) as Record<string, unknown>) : {};
    const url = new URL(req.url ?? '/', 'http://x');
    const path = decodeURIComponent(url.pathname.replace(/^\/api\/v\d+/, ''));
    const method = req.method ?? 'GET';
    this.calls.push({ method, path, body, at: Date.now() });
    if (this.acceptedToken && req.headers.authorization && req.headers.authorization !== `Bot ${this.acceptedToken}`) {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ message: '401: Unauthorized', code: 0 }));
      return;
    }
    const json = (status: number, payload: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(payload));
    };
    const noContent = () => {
      // A 204 must not claim a JSON body, or the client tries to parse one.
      res.writeHead(204);
      res.end();
    };
    const now = Date.now();
    let m: RegExpExecArray | null;

    if (method === 'GET' && path === '/gateway/bot') {
      return json(200, {
        url: `ws://127.0.0.1:${this.port}`,
        shards: 1,
        session_start_limit: { total: 1000, remaining: 999, reset_after: 0, max_concurrency: 1 },
      });
    }
    if (method === 'POST' && (m = /^\/channels\/(\d+)\/typing$/.exec(path))) {
      this.typing.push({ channel: m[1]!, at: now });
      return noContent();
    }
    if (method === 'POST' && (m = /^\/channels\/(\d+)\/messages$/.exec(path))) {
      const ref = (body.message_reference as { message_id?: string } | undefined)?.message_id;
      const msg: DiscordMessage = {
        id: this.snowflake(),
        channel_id: m[1]!,
        content: String(body.content ?? ''),
        ...(ref ? { reply_to: ref } : {}),
        allowed_mentions: [body.allowed_mentions],
        kind: 'channel',
        history: [{ content: String(body.content ?? ''), at: now }],
        ...created(body),
      };
      this.messages.push(msg);
      return json(200, this.messageJson(msg));
    }
    if (method === 'PATCH' && (m = /^\/channels\/(\d+)\/messages\/(\d+)$/.exec(path))) {
      const msg = this.messages.find((x) => x.id === m![2]);
      if (!msg) return json(404, { code: 10008, message: 'Unknown Message' });
      this.edit(msg, body, now);
      return json(200, this.messageJson(msg));
    }
    if (method === 'POST' && (m = /^\/interactions\/(\d+)\/([^/]+)\/callback$/.exec(path))) {
      const data = body.data as { flags?: number } | undefined;
      this.interactionCallbacks.push({ id: m[1]!, token: m[2]!, type: Number(body.type), flags: data?.flags, at: now, data: body.data as Record<string, unknown> | undefined });
      return noContent();
    }
    if ((m = /^\/webhooks\/(\d+)\/([^/]+)\/messages\/(@original|\d+)$/.exec(path))) {
      const [, , token, which] = m;
      let msg = this.messages.find((x) => x.interaction_token === token && (which === '@original' ? x.kind === 'original' : x.id === which));
      if (!msg && which === '@original' && method === 'PATCH') {
        msg = { id: this.snowflake(), channel_id: CHANNEL_ID, content: '', allowed_mentions: [], kind: 'original', interaction_token: token, history: [] };
        this.messages.push(msg);
      }
      if (!msg) return json(404, { code: 10008, message: 'Unknown Message' });
      if (method === 'PATCH') this.edit(msg, body, now);
      return json(200, this.messageJson(msg));
    }
    if (method === 'POST' && (m = /^\/webhooks\/(\d+)\/([^/]+)$/.exec(path))) {
      const msg: DiscordMessage = {
        id: this.snowflake(),
        channel_id: CHANNEL_ID,
        content: String(body.content ?? ''),
        allowed_mentions: [body.allowed_mentions],
        kind: 'followup',
        flags: typeof body.flags === 'number' ? body.flags : undefined,
        interaction_token: m[2]!,
        history: [{ content: String(body.content ?? ''), at: now }],
        ...created(body),
      };
      this.messages.push(msg);
      return json(200, this.messageJson(msg));
    }
    if (method === 'PUT' && (m = /^\/applications\/(\d+)(?:\/guilds\/(\d+))?\/commands$/.exec(path))) {
      const list = (Array.isArray(body) ? body : JSON.parse(raw)) as Record<string, unknown>[];
      this.registeredCommands = list;
      return json(200, list.map((c) => ({ ...c, id: this.snowflake(), application_id: m![1], version: '1' })));
    }
    return json(404, { code: 0, message: `fake: no route for ${method} ${path}` });
  }

  private edit(msg: DiscordMessage, body: Record<string, unknown>, at: number): void {
    if (typeof body.content === 'string') msg.content = body.content;
    if (Array.isArray(body.components)) msg.components = body.components;
    if (Array.isArray(body.embeds)) msg.embeds = body.embeds;
    msg.allowed_mentions.push(body.allowed_mentions);
    msg.history.push({ content: msg.content, at });
  }

  // ---------------------------------------------------------------- gateway

  private send(payload: unknown): void {
    this.socket?.send(JSON.stringify(payload));
  }

  dispatch(t: string, d: unknown): void {
    this.seq += 1;
    this.send({ op: 0, t, s: this.seq, d });
  }

  get connected(): boolean {
    return this.socket?.readyState === 1;
  }

  private onSocket(ws: WebSocket): void {
    this.socket = ws;
    ws.send(JSON.stringify({ op: 10, d: { heartbeat_interval: 41250 } }));
    ws.on('message', (data) => {
      const msg = JSON.parse(String(data)) as { op: number; d: unknown };
      if (msg.op === 1) ws.send(JSON.stringify({ op: 11 }));
      if (msg.op === 2) this.ready();
    });
  }

  private ready(): void {
    this.dispatch('READY', {
      v: 10,
      user: { id: BOT_ID, username: 'Morris', discriminator: '0', global_name: null, avatar: null, bot: true },
      guilds: [{ id: GUILD_ID, unavailable: true }],
      session_id: 'fake-session',
      resume_gateway_url: `ws://127.0.0.1:${this.port}`,
      application: { id: APP_ID, flags: 0 },
    });
    this.dispatch('GUILD_CREATE', {
      id: GUILD_ID,
      name: 'Fake Guild',
      icon: null,
      owner_id: '1',
      unavailable: false,
      member_count: 2,
      large: false,
      joined_at: new Date().toISOString(),
      roles: [GUILD_ID, ADMIN_ROLE_ID].map((id, i) => ({
        id,
        name: i === 0 ? '@everyone' : 'Morris admins',
        permissions: '0',
        position: i,
        color: 0,
        hoist: false,
        managed: false,
        mentionable: false,
        flags: 0,
      })),
      channels: [{ id: CHANNEL_ID, type: 0, name: 'general', guild_id: GUILD_ID, position: 0, permission_overwrites: [] }],
      members: [],
      emojis: [],
      stickers: [],
      features: [],
      threads: [],
      presences: [],
      voice_states: [],
      stage_instances: [],
      guild_scheduled_events: [],
      premium_tier: 0,
      preferred_locale: 'en-US',
    });
  }

  /** A user posts a message; `mentionBot` puts the bot in `mentions` (what discord.js reads). */
  userMessage(opts: { author: FakeUser; content: string; mentionBot?: boolean; dm?: boolean; roles?: string[]; replyTo?: string }): string {
    const id = this.snowflake();
    const author = userJson(opts.author);
    this.dispatch('MESSAGE_CREATE', {
      id,
      channel_id: opts.dm ? DM_CHANNEL_ID : CHANNEL_ID,
      // Discord sends the channel type with each message; discord.js needs it to build a DM channel.
      channel_type: opts.dm ? 1 : 0,
      ...(opts.dm ? {} : { guild_id: GUILD_ID, member: { roles: opts.roles ?? [], joined_at: new Date().toISOString(), deaf: false, mute: false, flags: 0 } }),
      author,
      content: opts.content,
      timestamp: new Date().toISOString(),
      edited_timestamp: null,
      tts: false,
      mention_everyone: false,
      mentions: opts.mentionBot ? [{ id: BOT_ID, username: 'Morris', discriminator: '0', global_name: null, avatar: null, bot: true }] : [],
      mention_roles: [],
      attachments: [],
      embeds: [],
      pinned: false,
      // A reply is type 19 and names the message it answers (what discord.js reads as `reference`).
      type: opts.replyTo ? 19 : 0,
      ...(opts.replyTo ? { message_reference: { message_id: opts.replyTo, channel_id: opts.dm ? DM_CHANNEL_ID : CHANNEL_ID, ...(opts.dm ? {} : { guild_id: GUILD_ID }) } } : {}),
      flags: 0,
    });
    return id;
  }

  /** A user runs a slash command; returns the interaction token (to find its messages). */
  slashCommand(opts: { name: string; options: { name: string; type: number; value: string | number }[]; user: FakeUser; roles?: string[] }): string {
    const { token, body } = this.interactionBase(opts.user, opts.roles);
    this.dispatch('INTERACTION_CREATE', { ...body, type: 2, data: { id: this.snowflake(), name: opts.name, type: 1, options: opts.options } });
    return token;
  }

  /** Discord asks for autocomplete while a user types a slash command option marked `focused`. */
  autocomplete(opts: { name: string; options: { name: string; type: number; value: string; focused?: boolean }[]; user: FakeUser }): string {
    const { token, body } = this.interactionBase(opts.user);
    this.dispatch('INTERACTION_CREATE', { ...body, type: 4, data: { id: this.snowflake(), name: opts.name, type: 1, options: opts.options } });
    return token;
  }

  /** The fields every interaction from a guild channel carries. */
  private interactionBase(user: FakeUser, roles?: string[]) {
    const id = this.snowflake();
    return {
      id,
      token: `tok-${id}`,
      body: {
        id,
        application_id: APP_ID,
        token: `tok-${id}`,
        version: 1,
        guild_id: GUILD_ID,
        channel_id: CHANNEL_ID,
        channel: { id: CHANNEL_ID, type: 0, guild_id: GUILD_ID, name: 'general' },
        member: memberJson(user, roles),
        app_permissions: '0',
        locale: 'en-GB',
        guild_locale: 'en-GB',
        entitlements: [],
        authorizing_integration_owners: {},
        context: 0,
      },
    };
  }

  /** A user clicks a button on one of the bot's messages; returns the interaction token. */
  clickButton(opts: { messageId: string; customId: string; user: FakeUser; roles?: string[] }): string {
    const msg = this.messages.find((m) => m.id === opts.messageId);
    if (!msg) throw new Error(`fake: no message ${opts.messageId} to click on`);
    const { token, body } = this.interactionBase(opts.user, opts.roles);
    this.dispatch('INTERACTION_CREATE', { ...body, type: 3, message: this.messageJson(msg), data: { custom_id: opts.customId, component_type: 2 } });
    return token;
  }

  /** A user submits a modal: `values` are its text inputs by custom id, in order. */
  submitModal(opts: { customId: string; values: Record<string, string>; user: FakeUser }): string {
    const { token, body } = this.interactionBase(opts.user);
    const components = Object.entries(opts.values).map(([custom_id, value]) => ({ type: 1, components: [{ type: 4, custom_id, value }] }));
    this.dispatch('INTERACTION_CREATE', { ...body, type: 5, data: { custom_id: opts.customId, components } });
    return token;
  }

  /** A user adds a reaction (a unicode emoji) to a message, in the guild channel or a DM. */
  react(opts: { messageId: string; emoji: string; user: FakeUser }): void {
    const msg = this.messages.find((m) => m.id === opts.messageId);
    const dm = msg?.channel_id === DM_CHANNEL_ID;
    this.dispatch('MESSAGE_REACTION_ADD', {
      user_id: opts.user.id,
      channel_id: msg?.channel_id ?? CHANNEL_ID,
      message_id: opts.messageId,
      // A DM reaction carries no guild and no member, only the user id.
      ...(dm ? {} : { guild_id: GUILD_ID, member: memberJson(opts.user) }),
      emoji: { id: null, name: opts.emoji },
      message_author_id: BOT_ID,
      burst: false,
      type: 0,
    });
  }
}
