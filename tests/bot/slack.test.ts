/**
 * End to end through the real @slack/bolt App against the local fake Slack: HTTP mode (signed
 * requests to the receiver mounted in a plain node:http server, as `morris serve` does) and
 * Socket Mode (envelopes over a websocket).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MorrisError } from '../../src/errors.ts';
import type { BotCore } from '../../src/bot/core.ts';
import { attributionLine, toSlackMrkdwn } from '../../src/bot/render.ts';
import { createSlackBot, type SlackBot } from '../../src/bot/slack.ts';
import type { Store } from '../../src/store/db.ts';
import { articleFor, FakeGenerator } from './fakes/fake-generator.ts';
import { appMention, BOT_USER_ID, FakeSlack, postSigned, slashCommand, type SlackMessage } from './fakes/slack-server.ts';
import { makeCore, recordingAdmin, serveSlackEvents, tempStore, waitFor } from './helpers.ts';

const SECRET = 'test-signing-secret';
const EDIT_MS = 60;
/** The workspace-wide chat.update spacing under test (the real one is 60 s / 48). */
const WORKSPACE_GAP_MS = 40;
const ATTRIBUTION = attributionLine('Test Columnist');

function behaviour(topic: string) {
  if (topic.includes('slowpoke')) return { chunkDelayMs: 30, timeoutMs: 150 };
  if (topic.includes('broken model')) return { failOnStart: new MorrisError('MODEL_MISSING', 'No model at /srv/models/x.') };
  if (topic.includes('pinger')) return { text: 'Big news @everyone and @here, also <!channel> and <@U999>.' };
  // Slow enough that several throttled edits happen even on a loaded machine; held until the
  // test has its ack, which proves the ack never waits for generation.
  if (topic.includes('hype cycle')) return { chunkDelayMs: 20, hold: hypeHold.promise };
  return { chunkDelayMs: 8 };
}

const hypeHold = (() => {
  let release!: () => void;
  const promise = new Promise<void>((r) => (release = r));
  return { promise, release };
})();

const finished = (m: SlackMessage) => m.text.includes('not written by them') || m.text.startsWith('Sorry');

