/**
 * Slack's chat streaming end to end through the real @slack/bolt App (HTTP mode) against the fake
 * Slack: the article streams into the acknowledgement's thread (chat.startStream / appendStream /
 * stopStream), a stream that expires is finished with chat.update without losing text, a
 * workspace without the methods gets the edit-based reply, and setStatus shows the queue.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { attributionLine, toSlackMrkdwn } from '../../src/bot/render.ts';
import { createSlackBot, type SlackBot } from '../../src/bot/slack.ts';
import { SLACK_STREAM_CALL_MAX_CHARS, streamableText, streamPieces } from '../../src/bot/slack-stream.ts';
import type { Store } from '../../src/store/db.ts';
import { articleFor, FakeGenerator, type FakeBehaviour } from './fakes/fake-generator.ts';
import { appMention, blockActions, BOT_USER_ID, FakeSlack, messageEvent, postInteraction, postSigned, slashCommand, type SlackMessage } from './fakes/slack-server.ts';
import { generationFamily, getGeneration } from '../../src/store/generations.ts';
import { makeCore, serveSlackEvents, tempStore, waitFor } from './helpers.ts';

const SECRET = 'test-signing-secret';
const FOOTER = `_${attributionLine('Test Columnist')}_`;

interface Harness {
  fake: FakeSlack;
  store: Store;
  gen: FakeGenerator;
  url: string;
  slash(text: string, user: string, channel: string): Promise<{ status: number; text: string }>;
  mention(text: string, user: string, channel: string, ts: string): Promise<{ status: number; text: string }>;
  click(user: string, message: SlackMessage, actionId: string): Promise<{ status: number; text: string }>;
  close(): Promise<void>;
}

const open: Harness[] = [];

/** A fresh fake Slack and bot (the bot remembers whether its workspace streams). */
async function harness(setup: (fake: FakeSlack) => void, behaviour: (topic: string) => FakeBehaviour = () => ({ chunkDelayMs: 6 })): Promise<Harness> {
  const fake = new FakeSlack();
  setup(fake);
  await fake.start();
  const { store, cleanup } = tempStore();
  const gen = new FakeGenerator(behaviour);
  const bot: SlackBot = createSlackBot({
    core: makeCore(store, gen),
    botToken: 'xoxb-test',
    signingSecret: SECRET,
    apiUrl: fake.apiUrl,
    editIntervalMs: 30,
    appendIntervalMs: 20,
    updatesPerMinute: 60_000,
    retries: 0,
  });
  await bot.start();
  const server = await serveSlackEvents(bot);
  const url = server.url;
  const h: Harness = {
    fake,
    store,
    gen,
    url,
    slash: (text, user, channel) =>
      postSigned(url, new URLSearchParams(slashCommand(fake, { command: '/morris', text, user_id: user, channel_id: channel })).toString(), {
        secret: SECRET,
        contentType: 'application/x-www-form-urlencoded',
      }),
    mention: (text, user, channel, ts) =>
      postSigned(url, JSON.stringify(appMention({ user, text: `<@${BOT_USER_ID}> ${text}`, channel, ts })), { secret: SECRET, contentType: 'application/json' }),
    click: (user, message, actionId) => {
      const action = (message.blocks ?? []).flatMap((b) => (b.elements ?? []) as Record<string, unknown>[]).find((e) => e.action_id === actionId)!;
      return postInteraction(url, blockActions(fake, { user, message, action }), { secret: SECRET });
    },
    async close() {
      await bot.stop();
      await server.close();
      await fake.stop();
      cleanup();
    },
  };
  open.push(h);
  return h;
}

afterEach(async () => {
  for (const h of open.splice(0)) await h.close();
});

const blockTypes = (m: SlackMessage) => (m.blocks ?? []).map((b) => b.type);
const finishedIn = (fake: FakeSlack, channel: string) => fake.messages.find((m) => m.channel === channel && Boolean(m.blocks?.length));

