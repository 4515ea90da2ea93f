/**
 * Reader feedback end to end through the real discord.js Client against the fake Discord: the
 * buttons and lineage footer on a finished article, ratings by button and by reaction (recorded
 * for whoever clicked), the edit modal (split over several inputs for a long article) and
 * Regenerate as a new, linked generation through the same core.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDiscordBot, type DiscordBot } from '../../src/bot/discord.ts';
import { DISCORD_INPUT_MAX_CHARS, feedbackCustomId } from '../../src/bot/feedback-ui.ts';
import { attributionLine } from '../../src/bot/render.ts';
import type { Store } from '../../src/store/db.ts';
import { listFeedback, preferencePairs } from '../../src/store/feedback.ts';
import { getGeneration } from '../../src/store/generations.ts';
import { articleFor, FakeGenerator } from './fakes/fake-generator.ts';
import { BOT_ID, DM_CHANNEL_ID, FakeDiscord, type DiscordMessage } from './fakes/discord-server.ts';
import { makeCore, tempStore, waitFor } from './helpers.ts';

const EPHEMERAL = 64;
const user = (n: number) => ({ id: `10000000000000${String(n).padStart(4, '0')}`, username: `reader${n}` });
const done = (m: DiscordMessage) => m.content.includes(attributionLine('Test Columnist'));
/** The generation id in a message's buttons (none until the article is finished). */
const buttonIds = (m: DiscordMessage) =>
  ((m.components ?? []) as { components: { custom_id: string; label: string }[] }[]).flatMap((row) => row.components.map((c) => c.custom_id));

