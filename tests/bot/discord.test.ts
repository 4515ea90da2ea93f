/**
 * End to end through the real discord.js Client against the local fake Discord (REST + JSON
 * gateway): mentions, DMs, slash commands, admin commands, splitting, and mention safety.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDiscordBot, DISCORD_COMMANDS, registerDiscordCommands, type DiscordBot } from '../../src/bot/discord.ts';
import { DISCORD_MAX_MESSAGE_LENGTH, attributionLine } from '../../src/bot/render.ts';
import type { Store } from '../../src/store/db.ts';
import { articleFor, FakeGenerator } from './fakes/fake-generator.ts';
import { ADMIN_ROLE_ID, APP_ID, BOT_ID, CHANNEL_ID, DM_CHANNEL_ID, FakeDiscord, GUILD_ID, type DiscordMessage } from './fakes/discord-server.ts';
import { makeCore, recordingAdmin, tempStore, waitFor } from './helpers.ts';

const EDIT_MS = 60;
const ATTRIBUTION = attributionLine('Test Columnist');
const STRING = 3;
const NUMBER = 10;
const EPHEMERAL = 64;

/** Holds the slash-command article before its first word until the test has seen the defer. */
const longReadHold = (() => {
  let release!: () => void;
  const promise = new Promise<void>((r) => (release = r));
  return { promise, release };
})();

function behaviour(topic: string) {
  if (topic.includes('long read')) {
    return { text: articleFor(topic, 900), chunkChars: 400, chunkDelayMs: 25, ...(topic === 'long read about fibre' ? { hold: longReadHold.promise } : {}) };
  }
  if (topic.includes('pinger')) return { text: 'Attention @everyone and @here: <@123456789012345678> and <@&987654321098765432> said so.' };
  return { chunkDelayMs: 8 };
}

/** Text arrived by edits: live text (with the cursor) was shown before the final version. */
function expectStreamed(msgs: DiscordMessage[]): void {
  const live = msgs.flatMap((m) => m.history).filter((h) => h.content.endsWith(' …'));
  expect(live.length).toBeGreaterThanOrEqual(2);
  expect(msgs.reduce((n, m) => n + m.history.length - 1, 0)).toBeGreaterThanOrEqual(msgs.length);
  // Edits of one message respect the throttle interval.
  for (const m of msgs) m.history.slice(1).forEach((h, i) => expect(h.at - m.history[i]!.at).toBeGreaterThanOrEqual(EDIT_MS - 15));
}

const user = (n: number) => ({ id: String(700000000000000000n + BigInt(n)), username: `user${n}` });
const done = (m: DiscordMessage) => m.content.includes('not written by them') || m.content.startsWith('Sorry');
const noPings = (m: DiscordMessage) => m.allowed_mentions.every((a) => JSON.stringify(a) === JSON.stringify({ parse: [], replied_user: false }) || JSON.stringify(a) === JSON.stringify({ parse: [] }));

