/**
 * Revise in the thread on Slack (issue 16), through the real @slack/bolt App (HTTP mode) against
 * the fake Slack: a reply in an article's thread is a revision streamed into that thread, linked
 * by parent_id and prompted with the article and the instruction; an empty reply gets the usage
 * line; replies in other threads and the bot's own messages do nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attributionLine } from '../../src/bot/render.ts';
import { REVISE_USAGE } from '../../src/bot/revise.ts';
import { createSlackBot, type SlackBot } from '../../src/bot/slack.ts';
import type { Store } from '../../src/store/db.ts';
import { getGeneration } from '../../src/store/generations.ts';
import { articleFor, FakeGenerator } from './fakes/fake-generator.ts';
import { appMention, BOT_USER_ID, FakeSlack, messageEvent, postSigned, slashCommand } from './fakes/slack-server.ts';
import { makeCore, serveSlackEvents, tempStore, waitFor } from './helpers.ts';

const SECRET = 'test-signing-secret';
const FOOTER = attributionLine('Test Columnist');
const generationIn = (blocks: unknown) => /"(g-[0-9a-f]+)"/.exec(JSON.stringify(blocks ?? []))?.[1] ?? /(g-[0-9a-f]{6,})/.exec(JSON.stringify(blocks ?? []))?.[1];

describe('Slack: revise in the thread', () => {
  const fake = new FakeSlack();
  const gen = new FakeGenerator(() => ({ chunkDelayMs: 2 }));
  let store: Store;
  let cleanup: () => void;
  let bot: SlackBot;
  let server: Awaited<ReturnType<typeof serveSlackEvents>>;
  let url: string;
  const send = (payload: unknown) => postSigned(url, JSON.stringify(payload), { secret: SECRET, contentType: 'application/json' });

  beforeAll(async () => {
    await fake.start();
    ({ store, cleanup } = tempStore());
    bot = createSlackBot({ core: makeCore(store, gen), botToken: 'xoxb-test', signingSecret: SECRET, apiUrl: fake.apiUrl, editIntervalMs: 30, updatesPerMinute: 60_000, retries: 0, chatStreaming: false });
    await bot.start();
    server = await serveSlackEvents(bot);
    url = server.url;
  });

  afterAll(async () => {
    await bot.stop();
    await server.close();
    await fake.stop();
    cleanup();
  });

  /** The finished articles in thread `ts` (each message with blocks and the attribution). */
  const finished = (ts: string) => fake.messages.filter((m) => m.thread_ts === ts && m.text.includes(FOOTER) && m.blocks?.length);

  it('a reply in an article’s thread is a revision in that thread, linked by parent_id, prompted with the article and the instruction', async () => {
    const root = '1700000100.000100';
    await send(appMention({ user: 'U1', text: `<@${BOT_USER_ID}> spectrum auctions`, ts: root }));
    const [first] = await waitFor(() => finished(root).length === 1 && finished(root), 20_000, 'first article');
    const parentId = generationIn(first!.blocks)!;
    expect(getGeneration(store, parentId)).toMatchObject({ topic: 'spectrum auctions', outcome: 'ok' });
    const callsBefore = gen.calls.length;
    await send(messageEvent({ user: 'U2', text: 'shorter, and more about spectrum costs', thread_ts: root }));
    const both = await waitFor(() => finished(root).length === 2 && finished(root), 20_000, 'revised article');
    const childId = generationIn(both[1]!.blocks)!;
    expect(childId).not.toBe(parentId);
    expect(getGeneration(store, childId)).toMatchObject({ parentId, topic: 'spectrum auctions', userId: 'U2', outcome: 'ok' });
    expect(gen.calls[callsBefore]!.revision).toEqual({ previousArticle: articleFor('spectrum auctions'), instruction: 'shorter, and more about spectrum costs' });
  });

  it('an empty reply gets the usage line; the bot’s own messages and other threads do nothing', async () => {
    const root = '1700000200.000100';
    await send(appMention({ user: 'U1', text: `<@${BOT_USER_ID}> roaming charges`, ts: root }));
    await waitFor(() => finished(root).length === 1, 20_000, 'article');
    const callsBefore = gen.calls.length;
    await send(messageEvent({ user: 'U2', text: '   ', thread_ts: root }));
    await waitFor(() => fake.messages.find((m) => m.thread_ts === root && m.text === REVISE_USAGE), 10_000, 'usage line');
    const count = fake.messages.length;
    await send(messageEvent({ user: BOT_USER_ID, text: 'make it longer', thread_ts: root }));
    await send(messageEvent({ user: 'U3', text: 'make it longer', thread_ts: root, bot_id: 'B9' }));
    await send(messageEvent({ user: 'U2', text: 'make it longer', thread_ts: '1700000300.000100' }));
    await send(messageEvent({ user: 'U2', text: 'make it longer' }));
    await new Promise((r) => setTimeout(r, 300));
    expect(fake.messages.length).toBe(count);
    expect(gen.calls.length).toBe(callsBefore);
  });

  it('a reply in the thread of a /morris article posted in the channel (edit-based) revises it', async () => {
    const form = new URLSearchParams(slashCommand(fake, { command: '/morris', text: 'tower sharing', user_id: 'U1', channel_id: 'CSLASH' })).toString();
    expect((await postSigned(url, form, { secret: SECRET, contentType: 'application/x-www-form-urlencoded' })).status).toBe(200);
    const inChannel = () => fake.messages.filter((m) => m.channel === 'CSLASH' && !m.thread_ts && m.text.includes(FOOTER) && m.blocks?.length);
    const [article] = await waitFor(() => inChannel().length === 1 && inChannel(), 20_000, 'article in the channel');
    const parentId = generationIn(article!.blocks)!;
    await send(messageEvent({ user: 'U2', text: 'add a villain', channel: 'CSLASH', thread_ts: article!.ts }));
    const [revised] = await waitFor(() => finished(article!.ts).length === 1 && finished(article!.ts), 20_000, 'revision in the article’s thread');
    expect(getGeneration(store, generationIn(revised!.blocks)!)).toMatchObject({ parentId, kind: 'revise', instruction: 'add a villain' });
  });
});
