/**
 * Discord adapter (discord.js 14). A mention in a channel (or any DM) is answered as a reply to
 * that message with a typing indicator and throttled streaming edits; `/morris topic:` is checked
 * first (a refusal is answered at once, ephemeral), then deferred publicly and edited / followed
 * up; `/morris-admin command:` is deferred ephemeral at once. Every message goes
 * out with allowed_mentions {parse: []}, and other bots' messages are ignored. A finished
 * article's last message carries the feedback buttons and lineage footer; their clicks, the edit
 * form and 👍/👎 reactions are handled in discord-feedback.ts.
 */
import {
  type ButtonInteraction,
  type ChatInputCommandInteraction,
  Client,
  Events,
  GatewayIntentBits,
  type Message,
  MessageFlags,
  Partials,
  REST,
  Routes,
  SlashCommandBuilder,
} from 'discord.js';
import { MorrisError } from '../errors.ts';
import { childLog } from '../log.ts';
import type { BotCore, Prepared } from './core.ts';
import { articleComponents, lineageEmbeds, onFeedbackInteraction, onRatingReaction } from './discord-feedback.ts';
import { MAX_TEMPERATURE, MIN_TEMPERATURE } from './parse-request.ts';
import { columnistChoices } from './voices.ts';
import { DISCORD_EDIT_INTERVAL_MS, DISCORD_MAX_MESSAGE_LENGTH, DISCORD_TYPING_REFRESH_MS, splitMessage, toDiscordMarkdown } from './render.ts';
import { afterNotice, ReplyTracker, streamReply, type FinalUpdate, type MessageSurface, type StreamReplyResult } from './stream-reply.ts';
import type { ArticleLength, GenerationOptions, ReplyUpdate, Requester } from './types.ts';

const logger = childLog('discord');

/** No message Morris sends may ping anyone, including the person it replies to. */
export const NO_MENTIONS = Object.freeze({ parse: [] as [], repliedUser: false });

export const DISCORD_COMMANDS = [
  new SlashCommandBuilder()
    .setName('morris')
    .setDescription('Write an article in the columnist’s style')
    .addStringOption((o) => o.setName('topic').setDescription('What to write about').setRequired(true).setMaxLength(6000))
    .addStringOption((o) =>
      o
        .setName('length')
        .setDescription('How long')
        .addChoices({ name: 'short', value: 'short' }, { name: 'medium', value: 'medium' }, { name: 'long', value: 'long' }),
    )
    .addNumberOption((o) =>
      o.setName('temperature').setDescription('Higher is wilder').setMinValue(MIN_TEMPERATURE).setMaxValue(MAX_TEMPERATURE),
    )
    .addStringOption((o) => o.setName('columnist').setDescription('Whose voice (default: the usual columnist)').setAutocomplete(true)),
  new SlashCommandBuilder()
    .setName('morris-admin')
    .setDescription('Morris admin commands (status, retrain, adapters, promote <id>, …)')
    .addStringOption((o) => o.setName('command').setDescription('e.g. status, promote <id>, cancel <job>').setRequired(true)),
].map((c) => c.toJSON());

export interface DiscordBotOptions {
  core: BotCore;
  token: string;
  /** REST base such as http://127.0.0.1:9000/api (discord.js adds /v10); the gateway URL follows. */
  apiUrl?: string;
  editIntervalMs?: number;
  maxMessageLength?: number;
}