describe('Discord feedback', () => {
  const fake = new FakeDiscord();
  let store: Store;
  let cleanup: () => void;
  let bot: DiscordBot;
  let takes = 0;
  const gen = new FakeGenerator((topic) => {
    if (topic.includes('long read')) return { text: articleFor(topic, 1200), chunkChars: 800, chunkDelayMs: 5 };
    // Each take differs, as a sampled model's would: identical texts make no preference pair.
    if (topic.includes('landline')) return { text: articleFor(`${topic} take ${++takes}`), chunkDelayMs: 4 };
    return { chunkDelayMs: 4 };
  });

  beforeAll(async () => {
    await fake.start();
    ({ store, cleanup } = tempStore());
    // Two a minute each: the regenerate test spends the second one of its clicker.
    bot = createDiscordBot({ core: makeCore(store, gen, { userRateLimitPerMin: 2 }), token: 'fake-token', apiUrl: fake.apiUrl, editIntervalMs: 40 });
    await bot.start();
  });

  afterAll(async () => {
    await bot.stop();
    await fake.stop();
    cleanup();
  });

  /** Mentions the bot with `topic` as `asker`; resolves with the article's messages, last one with buttons. */
  async function askByMention(topic: string, asker: { id: string; username: string }): Promise<DiscordMessage[]> {
    const msgId = fake.userMessage({ author: asker, content: `<@${BOT_ID}> ${topic}`, mentionBot: true });
    return waitFor(() => {
      const first = fake.messages.findIndex((m) => m.reply_to === msgId);
      if (first < 0) return null;
      const parts = fake.messages.slice(first).filter((m, i) => i === 0 || (m.kind === 'channel' && !m.reply_to));
      const last = parts.find((m) => buttonIds(m).length);
      return last && done(last) ? parts.slice(0, parts.indexOf(last) + 1) : null;
    }, 20_000, `article about ${topic}`);
  }

  const generationOf = (m: DiscordMessage) => /morris:up:(g-[0-9a-f]+)/.exec(buttonIds(m).join(' '))![1]!;

  it('the finished article ends with 👍 👎 Regenerate / Suggest an edit / Details and a lineage footer; its text is unchanged', async () => {
    const [msg] = await askByMention('the fax machine revival', user(1));
    const g = generationOf(msg!);
    expect(buttonIds(msg!)).toEqual(['up', 'down', 'regen', 'edit', 'details'].map((a) => feedbackCustomId(a as 'up', g)));
    const labels = (msg!.components as { components: { label: string }[] }[])[0]!.components.map((c) => c.label);
    expect(labels).toEqual(['👍', '👎', 'Regenerate', 'Suggest an edit', 'Details']);
    expect(msg!.embeds).toEqual([
      { footer: { text: 'Columnist: Test Columnist · adapter: a-test-1 · base model: tiny-test · dataset: ds-test-1' } },
    ]);
    expect(msg!.content).toBe(`${articleFor('the fax machine revival')}\n\n_${attributionLine('Test Columnist')}_`);
    expect(getGeneration(store, g)).toMatchObject({ outcome: 'ok', article: articleFor('the fax machine revival'), userId: user(1).id });
  });

  it('Details answers the clicker privately with the full record: request, origin, lineage, feedback, later versions', async () => {
    const [msg] = await askByMention('undersea cables', user(5));
    const g = generationOf(msg!);
    fake.clickButton({ messageId: msg!.id, customId: feedbackCustomId('down', g), user: user(6) });
    await waitFor(() => listFeedback(store, g).length === 1, 10_000, 'rating');
    const token = fake.clickButton({ messageId: msg!.id, customId: feedbackCustomId('details', g), user: user(7) });
    const cb = await waitFor(() => fake.interactionCallbacks.find((c) => c.token === token), 10_000, 'details answer');
    expect(cb).toMatchObject({ type: 4, flags: EPHEMERAL, data: { allowed_mentions: { parse: [] } } });
    const lines = String(cb.data?.content).split('\n');
    expect(lines[0]).toBe(`Article \`${g}\` on “undersea cables”`);
    expect(lines[1]).toMatch(new RegExp(`^Asked by <@${user(5).id}> on discord, \\d{4}-\\d{2}-\\d{2} \\d{2}:\\d{2} UTC; options: `));
    expect(lines.slice(2)).toEqual([
      'A first ask',
      expect.stringMatching(/^Outcome: ok in \d+\.\d s, [\d,]+ characters$/),
      'Columnist: Test Columnist · adapter: a-test-1 · base model: tiny-test · dataset: ds-test-1',
      'Feedback: 0 👍, 1 👎, 0 suggested edits, 0 Regenerate clicks',
      'Later versions: none',
    ]);
  });

  it('a 👍 click by someone else is recorded for the clicker, answered privately; a 👎 reaction counts too', async () => {
    const parts = await askByMention('a long read on spectrum caps', user(2));
    expect(parts.length).toBeGreaterThanOrEqual(3);
    const last = parts.at(-1)!;
    const g = generationOf(last);
    const token = fake.clickButton({ messageId: last.id, customId: feedbackCustomId('up', g), user: user(3) });
    const cb = await waitFor(() => fake.interactionCallbacks.find((c) => c.token === token), 10_000, 'rating answer');
    expect(cb).toMatchObject({ type: 4, flags: EPHEMERAL });
    expect(String(cb.data?.content)).toMatch(/noted 👍/);
    // A reaction on the first part of the article (not the one with buttons) is a rating as well.
    fake.react({ messageId: parts[0]!.id, emoji: '👎', user: user(4) });
    fake.react({ messageId: parts[0]!.id, emoji: '🎉', user: user(4) });
    const rows = await waitFor(() => {
      const r = listFeedback(store, g);
      return r.length >= 2 ? r : null;
    }, 10_000, 'reaction rating');
    await new Promise((r) => setTimeout(r, 100));
    expect(listFeedback(store, g).map((r) => [r.kind, r.value, r.userId, r.platform, r.adapterId, r.datasetId])).toEqual([
      ['rating', 1, user(3).id, 'discord', 'a-test-1', 'ds-test-1'],
      ['rating', -1, user(4).id, 'discord', 'a-test-1', 'ds-test-1'],
    ]);
    expect(rows).toHaveLength(2);
  });

  it('a 👍 reaction on an article in a DM counts as a rating', async () => {
    const asker = user(9);
    const msgId = fake.userMessage({ author: asker, content: 'a quiet word about pagers', dm: true });
    const reply = await waitFor(() => fake.messages.find((m) => m.reply_to === msgId && buttonIds(m).length), 20_000, 'DM article');
    expect(reply.channel_id).toBe(DM_CHANNEL_ID);
    const g = generationOf(reply);
    fake.react({ messageId: reply.id, emoji: '👍', user: asker });
    await waitFor(() => listFeedback(store, g).length === 1, 10_000, 'DM rating');
    expect(listFeedback(store, g)[0]).toMatchObject({ kind: 'rating', value: 1, userId: asker.id });
  });

  it('Suggest an edit opens a modal holding the article (several inputs when long); the submission is a preference pair', async () => {
    const parts = await askByMention('another long read about roaming', user(5));
    const g = generationOf(parts.at(-1)!);
    const article = articleFor('another long read about roaming', 1200);
    expect(article.length).toBeGreaterThan(DISCORD_INPUT_MAX_CHARS);
    const token = fake.clickButton({ messageId: parts.at(-1)!.id, customId: feedbackCustomId('edit', g), user: user(6) });
    const cb = await waitFor(() => fake.interactionCallbacks.find((c) => c.token === token), 10_000, 'modal');
    expect(cb.type).toBe(9);
    expect(cb.data?.custom_id).toBe(feedbackCustomId('edit-form', g));
    const inputs = (cb.data!.components as { components: { type: number; style: number; custom_id: string; value: string }[] }[]).map((row) => row.components[0]!);
    expect(inputs.length).toBeGreaterThanOrEqual(2);
    for (const input of inputs) {
      expect(input).toMatchObject({ type: 4, style: 2 });
      expect(input.value.length).toBeLessThanOrEqual(DISCORD_INPUT_MAX_CHARS);
    }
    expect(inputs.map((i) => i.value).join('\n\n').split(/\s+/)).toEqual(article.split(/\s+/));
    const values = Object.fromEntries(inputs.map((i, n) => [i.custom_id, n === 0 ? `Better headline\n\n${i.value}` : i.value]));
    const submit = fake.submitModal({ customId: feedbackCustomId('edit-form', g), values, user: user(6) });
    const answer = await waitFor(() => fake.interactionCallbacks.find((c) => c.token === submit), 10_000, 'edit receipt');
    expect(answer).toMatchObject({ type: 4, flags: EPHEMERAL });
    const pair = preferencePairs(store).find((p) => p.rejectedId === g)!;
    expect(pair).toMatchObject({ source: 'edit', rejected: article, topic: 'another long read about roaming' });
    expect(pair.chosen.startsWith('Better headline\n\n')).toBe(true);
    expect(listFeedback(store, g)).toEqual([expect.objectContaining({ kind: 'edit', userId: user(6).id })]);
  });

  it('Regenerate asks again as the clicker through the core: a new linked generation, streamed as the reply, with its own buttons', async () => {
    const [msg] = await askByMention('the death of the landline', user(7));
    const first = generationOf(msg!);
    const calls = gen.calls.length;
    const token = fake.clickButton({ messageId: msg!.id, customId: feedbackCustomId('regen', first), user: user(8) });
    const cb = await waitFor(() => fake.interactionCallbacks.find((c) => c.token === token), 10_000, 'defer');
    expect(cb.type).toBe(5);
    expect((cb.flags ?? 0) & EPHEMERAL).toBe(0);
    const reply = await waitFor(() => fake.messages.find((m) => m.interaction_token === token && buttonIds(m).length), 20_000, 'regenerated article');
    expect(reply.history.length).toBeGreaterThan(1); // streamed by edits like any article
    const second = generationOf(reply);
    expect(second).not.toBe(first);
    expect(gen.calls.length).toBe(calls + 1);
    expect(getGeneration(store, second)).toMatchObject({ parentId: first, userId: user(8).id, topic: 'the death of the landline', outcome: 'ok' });
    expect(listFeedback(store, first)).toEqual([expect.objectContaining({ kind: 'regenerate', userId: user(8).id })]);
    // 👎 on the first, 👍 on the regeneration: a preference pair of the same request.
    fake.clickButton({ messageId: msg!.id, customId: feedbackCustomId('down', first), user: user(7) });
    fake.clickButton({ messageId: reply.id, customId: feedbackCustomId('up', second), user: user(7) });
    const pair = await waitFor(() => preferencePairs(store).find((p) => p.source === 'rating' && p.rejectedId === first), 10_000, 'rating pair');
    expect(pair.chosenId).toBe(second);
    // The clicker's rate limit applies (2 a minute; the regenerate spent one): the third is refused privately.
    const again = fake.clickButton({ messageId: msg!.id, customId: feedbackCustomId('regen', first), user: user(8) });
    await waitFor(() => fake.messages.find((m) => m.interaction_token === again && done(m)), 20_000, 'second regeneration');
    const refused = fake.clickButton({ messageId: msg!.id, customId: feedbackCustomId('regen', first), user: user(8) });
    const no = await waitFor(() => fake.interactionCallbacks.find((c) => c.token === refused), 10_000, 'refusal');
    expect(no).toMatchObject({ type: 4, flags: EPHEMERAL });
    expect(String(no.data?.content)).toMatch(/2 articles a minute/);
    expect(gen.calls.length).toBe(calls + 2);
  });
});