describe('Discord bot', () => {
  const fake = new FakeDiscord();
  let store: Store;
  let cleanup: () => void;
  let bot: DiscordBot;
  const gen = new FakeGenerator(behaviour);
  const admin = recordingAdmin();

  beforeAll(async () => {
    await fake.start();
    ({ store, cleanup } = tempStore());
    // One article a minute per person: every test asks as its own user(s), and the private-refusal
    // test trips the limit on purpose.
    const core = makeCore(store, gen, { userRateLimitPerMin: 1 }, admin);
    bot = createDiscordBot({ core, token: 'fake-token', apiUrl: fake.apiUrl, editIntervalMs: EDIT_MS });
    const t0 = Date.now();
    await bot.start();
    console.log(`[discord] client ready in ${Date.now() - t0} ms`);
  });

  afterAll(async () => {
    await bot.stop();
    await fake.stop();
    cleanup();
  });

  /** The bot's messages replying to `messageId`, then the ones posted after it in that channel. */
  const repliesTo = (messageId: string) => {
    const first = fake.messages.findIndex((m) => m.reply_to === messageId);
    if (first < 0) return [];
    const ch = fake.messages[first]!.channel_id;
    return fake.messages.slice(first).filter((m, i) => i === 0 || (m.channel_id === ch && m.kind === 'channel' && !m.reply_to));
  };

  it('mention → reply to that message with typing, streamed edits, split at 2000 chars without losing text', async () => {
    const typingBefore = fake.typing.length;
    const msgId = fake.userMessage({ author: user(1), content: `<@${BOT_ID}> a long read on spectrum auctions`, mentionBot: true });
    const parts = await waitFor(() => {
      const r = repliesTo(msgId);
      return r.length && r.some(done) ? r : null;
    }, 15_000, 'split reply');
    expect(parts.length).toBeGreaterThanOrEqual(3);
    expect(parts[0]!.reply_to).toBe(msgId);
    for (const p of parts) {
      expect(p.content.length).toBeLessThanOrEqual(DISCORD_MAX_MESSAGE_LENGTH);
      expect(noPings(p)).toBe(true);
    }
    const article = articleFor('a long read on spectrum auctions', 900);
    const joined = parts.map((p) => p.content).join('\n\n');
    expect(joined.split(/\s+/)).toEqual(`${article}\n\n_${ATTRIBUTION}_`.split(/\s+/));
    expectStreamed(parts);
    expect(fake.typing.length).toBeGreaterThan(typingBefore);
    expect(fake.typing.at(-1)!.channel).toBe(CHANNEL_ID);
  });

  it('ignores other bots and messages that do not mention Morris', async () => {
    const before = fake.messages.length;
    fake.userMessage({ author: { ...user(2), bot: true }, content: `<@${BOT_ID}> bot loop`, mentionBot: true });
    fake.userMessage({ author: user(2), content: 'talking among ourselves' });
    await new Promise((r) => setTimeout(r, 300));
    expect(fake.messages.length).toBe(before);
    expect(gen.calls.some((c) => c.topic === 'bot loop')).toBe(false);
  });

  it('answers a DM without a mention', async () => {
    const msgId = fake.userMessage({ author: user(3), content: 'quiet word about roaming fees', dm: true });
    const reply = await waitFor(() => fake.messages.find((m) => m.reply_to === msgId && done(m)), 20_000, 'DM reply');
    expect(reply.channel_id).toBe(DM_CHANNEL_ID);
    expect(reply.content.startsWith(articleFor('quiet word about roaming fees'))).toBe(true);
  });

  it('/morris topic: → deferred at once → edited with the article (long ones continue in follow-ups)', async () => {
    const t0 = Date.now();
    const token = fake.slashCommand({
      name: 'morris',
      options: [
        { name: 'topic', type: STRING, value: 'long read about fibre' },
        { name: 'temperature', type: NUMBER, value: 0.5 },
      ],
      user: user(4),
    });
    const cb = await waitFor(() => fake.interactionCallbacks.find((c) => c.token === token), 20_000, 'defer');
    expect(cb.type).toBe(5);
    expect((cb.flags ?? 0) & EPHEMERAL).toBe(0); // the article is for the whole channel
    const deferMs = cb.at - t0;
    // Deferred while the article is still held before its first word: the defer (Discord allows
    // 3 s) never waits for generation.
    expect(fake.messages.some((m) => m.interaction_token === token && m.content.includes('Headline'))).toBe(false);
    longReadHold.release();
    const msgs = await waitFor(() => {
      const ms = fake.messages.filter((m) => m.interaction_token === token);
      return ms.some(done) ? ms : null;
    }, 15_000, 'interaction reply');
    expect(msgs[0]!.kind).toBe('original');
    expect(msgs.slice(1).every((m) => m.kind === 'followup')).toBe(true);
    expect(msgs.length).toBeGreaterThanOrEqual(2);
    expectStreamed(msgs);
    for (const m of msgs) expect(noPings(m)).toBe(true);
    expect(msgs.map((m) => m.content).join('\n\n').split(/\s+/)).toEqual(
      `${articleFor('long read about fibre', 900)}\n\n_${ATTRIBUTION}_`.split(/\s+/),
    );
    expect(gen.calls.find((c) => c.topic === 'long read about fibre')).toMatchObject({ temperature: 0.5 });
    console.log(`[discord] slash defer ${deferMs} ms; ${msgs.reduce((n, m) => n + m.history.length - 1, 0)} edits; ${msgs.length} messages`);
  });

  it('/morris-admin from a non-admin is refused (ephemeral) and audited; a role admin is allowed', async () => {
    const token = fake.slashCommand({ name: 'morris-admin', options: [{ name: 'command', type: STRING, value: 'rollback' }], user: user(5) });
    const reply = await waitFor(() => fake.messages.find((m) => m.interaction_token === token && m.content), 20_000, 'admin refusal');
    expect(fake.interactionCallbacks.find((c) => c.token === token)).toMatchObject({ type: 5, flags: 64 });
    expect(reply.content).toMatch(/admins only/);
    const token2 = fake.slashCommand({
      name: 'morris-admin',
      options: [{ name: 'command', type: STRING, value: 'rollback' }],
      user: user(6),
      roles: [ADMIN_ROLE_ID],
    });
    const ok = await waitFor(() => fake.messages.find((m) => m.interaction_token === token2 && m.content), 20_000, 'admin ok');
    expect(ok.content).toContain('rollback ok');
    expect(admin.calls).toEqual(['rollback']);
    expect(store.prepare("SELECT user_id, allowed FROM audit_log WHERE command = 'rollback' ORDER BY id").all()).toEqual([
      { user_id: user(5).id, allowed: 0 },
      { user_id: user(6).id, allowed: 1 },
    ]);
  });

  it('/morris-admin output over 2000 characters continues in ephemeral follow-ups, code blocks intact', async () => {
    const listing = Array.from({ length: 120 }, (_, n) => `a-20260101-${String(n).padStart(3, '0')}  candidate  val_loss ${(2 + n / 100).toFixed(3)}`);
    const original = admin.adapters;
    admin.adapters = async () => listing.join('\n');
    try {
      const token = fake.slashCommand({ name: 'morris-admin', options: [{ name: 'command', type: STRING, value: 'adapters' }], user: user(6), roles: [ADMIN_ROLE_ID] });
      const parts = await waitFor(() => {
        const ms = fake.messages.filter((m) => m.interaction_token === token && m.content);
        return ms.length >= 2 && ms.map((m) => m.content).join('\n').includes(listing.at(-1)!) ? ms : null;
      }, 20_000, 'long admin answer');
      expect(parts[0]!.kind).toBe('original');
      for (const p of parts.slice(1)) expect(p).toMatchObject({ kind: 'followup', flags: 64 });
      for (const p of parts) {
        expect(p.content.length).toBeLessThanOrEqual(DISCORD_MAX_MESSAGE_LENGTH);
        expect(p.content.startsWith('```') && p.content.endsWith('```')).toBe(true);
      }
      const shown = parts.flatMap((p) => p.content.split('\n')).filter((l) => !l.startsWith('```'));
      expect(shown).toEqual(listing);
    } finally {
      admin.adapters = original;
    }
  });

  /**
   * The bot's answer to slash command `token` was an ephemeral type-4 reply, the only callback,
   * and nothing public followed it.
   */
  async function privateRefusal(token: string): Promise<{ content: string }> {
    const cb = await waitFor(() => fake.interactionCallbacks.find((c) => c.token === token), 20_000, 'interaction callback');
    expect(cb).toMatchObject({ type: 4, flags: EPHEMERAL });
    const sent = fake.calls.find((c) => c.method === 'POST' && c.path.endsWith(`/${token}/callback`))!.body as {
      data: { content: string; allowed_mentions: unknown };
    };
    expect(sent.data.allowed_mentions).toEqual({ parse: [], replied_user: false });
    // Had the handler gone on to defer or edit, it would have done so at once after the callback.
    await new Promise((r) => setTimeout(r, 150));
    expect(fake.interactionCallbacks.filter((c) => c.token === token)).toHaveLength(1);
    expect(fake.messages.filter((m) => m.interaction_token === token || m.content === sent.data.content)).toEqual([]);
    return { content: sent.data.content };
  }

  const generationsOf = (u: { id: string }) =>
    store.prepare('SELECT outcome, error, length(topic) AS len FROM generations WHERE user_id = ? ORDER BY rowid').all(u.id);

  it('/morris refusals (usage, too long, blocked, rate-limited) are ephemeral replies, recorded; the article is public', async () => {
    const asker = user(9);
    const slash = (topic: string) => fake.slashCommand({ name: 'morris', options: [{ name: 'topic', type: STRING, value: topic }], user: asker });
    expect((await privateRefusal(slash('   '))).content).toMatch(/\/morris topic:/);
    expect(generationsOf(asker)).toEqual([]); // usage help is not a generation (as on every path)
    expect((await privateRefusal(slash('z'.repeat(50_000)))).content).toMatch(/50,000 characters; please keep it under 300/);
    expect((await privateRefusal(slash('a forbidden subject'))).content).toMatch(/won't write about/);
    expect(generationsOf(asker)).toEqual([
      { outcome: 'refused', error: expect.stringMatching(/50,000 characters/), len: 2000 },
      { outcome: 'refused', error: 'blocked term: forbidden', len: 'a forbidden subject'.length },
    ]);
    // Refusals spent no rate-limit token: the first real request goes through, deferred publicly.
    const token = slash('roaming in the alps');
    const article = await waitFor(() => fake.messages.find((m) => m.interaction_token === token && done(m)), 20_000, 'article');
    expect(fake.interactionCallbacks.filter((c) => c.token === token)).toEqual([expect.objectContaining({ type: 5 })]);
    expect((fake.interactionCallbacks.find((c) => c.token === token)!.flags ?? 0) & EPHEMERAL).toBe(0);
    expect(article.kind).toBe('original');
    expect(article.content.startsWith(articleFor('roaming in the alps'))).toBe(true);
    // That request spent the one token a minute (once, not twice); the next is refused privately.
    expect((await privateRefusal(slash('roaming again'))).content).toMatch(/1 article a minute/);
    expect(generationsOf(asker).slice(2)).toEqual([
      { outcome: 'ok', error: null, len: 'roaming in the alps'.length },
      { outcome: 'rate_limited', error: expect.stringMatching(/1 article a minute/), len: 'roaming again'.length },
    ]);
    expect(gen.calls.filter((c) => c.topic.includes('roaming') && c.topic !== 'quiet word about roaming fees').map((c) => c.topic)).toEqual([
      'roaming in the alps',
    ]);
  });

  it('generated @everyone, @here, user and role mentions cannot ping', async () => {
    const msgId = fake.userMessage({ author: user(7), content: `<@${BOT_ID}> pinger`, mentionBot: true });
    const reply = await waitFor(() => fake.messages.find((m) => m.reply_to === msgId && done(m)), 20_000, 'pinger reply');
    expect(noPings(reply)).toBe(true);
    expect(reply.allowed_mentions.length).toBe(reply.history.length);
    expect(reply.content).not.toMatch(/@everyone|@here|<@\d|<@&/);
    expect(reply.content.replaceAll('\u200D', '')).toContain('Attention @everyone and @here');
  });

  it('10 people mentioning at once all get their own answer, with queue positions', async () => {
    const ids = Array.from({ length: 10 }, (_, i) =>
      fake.userMessage({ author: user(20 + i), content: `<@${BOT_ID}> discord crowd ${i}`, mentionBot: true }),
    );
    const replies = await waitFor(() => {
      const r = ids.map((id) => fake.messages.find((m) => m.reply_to === id && done(m)));
      return r.every(Boolean) ? (r as DiscordMessage[]) : null;
    }, 20_000, '10 replies');
    replies.forEach((m, i) => expect(m.content.startsWith(articleFor(`discord crowd ${i}`))).toBe(true));
    const positions = replies.flatMap((m) => m.history.map((h) => /Queued: position (\d+)/.exec(h.content)?.[1]).filter(Boolean).map(Number));
    expect(Math.max(...positions)).toBeGreaterThanOrEqual(5);
  });

  it('bad input: empty mention gets usage help; a huge slash topic is refused politely', async () => {
    const msgId = fake.userMessage({ author: user(8), content: `<@${BOT_ID}>   `, mentionBot: true });
    const usage = await waitFor(() => fake.messages.find((m) => m.reply_to === msgId), 20_000, 'usage');
    expect(usage.content).toMatch(/\/morris topic:/);
    const token = fake.slashCommand({ name: 'morris', options: [{ name: 'topic', type: STRING, value: 'y'.repeat(50_000) }], user: user(8) });
    expect((await privateRefusal(token)).content).toMatch(/50,000 characters; please keep it under 300/);
    // Markdown and mention injection in the topic is echoed literally and cannot ping.
    const token2 = fake.slashCommand({
      name: 'morris',
      options: [{ name: 'topic', type: STRING, value: '**ünï** <@&900000000000000009> @everyone `x` 🦀' }],
      user: user(8),
    });
    const reply = await waitFor(() => fake.messages.find((m) => m.interaction_token === token2 && done(m)), 20_000, 'injection reply');
    expect(reply.history[0]!.content).toBe('Writing about “\\*\\*ünï\\*\\* <@\u200D&900000000000000009\\> @\u200Deveryone \\`x\\` 🦀”…');
    expect(noPings(reply)).toBe(true);
    expect(gen.calls.at(-1)!.topic).toBe('**ünï** <@&900000000000000009> @everyone `x` 🦀');
  });
});

describe('morris discord register-commands', () => {
  it('PUTs /morris and /morris-admin to the application (or one guild)', async () => {
    const fake = new FakeDiscord();
    await fake.start();
    try {
      const out = await registerDiscordCommands({ token: 't', applicationId: APP_ID, apiUrl: fake.apiUrl, guildId: GUILD_ID });
      expect(out.registered).toEqual(['morris', 'morris-admin']);
      const call = fake.calls.find((c) => c.method === 'PUT')!;
      expect(call.path).toBe(`/applications/${APP_ID}/guilds/${GUILD_ID}/commands`);
      expect(fake.registeredCommands).toEqual(DISCORD_COMMANDS);
      await registerDiscordCommands({ token: 't', applicationId: APP_ID, apiUrl: fake.apiUrl });
      expect(fake.calls.at(-1)!.path).toBe(`/applications/${APP_ID}/commands`);
    } finally {
      await fake.stop();
    }
  });
});