export interface DiscordBot {
  client: Client;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Registers /morris and /morris-admin globally, or in one guild (instant, for testing). */
export async function registerDiscordCommands(opts: {
  token: string;
  applicationId: string;
  apiUrl?: string;
  guildId?: string;
}): Promise<{ registered: string[] }> {
  const rest = new REST(opts.apiUrl ? { api: opts.apiUrl } : {}).setToken(opts.token);
  const route = opts.guildId
    ? Routes.applicationGuildCommands(opts.applicationId, opts.guildId)
    : Routes.applicationCommands(opts.applicationId);
  const result = (await rest.put(route, { body: DISCORD_COMMANDS })) as { name: string }[];
  return { registered: result.map((c) => c.name) };
}

function memberRoleIds(member: unknown): string[] {
  const roles = (member as { roles?: unknown } | null | undefined)?.roles;
  if (Array.isArray(roles)) return roles.map(String);
  const cache = (roles as { cache?: Map<string, unknown> } | undefined)?.cache;
  return cache ? [...cache.keys()] : [];
}

/** Who asked, as the core sees it (role ids count for admin checks). */
function discordRequester(userId: string, member: unknown, channelId: string): Requester {
  return { platform: 'discord', userId, roleIds: memberRoleIds(member), channelId };
}

export function createDiscordBot(opts: DiscordBotOptions): DiscordBot {
  const { core } = opts;
  const client = new Client({
    // Reactions are ratings; they arrive for messages discord.js has not cached (hence the partials).
    intents: [
      GatewayIntentBits.Guilds,
      GatewayIntentBits.GuildMessages,
      GatewayIntentBits.DirectMessages,
      GatewayIntentBits.GuildMessageReactions,
      GatewayIntentBits.DirectMessageReactions,
    ],
    partials: [Partials.Channel, Partials.Message, Partials.Reaction, Partials.User],
    allowedMentions: NO_MENTIONS,
    ...(opts.apiUrl ? { rest: { api: opts.apiUrl } } : {}),
  });
  const editIntervalMs = opts.editIntervalMs ?? DISCORD_EDIT_INTERVAL_MS;
  const maxLength = opts.maxMessageLength ?? DISCORD_MAX_MESSAGE_LENGTH;
  const replies = new ReplyTracker('discord');

  const render = <H>(updates: AsyncIterable<ReplyUpdate>, surface: MessageSurface<H>, onUpdate?: (u: ReplyUpdate) => void) =>
    streamReply(updates, surface, { maxLength, editIntervalMs, format: toDiscordMarkdown, onUpdate });

  /** What the last message of a finished article carries: feedback buttons and its lineage. */
  const articleExtras = (final: FinalUpdate) => ({
    components: articleComponents(final.generationId),
    embeds: lineageEmbeds(core.settings.columnist, final.lineage),
  });

  /** Every message of a finished article leads back to it, so a reaction on any part counts. */
  const linkArticle = (result: StreamReplyResult<unknown>, messageIds: readonly string[]) => {
    if (result.final?.kind === 'final') core.feedback.linkMessages('discord', messageIds, result.final.generationId);
  };

  async function onMessage(message: Message): Promise<void> {
    const me = client.user;
    if (!me || message.author.bot || message.author.id === me.id) return;
    const text = message.content.replace(new RegExp(`<@!?${me.id}>`, 'g'), ' ');
    const requester = discordRequester(message.author.id, message.member, message.channelId);
    // A reply (from anyone) to one of an article's messages asks for a revision of that article.
    const revising = message.reference?.messageId ? core.feedback.generationForMessage('discord', message.reference.messageId) : undefined;
    if (!revising) {
      const isDm = message.channel.isDMBased();
      if (!isDm && !message.mentions.users.has(me.id)) return;
    }
    const prepared = revising ? await core.feedback.revise(requester, revising, text) : await core.prepare({ requester, text });
    if (!prepared.ok) {
      await message.reply({ content: prepared.message, allowedMentions: NO_MENTIONS });
      return;
    }
    const { ackText, run } = prepared;
    replies.track(revising ? 'revision reply' : 'mention reply', async (signal) => {
      const channel = message.channel;
      const typing = () => {
        if ('sendTyping' in channel) channel.sendTyping().catch((e: unknown) => logger.debug({ err: e }, 'typing failed'));
      };
      typing();
      const typingTimer = setInterval(typing, DISCORD_TYPING_REFRESH_MS);
      const ids: string[] = [];
      const post = async (content: string, index: number, extras = {}) => {
        const m = await (index === 0 || !('send' in channel)
          ? message.reply({ content, allowedMentions: NO_MENTIONS, ...extras })
          : channel.send({ content, allowedMentions: NO_MENTIONS, ...extras }));
        ids.push(m.id);
        return m;
      };
      const surface: MessageSurface<Message> = {
        post: (content, index) => post(content, index),
        edit: async (m, content) => {
          await m.edit({ content, allowedMentions: NO_MENTIONS });
        },
        finish: async (m, content, index, final) => (m ? m.edit({ content, allowedMentions: NO_MENTIONS, ...articleExtras(final) }) : post(content, index, articleExtras(final))),
      };
      try {
        const result = await render(afterNotice(ackText, () => run(signal)), surface, (u) => {
          if (u.kind === 'final' || u.kind === 'failed') clearInterval(typingTimer);
        });
        linkArticle(result, ids);
      } finally {
        clearInterval(typingTimer);
      }
    });
  }

  /**
   * Deferred interaction: message 0 is the deferred reply (edited), the rest are follow-ups.
   * `ids` collects the ids of the messages it wrote.
   */
  function interactionSurface(i: ChatInputCommandInteraction | ButtonInteraction, ids: string[]): MessageSurface<Message | '@original'> {
    const post = async (content: string, index: number, extras = {}): Promise<Message | '@original'> => {
      const m = index === 0 ? await i.editReply({ content, allowedMentions: NO_MENTIONS, ...extras }) : await i.followUp({ content, allowedMentions: NO_MENTIONS, ...extras });
      if (!ids.includes(m.id)) ids.push(m.id);
      return index === 0 ? '@original' : m;
    };
    const edit = async (handle: Message | '@original', content: string, extras = {}) => {
      if (handle === '@original') await i.editReply({ content, allowedMentions: NO_MENTIONS, ...extras });
      else await i.webhook.editMessage(handle, { content, allowedMentions: NO_MENTIONS, ...extras });
    };
    return {
      post: (content, index) => post(content, index),
      edit: (handle, content) => edit(handle, content),
      async finish(handle, content, index, final) {
        if (!handle) return post(content, index, articleExtras(final));
        await edit(handle, content, articleExtras(final));
        return handle;
      },
    };
  }

  /** Streams an accepted request as a deferred interaction's reply (slash command or Regenerate). */
  function replyToInteraction(what: string, i: ChatInputCommandInteraction | ButtonInteraction, prepared: Extract<Prepared, { ok: true }>): void {
    replies.track(what, async (signal) => {
      const ids: string[] = [];
      linkArticle(await render(afterNotice(prepared.ackText, () => prepared.run(signal)), interactionSurface(i, ids)), ids);
    });
  }

  async function onMorrisCommand(i: ChatInputCommandInteraction): Promise<void> {
    const requester = discordRequester(i.user.id, i.member, i.channelId);
    const base: Partial<GenerationOptions> = {};
    const length = i.options.getString('length');
    if (length) base.length = length as ArticleLength;
    const temperature = i.options.getNumber('temperature');
    if (temperature !== null) base.temperature = temperature;
    const columnist = i.options.getString('columnist');
    if (columnist) base.columnist = columnist.trim().toLowerCase();
    // The checks take microseconds, well inside the 3 s window, so a refusal (usage help, too
    // long, blocked, rate-limited) is the interaction's only answer and only its asker sees it;
    // only an accepted request is deferred publicly, and generation never holds up the defer.
    const checked = await core.precheck({ requester, text: i.options.getString('topic') ?? '', options: base });
    if (!checked.ok) {
      await i.reply({ content: checked.message, flags: MessageFlags.Ephemeral, allowedMentions: NO_MENTIONS });
      return;
    }
    await i.deferReply();
    replyToInteraction('slash reply', i, core.accept(checked.accepted));
  }

  async function onAdminCommand(i: ChatInputCommandInteraction): Promise<void> {
    await i.deferReply({ flags: MessageFlags.Ephemeral });
    const requester = discordRequester(i.user.id, i.member, i.channelId);
    const out = await core.admin({ requester, text: i.options.getString('command') ?? '' });
    // A long answer (many adapters) continues in ephemeral follow-ups, its code block intact.
    const [first = '', ...rest] = splitMessage(out, maxLength);
    await i.editReply({ content: first, allowedMentions: NO_MENTIONS });
    for (const part of rest) await i.followUp({ content: part, flags: MessageFlags.Ephemeral, allowedMentions: NO_MENTIONS });
  }

  client.on(Events.MessageCreate, (message) => {
    onMessage(message).catch((e: unknown) => logger.error({ err: e, message: message.id }, 'discord message handler failed'));
  });
  const feedbackDeps = { core, requester: discordRequester, streamRegeneration: (i: ButtonInteraction, p: Extract<Prepared, { ok: true }>) => replyToInteraction('regenerated reply', i, p) };
  client.on(Events.MessageReactionAdd, (reaction, user) => {
    try {
      onRatingReaction(reaction, user, feedbackDeps, client.user?.id);
    } catch (e) {
      logger.error({ err: e, message: reaction.message.id }, 'discord reaction handler failed');
    }
  });
  client.on(Events.InteractionCreate, (i) => {
    if (i.isAutocomplete()) {
      // Discord asks while the person types the `columnist:` option: the voices that match it.
      i.respond(columnistChoices(core.settings.voices?.list() ?? [], String(i.options.getFocused()))).catch((e: unknown) => logger.error({ err: e }, 'discord autocomplete failed'));
      return;
    }
    if (i.isButton() || i.isModalSubmit()) {
      onFeedbackInteraction(i, feedbackDeps).catch((e: unknown) => logger.error({ err: e, customId: i.customId }, 'discord feedback interaction failed'));
      return;
    }
    if (!i.isChatInputCommand()) return;
    const handler = i.commandName === 'morris' ? onMorrisCommand : i.commandName === 'morris-admin' ? onAdminCommand : null;
    if (!handler) return;
    handler(i).catch((e: unknown) => logger.error({ err: e, command: i.commandName }, 'discord interaction failed'));
  });
  client.on(Events.Error, (e) => logger.error({ err: e }, 'discord client error'));

  return {
    client,
    async start() {
      const ready = new Promise<void>((resolve) => client.once(Events.ClientReady, () => resolve()));
      try {
        await client.login(opts.token);
      } catch (e) {
        // A rejected token will not heal by retrying; anything else (network, outage) may.
        const rejected = (e as { status?: number }).status === 401 || (e as { code?: unknown }).code === 'TokenInvalid';
        throw new MorrisError(rejected ? 'CONFIG_INVALID' : 'BACKEND_ERROR', `Discord login failed: ${(e as Error).message}`, {
          hint: rejected ? 'Check DISCORD_TOKEN (Developer Portal → Bot → Reset Token).' : 'Discord is unreachable from this host; retrying.',
          cause: e,
        });
      }
      await ready;
      logger.info({ user: client.user?.tag }, 'discord bot ready');
    },
    async stop() {
      replies.abortAll();
      await replies.settled();
      await client.destroy();
    },
  };
}