describe('streamableText', () => {
  it('sends whole words only, so a mention split across pieces is disarmed whole and each send extends the last', () => {
    const full = '\n  Big news <!channel> and @everyone, says <@U999>. The end';
    let sent = '';
    for (let i = 1; i <= full.length; i++) {
      const now = streamableText(full.slice(0, i), false);
      expect(now.startsWith(sent)).toBe(true);
      sent = now;
    }
    const done = streamableText(full, true);
    expect(done.startsWith(sent)).toBe(true);
    expect(done.startsWith('Big news')).toBe(true);
    expect(done).not.toMatch(/<!channel>|<@U999>|@everyone/);
  });
});

describe('streamPieces', () => {
  it('cuts a burst into pieces of at most one call each, never inside an emoji', () => {
    const text = `${'a'.repeat(9)}😀${'b'.repeat(20)}`;
    const pieces = streamPieces(text, 10);
    expect(pieces.join('')).toBe(text);
    for (const p of pieces) expect(p.length).toBeLessThanOrEqual(10);
    expect(pieces[0]).toBe('a'.repeat(9));
  });
});

describe('Slack chat streaming (HTTP mode)', () => {
  it('/morris posts an acknowledgement and streams the article into its thread with startStream / appendStream / stopStream', async () => {
    const h = await harness((f) => (f.chatStreaming = true));
    const topic = 'the 6G hype cycle';
    expect((await h.slash(topic, 'U1', 'CSTREAM')).status).toBe(200);
    const msg = await waitFor(() => finishedIn(h.fake, 'CSTREAM'), 20_000, 'streamed article');
    const ack = h.fake.messages.find((m) => m.channel === 'CSTREAM' && m.ts !== msg.ts)!;
    expect(ack).toMatchObject({ text: `Writing about “${topic}”…` });
    expect(ack.thread_ts).toBeUndefined();
    // In the acknowledgement's thread, the article with its footer, ended by the feedback blocks.
    expect(msg).toMatchObject({ streamed: true, streamStopped: true, thread_ts: ack.ts });
    expect(msg.text).toBe(`${articleFor(topic)}\n\n${FOOTER}`);
    expect(blockTypes(msg)).toEqual(['context', 'context_actions', 'actions']);
    const [start, ...more] = h.fake.callsTo('chat.startStream');
    expect(more).toHaveLength(0);
    expect(start!.body).toMatchObject({ channel: 'CSTREAM', thread_ts: ack.ts, recipient_user_id: 'U1', recipient_team_id: 'T1' });
    const appends = h.fake.callsTo('chat.appendStream');
    expect(appends.length).toBeGreaterThanOrEqual(2);
    expect(h.fake.callsTo('chat.stopStream')).toHaveLength(1);
    // Grown by appends only: every step extends the last, and nothing was edited.
    for (const [a, b] of msg.history.slice(1).map((x, i) => [msg.history[i]!.text, x.text])) expect(b!.startsWith(a!)).toBe(true);
    expect(h.fake.callsTo('chat.update')).toHaveLength(0);
    expect(h.store.prepare('SELECT outcome FROM generations WHERE topic = ?').get(topic)).toEqual({ outcome: 'ok' });
  });

  it('@Morris streams into the mention’s thread, after the acknowledgement there', async () => {
    const h = await harness((f) => (f.chatStreaming = true));
    await h.mention('late trains', 'U2', 'CMENTION', '1700000000.123456');
    const msg = await waitFor(() => finishedIn(h.fake, 'CMENTION'), 20_000, 'streamed mention reply');
    expect(msg).toMatchObject({ streamed: true, thread_ts: '1700000000.123456', text: `${articleFor('late trains')}\n\n${FOOTER}` });
    const ack = h.fake.messages.find((m) => m.channel === 'CMENTION' && !m.streamed)!;
    expect(ack).toMatchObject({ thread_ts: '1700000000.123456', text: 'Writing about “late trains”…' });
  });

  it('Regenerate under a streamed article streams the new take into the same thread', async () => {
    const h = await harness((f) => (f.chatStreaming = true));
    await h.slash('number portability', 'U12', 'CREGEN');
    const first = await waitFor(() => finishedIn(h.fake, 'CREGEN'), 20_000, 'first take');
    expect((await h.click('U13', first, 'morris_regenerate')).status).toBe(200);
    const second = await waitFor(() => h.fake.messages.find((m) => m.channel === 'CREGEN' && m.streamStopped && m.ts !== first.ts), 20_000, 'second take');
    expect(second).toMatchObject({ thread_ts: first.thread_ts, text: `${articleFor('number portability')}\n\n${FOOTER}` });
    expect(h.fake.callsTo('chat.startStream').at(-1)!.body).toMatchObject({ thread_ts: first.thread_ts, recipient_user_id: 'U13', recipient_team_id: 'T1' });
  });

  it('a stream that expires mid-article is finished with chat.update: the final text is complete', async () => {
    // Slower than the stream lives: appends start failing with message_not_in_streaming_state.
    const h = await harness((f) => ((f.chatStreaming = true), (f.streamTtlMs = 120)), () => ({ chunkDelayMs: 25 }));
    const topic = 'slow spectrum auctions';
    await h.slash(topic, 'U3', 'CEXPIRE');
    const msg = await waitFor(() => finishedIn(h.fake, 'CEXPIRE'), 20_000, 'finished article');
    expect(msg.streamed).toBe(true);
    expect(msg.streamStopped).toBeFalsy();
    expect(msg.text).toBe(toSlackMrkdwn(`${articleFor(topic)}\n\n${FOOTER}`));
    expect(blockTypes(msg)).toEqual(['section', 'context', 'context_actions', 'actions']);
    const refused = [...h.fake.callsTo('chat.appendStream'), ...h.fake.callsTo('chat.stopStream')].filter((c) => c.error);
    expect(refused.length).toBeGreaterThanOrEqual(1);
    for (const c of refused) expect(c.error).toBe('message_not_in_streaming_state');
    const updates = h.fake.callsTo('chat.update').filter((c) => c.body.ts === msg.ts);
    expect(updates.length).toBeGreaterThanOrEqual(1);
    expect(updates[0]!.at).toBeGreaterThanOrEqual(refused[0]!.at);
    // No text lost on the way: each text shown (cursor aside) continues the one before.
    const texts = msg.history.map((x) => x.text.replace(/ …$/, ''));
    for (let i = 1; i < texts.length; i++) expect(texts[i]!.length).toBeGreaterThanOrEqual(texts[i - 1]!.length);
    expect(h.fake.messages.filter((m) => m.channel === 'CEXPIRE')).toHaveLength(2);
  });

  it('an append that fails some other way: the stream is stopped and finished with chat.update, text complete', async () => {
    const h = await harness((f) => (f.chatStreaming = true), () => ({ chunkDelayMs: 10 }));
    await h.slash('interconnect fees', 'U14', 'CAPPEND');
    const streamed = await waitFor(() => h.fake.messages.find((m) => m.channel === 'CAPPEND' && m.streamed), 10_000, 'stream start');
    h.fake.appendError = 'internal_error';
    const msg = await waitFor(() => finishedIn(h.fake, 'CAPPEND'), 20_000, 'finished article');
    expect(msg.ts).toBe(streamed.ts);
    expect(msg.streamStopped).toBe(true);
    expect(msg.text).toBe(toSlackMrkdwn(`${articleFor('interconnect fees')}\n\n${FOOTER}`));
    expect(h.fake.callsTo('chat.update').filter((c) => c.body.ts === msg.ts).length).toBeGreaterThanOrEqual(1);
  });

  it('a burst longer than one call allows goes out in several appends; nothing is lost', async () => {
    const text = articleFor('the long view', 4000);
    expect(text.length).toBeGreaterThan(2 * SLACK_STREAM_CALL_MAX_CHARS);
    const h = await harness((f) => (f.chatStreaming = true), () => ({ text, chunkChars: text.length, chunkDelayMs: 1 }));
    await h.slash('the long view', 'U11', 'CBURST');
    const msg = await waitFor(() => finishedIn(h.fake, 'CBURST'), 20_000, 'long article');
    expect(msg.text).toBe(`${text}\n\n${FOOTER}`);
    const sizes = ['chat.startStream', 'chat.appendStream', 'chat.stopStream'].flatMap((m) =>
      h.fake.callsTo(m).map((c) => ((c.body.chunks ?? []) as { text: string }[]).reduce((n, k) => n + k.text.length, String(c.body.markdown_text ?? '').length)),
    );
    expect(Math.max(...sizes)).toBeLessThanOrEqual(SLACK_STREAM_CALL_MAX_CHARS);
  });

  it('output the content filter stops mid-stream: the streamed text is replaced by the refusal', async () => {
    const text = `${articleFor('pirate radio')}\n\nAnd then something forbidden happened.\n\nMore words after it.`;
    const h = await harness((f) => (f.chatStreaming = true), () => ({ text, chunkDelayMs: 6 }));
    await h.slash('pirate radio', 'U10', 'CBLOCK');
    const msg = await waitFor(
      () => h.fake.messages.find((m) => m.channel === 'CBLOCK' && m.streamed && m.text.startsWith('Morris wrote something its content filter')),
      20_000,
      'refusal',
    );
    expect(msg.history.length).toBeGreaterThan(2); // it did stream first
    for (const x of msg.history) expect(x.text).not.toContain('forbidden');
    expect(msg.streamStopped).toBe(true);
    expect(h.fake.callsTo('chat.update').filter((c) => c.body.ts === msg.ts)).toHaveLength(1);
  });

  it('without the streaming methods (unknown_method) the acknowledgement is edited into the article, and later replies skip streaming', async () => {
    const h = await harness(() => undefined);
    await h.slash('fixed wireless', 'U4', 'COLD1');
    const first = await waitFor(() => finishedIn(h.fake, 'COLD1'), 20_000, 'edited article');
    expect(first.thread_ts).toBeUndefined();
    expect(first.text).toBe(toSlackMrkdwn(`${articleFor('fixed wireless')}\n\n${FOOTER}`));
    expect(first.history[0]!.text).toBe('Writing about “fixed wireless”…');
    expect(first.history.filter((x) => x.text.endsWith(' …')).length).toBeGreaterThanOrEqual(2);
    expect(blockTypes(first)).toEqual(['section', 'context', 'context_actions', 'actions']);
    expect(h.fake.messages.filter((m) => m.channel === 'COLD1')).toHaveLength(1);
    await h.slash('copper switch-off', 'U4', 'COLD2');
    const second = await waitFor(() => finishedIn(h.fake, 'COLD2'), 20_000, 'second edited article');
    expect(second.text).toBe(toSlackMrkdwn(`${articleFor('copper switch-off')}\n\n${FOOTER}`));
    expect(h.fake.callsTo('chat.startStream')).toHaveLength(1);
    expect(h.fake.callsTo('chat.startStream')[0]!.error).toBe('unknown_method');
    expect(h.fake.statuses.filter((s) => s.thread_ts === second.ts)).toHaveLength(0);
  });

  it('shows assistant.threads.setStatus in the acknowledgement’s thread while queued', async () => {
    let release!: () => void;
    const hold = new Promise<void>((r) => (release = r));
    const h = await harness(
      (f) => (f.chatStreaming = true),
      (topic) => (topic.includes('first') ? { chunkDelayMs: 6, hold } : { chunkDelayMs: 6 }),
    );
    await h.slash('the first in line', 'U5', 'CQ1');
    await waitFor(() => h.gen.calls.length === 1, 10_000, 'first generation');
    await h.slash('the second in line', 'U6', 'CQ2');
    const ack2 = await waitFor(() => h.fake.messages.find((m) => m.channel === 'CQ2'), 10_000, 'second acknowledgement');
    const queued = await waitFor(() => h.fake.statuses.find((s) => s.thread_ts === ack2.ts && /queued/.test(s.status)), 10_000, 'queued status');
    expect(queued).toMatchObject({ channel_id: 'CQ2', status: 'is queued (position 1)…' });
    expect(queued.loading_messages?.[0]).toMatch(/^Queued: position 1\./);
    release();
    const second = await waitFor(() => finishedIn(h.fake, 'CQ2'), 20_000, 'second article');
    expect(second).toMatchObject({ thread_ts: ack2.ts, text: `${articleFor('the second in line')}\n\n${FOOTER}` });
    // Loading once its turn came, before the first words.
    const later = h.fake.statuses.filter((s) => s.thread_ts === ack2.ts).map((s) => s.status);
    expect(later).toEqual(['is queued (position 1)…', 'is writing…']);
    await waitFor(() => finishedIn(h.fake, 'CQ1'), 20_000, 'first article');
  });

  it('a workspace without the assistant scope: setStatus is refused once, then not asked again; articles still stream', async () => {
    let release!: () => void;
    const hold = new Promise<void>((r) => (release = r));
    const h = await harness(
      (f) => ((f.chatStreaming = true), (f.assistantScope = false)),
      (topic) => (topic.includes('blocker') ? { chunkDelayMs: 6, hold } : { chunkDelayMs: 6 }),
    );
    await h.slash('the blocker', 'U7', 'CS1');
    await waitFor(() => h.gen.calls.length === 1, 10_000, 'first generation');
    await h.slash('waiting one', 'U8', 'CS2');
    await h.slash('waiting two', 'U9', 'CS3');
    await waitFor(() => h.fake.messages.filter((m) => m.channel === 'CS3').length === 1, 10_000, 'third acknowledgement');
    await new Promise((r) => setTimeout(r, 100));
    release();
    for (const c of ['CS1', 'CS2', 'CS3']) expect((await waitFor(() => finishedIn(h.fake, c), 20_000, `article in ${c}`)).streamed).toBe(true);
    expect(h.fake.callsTo('assistant.threads.setStatus')).toHaveLength(1);
    expect(h.fake.statuses).toHaveLength(0);
  });

  it('a reply in the thread of a /morris article revises it there (streamed); Regenerate on the revision redoes the revision', async () => {
    const h = await harness((f) => (f.chatStreaming = true));
    const say = (text: string, user: string, thread_ts: string) => postSigned(h.url, JSON.stringify(messageEvent({ user, text, channel: 'CREV', thread_ts })), { secret: SECRET, contentType: 'application/json' });
    const finished = () => h.fake.messages.filter((m) => m.channel === 'CREV' && blockTypes(m).includes('actions'));
    expect((await h.slash('fibre rollout', 'U1', 'CREV')).status).toBe(200);
    const [first] = await waitFor(() => finished().length === 1 && finished(), 20_000, 'article');
    const thread = first!.thread_ts!;
    const firstId = JSON.stringify(first!.blocks).match(/g-[0-9a-f]{10}/)![0];

    expect((await say('shorter, and more about costs', 'U2', thread)).status).toBe(200);
    const [, revised] = await waitFor(() => finished().length === 2 && finished(), 20_000, 'revision');
    expect(revised).toMatchObject({ thread_ts: thread, streamed: true });
    const revisedId = JSON.stringify(revised!.blocks).match(/g-[0-9a-f]{10}/)![0];
    expect(getGeneration(h.store, revisedId)).toMatchObject({ parentId: firstId, kind: 'revise', instruction: 'shorter, and more about costs', userId: 'U2' });
    const revision = { previousArticle: articleFor('fibre rollout'), instruction: 'shorter, and more about costs' };
    expect(h.gen.calls.at(-1)!.revision).toEqual(revision);

    // Regenerate asks the revision again (same article, same instruction), in the same thread.
    expect((await h.click('U3', revised!, 'morris_regenerate')).status).toBe(200);
    const [, , again] = await waitFor(() => finished().length === 3 && finished(), 20_000, 'regenerated revision');
    const againId = JSON.stringify(again!.blocks).match(/g-[0-9a-f]{10}/)![0];
    expect(again!.thread_ts).toBe(thread);
    expect(getGeneration(h.store, againId)).toMatchObject({ parentId: revisedId, kind: 'regenerate', instruction: 'shorter, and more about costs', userId: 'U3' });
    expect(h.gen.calls.at(-1)!.revision).toEqual(revision);
    expect(generationFamily(h.store, againId).map((g) => g.id)).toEqual([revisedId, againId]);

    // The thread now belongs to the newest article: the next reply revises that one.
    expect((await say('now with a joke', 'U2', thread)).status).toBe(200);
    const latest = await waitFor(() => finished().length === 4 && finished()[3], 20_000, 'second revision');
    const latestId = JSON.stringify(latest.blocks).match(/g-[0-9a-f]{10}/)![0];
    expect(getGeneration(h.store, latestId)).toMatchObject({ parentId: againId, kind: 'revise', instruction: 'now with a joke' });
  });
});