describe('Slack over HTTP (Events API + slash commands)', () => {
  const fake = new FakeSlack();
  let store: Store;
  let cleanup: () => void;
  let bot: SlackBot;
  let core: BotCore;
  let gen: FakeGenerator;
  let server: Awaited<ReturnType<typeof serveSlackEvents>>;
  let eventsUrl = '';
  const admin = recordingAdmin();

  beforeAll(async () => {
    await fake.start();
    ({ store, cleanup } = tempStore());
    gen = new FakeGenerator(behaviour, { slots: 4 }); // four batch slots, as a batching model serves
    core = makeCore(store, gen, {}, admin);
    bot = createSlackBot({
      core,
      botToken: 'xoxb-test',
      signingSecret: SECRET,
      apiUrl: fake.apiUrl,
      editIntervalMs: EDIT_MS,
      updatesPerMinute: 60_000 / WORKSPACE_GAP_MS,
      adminAckWaitMs: 150,
      retries: 0,
    });
    await bot.start();
    // What the serve process does: route POST /slack/events to the bot's listener.
    server = await serveSlackEvents(bot);
    eventsUrl = server.url;
  });

  afterAll(async () => {
    await bot.stop();
    await server.close();
    await fake.stop();
    cleanup();
  });

  const slash = (fields: { command?: string; text: string; user_id: string; channel_id?: string }, extra: { timestamp?: number; signature?: string } = {}) => {
    const body = new URLSearchParams(slashCommand(fake, { command: '/morris', ...fields })).toString();
    return postSigned(eventsUrl, body, { secret: SECRET, contentType: 'application/x-www-form-urlencoded', ...extra });
  };

  it('/morris acks at once, posts to the channel, streams edits at the throttled rate, ends with the full article', async () => {
    const t0 = Date.now();
    const ack = await slash({ text: 'the 6G hype cycle', user_id: 'U1', channel_id: 'CSTREAM' });
    const ackMs = Date.now() - t0;
    expect(ack.status).toBe(200);
    expect(JSON.parse(ack.text)).toMatchObject({ response_type: 'ephemeral', text: expect.stringMatching(/^Writing about “the 6G hype cycle”…$/) });
    // The ack (a 200 at all: Bolt answers 404 to a handler that has not acked within 3 s) came
    // while the generator was still held before its first word: it never waits for generation.
    expect(fake.messages.some((m) => m.channel === 'CSTREAM' && m.history.some((h) => h.text.endsWith(' …')))).toBe(false);
    hypeHold.release();
    const msg = await waitFor(() => fake.messages.find((m) => m.channel === 'CSTREAM' && finished(m)), 20_000, 'final message');
    const expected = toSlackMrkdwn(`${articleFor('the 6G hype cycle')}\n\n_${ATTRIBUTION}_`);
    expect(msg.text).toBe(expected);
    expect(msg.thread_ts).toBeUndefined();
    // Streamed: several intermediate edits with growing text before the final one.
    const partials = msg.history.filter((h) => h.text.endsWith(' …'));
    expect(partials.length).toBeGreaterThanOrEqual(2);
    for (const [a, b] of partials.slice(1).map((h, i) => [partials[i]!.text, h.text])) expect(b.length).toBeGreaterThanOrEqual(a!.length);
    const gaps = msg.history.slice(1).map((h, i) => h.at - msg.history[i]!.at);
    for (const g of gaps) expect(g).toBeGreaterThanOrEqual(EDIT_MS - 15);
    console.log(`[slack] ack ${ackMs} ms; ${msg.history.length - 1} edits; min gap ${Math.min(...gaps)} ms`);
    const row = store.prepare("SELECT outcome, user_id, channel_id FROM generations WHERE topic = 'the 6G hype cycle'").get();
    expect(row).toEqual({ outcome: 'ok', user_id: 'U1', channel_id: 'CSTREAM' });
  });

  it('@Morris mention answers in a thread', async () => {
    const event = appMention({ user: 'U2', text: `<@${BOT_USER_ID}> late trains`, channel: 'CMENTION', ts: '1700000000.123456' });
    const res = await postSigned(eventsUrl, JSON.stringify(event), { secret: SECRET, contentType: 'application/json' });
    expect(res.status).toBe(200);
    const msg = await waitFor(() => fake.messages.find((m) => m.channel === 'CMENTION' && finished(m)), 20_000, 'threaded reply');
    expect(msg.thread_ts).toBe('1700000000.123456');
    expect(msg.text.startsWith(toSlackMrkdwn(articleFor('late trains')))).toBe(true);
    // Slack redelivers the same event (same event_id) when unsure: answered once only.
    const again = await postSigned(eventsUrl, JSON.stringify(event), { secret: SECRET, contentType: 'application/json' });
    expect(again.status).toBe(200);
    await new Promise((r) => setTimeout(r, 200));
    expect(fake.messages.filter((m) => m.channel === 'CMENTION')).toHaveLength(1);
  });

  it('rejects bad and stale signatures with 401 and generates nothing', async () => {
    const before = gen.calls.length;
    const posted = fake.messages.length;
    const bad = await slash({ text: 'sneaky', user_id: 'U3' }, { signature: 'v0=deadbeef' });
    const stale = await slash({ text: 'sneaky', user_id: 'U3' }, { timestamp: Math.floor(Date.now() / 1000) - 6 * 60 });
    expect(bad.status).toBe(401);
    expect(stale.status).toBe(401);
    await new Promise((r) => setTimeout(r, 100));
    expect(gen.calls.length).toBe(before);
    expect(fake.messages.length).toBe(posted);
    expect(store.prepare("SELECT count(*) AS n FROM generations WHERE topic = 'sneaky'").get()).toEqual({ n: 0 });
  });

  it('/morris-admin from a non-admin is refused and audited; an admin gets the result', async () => {
    const refused = await slash({ command: '/morris-admin', text: 'retrain', user_id: 'UNOTADMIN' });
    expect(JSON.parse(refused.text).text).toMatch(/admins only/);
    const ok = await slash({ command: '/morris-admin', text: 'retrain', user_id: 'UADMIN' });
    expect(JSON.parse(ok.text).text).toContain('retrain ok');
    expect(admin.calls).toEqual(['retrain']);
    expect(store.prepare("SELECT user_id, allowed FROM audit_log WHERE command = 'retrain' ORDER BY id").all()).toEqual([
      { user_id: 'UNOTADMIN', allowed: 0 },
      { user_id: 'UADMIN', allowed: 1 },
    ]);
    // A slow action: acked at once with a note, the result follows through response_url.
    admin.status = async () => {
      await new Promise((r) => setTimeout(r, 400));
      return 'all quiet';
    };
    const slow = await slash({ command: '/morris-admin', text: 'status', user_id: 'UADMIN' });
    expect(JSON.parse(slow.text).text).toBe('Working on it…');
    const later = await waitFor(() => fake.responses.find((r) => String(r.body.text).includes('all quiet')), 20_000, 'delayed admin result');
    expect(later.body.response_type).toBe('ephemeral');
  });

  it('10 users at once: all answered in their own channel, queue positions count batch slots, nothing swapped', async () => {
    const users = Array.from({ length: 10 }, (_, i) => ({ user: `UQ${i}`, channel: `CQ${i}`, topic: `crowd topic number ${i}` }));
    const acks = await Promise.all(users.map((u) => slash({ text: u.topic, user_id: u.user, channel_id: u.channel })));
    for (const a of acks) expect(a.status).toBe(200);
    const finals = await waitFor(
      () => {
        const done = users.map((u) => fake.messages.find((m) => m.channel === u.channel && finished(m)));
        return done.every(Boolean) ? (done as SlackMessage[]) : null;
      },
      20_000,
      'all 10 answers',
    );
    finals.forEach((m, i) => {
      expect(m.text.startsWith(toSlackMrkdwn(articleFor(users[i]!.topic)))).toBe(true);
      expect(m.history.every((h) => !h.text.includes('crowd topic number') || h.text.includes(users[i]!.topic))).toBe(true);
    });
    const positions = finals.flatMap((m) => m.history.map((h) => /Queued: position (\d+)/.exec(h.text)?.[1]).filter(Boolean).map(Number));
    // Ten at once with four writing: at most six wait for a slot (one slot would show up to 9).
    expect(Math.max(...positions)).toBeGreaterThanOrEqual(5);
    expect(Math.max(...positions)).toBeLessThanOrEqual(6);
    // All ten streams together keep chat.update within the workspace budget.
    const updates = fake.callsTo('chat.update').filter((c) => String(c.body.channel).startsWith('CQ'));
    // Measured over windows of 10 calls with 15% slack: single arrival gaps jitter on a loaded
    // machine, while a missing limiter would put 10 calls within a few ms.
    const windows = updates.slice(10).map((c, i) => c.at - updates[i]!.at);
    expect(updates.length).toBeGreaterThan(20);
    expect(Math.min(...windows)).toBeGreaterThanOrEqual(10 * WORKSPACE_GAP_MS * 0.85);
    console.log(`[slack] 10 users: ${updates.length} chat.update calls, shortest 10-call window ${Math.min(...windows)} ms (budget ${10 * WORKSPACE_GAP_MS} ms)`);
    const rows = store.prepare("SELECT user_id, channel_id, outcome FROM generations WHERE topic LIKE 'crowd topic number %'").all() as {
      user_id: string;
      channel_id: string;
      outcome: string;
    }[];
    expect(rows).toHaveLength(10);
    for (const r of rows) expect(r).toMatchObject({ outcome: 'ok', channel_id: `CQ${r.user_id.slice(2)}` });
  });

  it('bad input: empty topic → usage; 50 kB topic → polite refusal; injected markup is shown inert', async () => {
    const empty = await slash({ text: '   ', user_id: 'U5' });
    expect(JSON.parse(empty.text).text).toMatch(/Tell me what to write about/);
    const huge = await slash({ text: 'spam '.repeat(10_000), user_id: 'U5' });
    expect(huge.status).toBe(200);
    expect(JSON.parse(huge.text).text).toMatch(/characters; please keep it under 300/);
    const tricky = await slash({ text: '*ünïcödé* <!channel> `x` 😀 [link](http://evil.test)', user_id: 'U5', channel_id: 'CINJ' });
    const ackText = JSON.parse(tricky.text).text as string;
    expect(ackText).not.toContain('<!channel>');
    expect(ackText).toContain('ünïcödé');
    const msg = await waitFor(() => fake.messages.find((m) => m.channel === 'CINJ' && finished(m)), 20_000, 'injection reply');
    for (const h of msg.history) expect(h.text).not.toContain('<!channel>');
  });

  it('generated @everyone / <!channel> / <@U…> never reach Slack as live mentions', async () => {
    await slash({ text: 'pinger', user_id: 'U6', channel_id: 'CPING' });
    const msg = await waitFor(() => fake.messages.find((m) => m.channel === 'CPING' && finished(m)), 20_000, 'pinger reply');
    for (const h of msg.history) {
      expect(h.text).not.toMatch(/<!channel>|<@U999>|@everyone|@here/);
    }
    expect(msg.text.replaceAll('\u200D', '')).toContain('Big news @everyone and @here');
  });

  it('a timed-out generation posts its partial text marked as cut', async () => {
    await slash({ text: 'slowpoke', user_id: 'U7', channel_id: 'CSLOW' });
    const msg = await waitFor(() => fake.messages.find((m) => m.channel === 'CSLOW' && finished(m)), 20_000, 'cut reply');
    expect(msg.text).toMatch(/^Headline \[#/);
    expect(msg.text).toContain('cut short: the generation hit its time limit');
    expect(msg.text.length).toBeLessThan(articleFor('slowpoke').length);
  });

  it('a model that fails to load gives a short message with a reference; the bot keeps answering', async () => {
    await slash({ text: 'broken model please', user_id: 'U8', channel_id: 'CFAIL' });
    const msg = await waitFor(() => fake.messages.find((m) => m.channel === 'CFAIL' && finished(m)), 20_000, 'failure reply');
    const ref = /ref `(g-[0-9a-f]+)`/.exec(msg.text)?.[1];
    expect(msg.text).toMatch(/^Sorry, Morris couldn't write that: the model failed to load\./);
    expect(ref).toBeDefined();
    expect(store.prepare('SELECT outcome FROM generations WHERE id = ?').get(ref)).toEqual({ outcome: 'failed' });
    await slash({ text: 'recovery topic', user_id: 'U8', channel_id: 'CFAIL2' });
    await waitFor(() => fake.messages.find((m) => m.channel === 'CFAIL2' && m.text.includes('not written by them')), 20_000, 'recovery');
  });

  it('a channel the bot is not in gets an ephemeral hint via response_url', async () => {
    fake.closedChannels.add('CCLOSED');
    await slash({ text: 'locked out', user_id: 'U9', channel_id: 'CCLOSED' });
    const r = await waitFor(() => fake.responses.find((x) => String(x.body.text).includes('/invite @Morris')), 20_000, 'invite hint');
    expect(r.body.response_type).toBe('ephemeral');
    // One failed post, then the generation stops and is recorded as cancelled.
    expect(fake.callsTo('chat.postMessage').filter((c) => c.body.channel === 'CCLOSED')).toHaveLength(1);
    await waitFor(() => (store.prepare("SELECT outcome FROM generations WHERE topic = 'locked out'").get() as { outcome: string }).outcome === 'cancelled', 20_000, 'cancelled row');
  });
});

describe('Slack over Socket Mode', () => {
  const fake = new FakeSlack();
  let cleanup: () => void;
  let bot: SlackBot;

  beforeAll(async () => {
    await fake.start();
    const t = tempStore();
    cleanup = t.cleanup;
    const core = makeCore(t.store, new FakeGenerator(() => ({ chunkDelayMs: 5 })));
    bot = createSlackBot({ core, botToken: 'xoxb-test', appToken: 'xapp-test', apiUrl: fake.apiUrl, editIntervalMs: EDIT_MS, updatesPerMinute: 6000, retries: 0 });
    await bot.start();
    await waitFor(() => fake.socketConnected, 20_000, 'socket connection');
  });

  afterAll(async () => {
    await bot.stop();
    await fake.stop();
    cleanup();
  });

  it('slash command envelope → ack payload → streamed message; mention envelope → threaded reply', async () => {
    const ack = await fake.envelope('slash_commands', slashCommand(fake, { command: '/morris', text: 'socket topic', user_id: 'U1', channel_id: 'CS' }));
    expect(ack).toMatchObject({ text: 'Writing about “socket topic”…' });
    const msg = await waitFor(() => fake.messages.find((m) => m.channel === 'CS' && finished(m)), 20_000, 'socket reply');
    expect(msg.text.startsWith(toSlackMrkdwn(articleFor('socket topic')))).toBe(true);
    await fake.envelope('events_api', appMention({ user: 'U2', text: `<@${BOT_USER_ID}> socket mention`, channel: 'CSM', ts: '1700000001.000200' }));
    const reply = await waitFor(() => fake.messages.find((m) => m.channel === 'CSM' && finished(m)), 20_000, 'socket mention reply');
    expect(reply.thread_ts).toBe('1700000001.000200');
    expect(reply.text.startsWith(toSlackMrkdwn(articleFor('socket mention')))).toBe(true);
  });
});
