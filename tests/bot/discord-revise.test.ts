/**
 * Revise in the thread on Discord (issue 16), through the real discord.js Client against the fake
 * Discord: a reply to an article's message is a revision linked to it by parent_id, whose prompt
 * carries the previous article and the instruction; an empty reply gets the usage line; a reply
 * to any other message does nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDiscordBot, type DiscordBot } from '../../src/bot/discord.ts';
import { REVISE_USAGE } from '../../src/bot/revise.ts';
import { attributionLine } from '../../src/bot/render.ts';
import type { Store } from '../../src/store/db.ts';
import { getGeneration } from '../../src/store/generations.ts';
import { articleFor, FakeGenerator } from './fakes/fake-generator.ts';
import { BOT_ID, FakeDiscord, type DiscordMessage } from './fakes/discord-server.ts';
import { makeCore, tempStore, waitFor } from './helpers.ts';

const asker = { id: '100000000000001001', username: 'asker' };
const editor = { id: '100000000000001002', username: 'editor' };
const done = (m: DiscordMessage) => m.content.includes(attributionLine('Test Columnist'));
const generationOf = (m: DiscordMessage) =>
  /morris:up:(g-[0-9a-f]+)/.exec(JSON.stringify(m.components ?? []))?.[1];

describe('Discord: revise in the thread', () => {
  const fake = new FakeDiscord();
  let store: Store;
  let cleanup: () => void;
  let bot: DiscordBot;
  const gen = new FakeGenerator(() => ({ chunkDelayMs: 2 }));

  beforeAll(async () => {
    await fake.start();
    ({ store, cleanup } = tempStore());
    bot = createDiscordBot({ core: makeCore(store, gen), token: 'fake-token', apiUrl: fake.apiUrl, editIntervalMs: 40 });
    await bot.start();
  });

  afterAll(async () => {
    await bot.stop();
    await fake.stop();
    cleanup();
  });

  /** The finished article replying to `msgId` (its message with the buttons). */
  const articleReplyingTo = (msgId: string) =>
    waitFor(() => fake.messages.find((m) => m.reply_to === msgId && done(m) && generationOf(m)), 20_000, `article replying to ${msgId}`);

  it('a reply from anyone to an article is a revision, linked by parent_id, prompted with the article and the instruction', async () => {
    const first = await articleReplyingTo(fake.userMessage({ author: asker, content: `<@${BOT_ID}> spectrum auctions`, mentionBot: true }));
    const parentId = generationOf(first)!;
    const callsBefore = gen.calls.length;
    const revised = await articleReplyingTo(fake.userMessage({ author: editor, content: '  shorter, and more about   spectrum costs ', replyTo: first.id }));
    const childId = generationOf(revised)!;
    expect(childId).not.toBe(parentId);
    expect(getGeneration(store, childId)).toMatchObject({ parentId, kind: 'revise', instruction: 'shorter, and more about spectrum costs', topic: 'spectrum auctions', userId: editor.id, outcome: 'ok' });
    const call = gen.calls[callsBefore]!;
    expect(call.topic).toBe('spectrum auctions');
    expect(call.revision).toEqual({ previousArticle: articleFor('spectrum auctions'), instruction: 'shorter, and more about spectrum costs' });
  });

  it('an empty reply to an article gets the usage line and no generation', async () => {
    const first = await articleReplyingTo(fake.userMessage({ author: asker, content: `<@${BOT_ID}> roaming charges`, mentionBot: true }));
    const callsBefore = gen.calls.length;
    const replyId = fake.userMessage({ author: editor, content: `<@${BOT_ID}>   `, replyTo: first.id });
    const answer = await waitFor(() => fake.messages.find((m) => m.reply_to === replyId), 10_000, 'usage reply');
    expect(answer.content).toBe(REVISE_USAGE);
    expect(gen.calls.length).toBe(callsBefore);
  });

  it('a reply to a message that is not an article does nothing', async () => {
    const other = fake.userMessage({ author: asker, content: 'lunch anyone?' });
    const callsBefore = gen.calls.length;
    const count = fake.messages.length;
    const replyId = fake.userMessage({ author: editor, content: 'shorter please', replyTo: other });
    await new Promise((r) => setTimeout(r, 300));
    expect(fake.messages.length).toBe(count);
    expect(fake.messages.some((m) => m.reply_to === replyId)).toBe(false);
    expect(gen.calls.length).toBe(callsBefore);
  });
});
