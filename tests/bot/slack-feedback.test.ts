/**
 * Reader feedback end to end through the real @slack/bolt App (HTTP mode) against the fake Slack:
 * the blocks a finished article ends with, 👍/👎 and Regenerate clicks as signed block_actions,
 * the edit modal (views.open) and its view_submission, and the signature and replay checks on
 * those payloads.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SLACK_INPUT_MAX_CHARS } from '../../src/bot/feedback-ui.ts';
import { attributionLine, toSlackMrkdwn } from '../../src/bot/render.ts';
import { createSlackBot, type SlackBot } from '../../src/bot/slack.ts';
import type { Store } from '../../src/store/db.ts';
import { listFeedback, preferencePairs } from '../../src/store/feedback.ts';
import { getGeneration } from '../../src/store/generations.ts';
import { slackReplayGuard } from '../../src/store/slack-replays.ts';
import { articleFor, FakeGenerator } from './fakes/fake-generator.ts';
import { appMention, blockActions, BOT_USER_ID, FakeSlack, postInteraction, postSigned, slashCommand, viewSubmission, type SlackMessage } from './fakes/slack-server.ts';
import { makeCore, serveSlackEvents, tempStore, waitFor } from './helpers.ts';
import { runMorris } from '../morris-cli.ts';

const SECRET = 'test-signing-secret';
const finished = (m: SlackMessage) => Boolean(m.blocks?.length);

type Block = { type: string; text?: { text: string }; elements?: Record<string, unknown>[] };

describe('Slack feedback (HTTP mode)', () => {
  const fake = new FakeSlack();
  let store: Store;
  let cleanup: () => void;
  let dataDir = '';
  let bot: SlackBot;
  let server: Awaited<ReturnType<typeof serveSlackEvents>>;
  let eventsUrl = '';
  let takes = 0;
  const gen = new FakeGenerator((topic) => {
    if (topic.includes('long read')) return { text: articleFor(topic, 900), chunkChars: 600, chunkDelayMs: 4 };
    // Each take differs, as a sampled model's would.
    if (topic.includes('landline')) return { text: articleFor(`${topic} take ${++takes}`), chunkDelayMs: 4 };
    return { chunkDelayMs: 4 };
  });

  beforeAll(async () => {
    await fake.start();
    ({ store, cleanup, dir: dataDir } = tempStore());
    bot = createSlackBot({
      core: makeCore(store, gen),
      botToken: 'xoxb-test',
      signingSecret: SECRET,
      apiUrl: fake.apiUrl,
      editIntervalMs: 40,
      updatesPerMinute: 60_000,
      retries: 0,
      replayGuard: slackReplayGuard(store),
    });
    await bot.start();
    server = await serveSlackEvents(bot);
    eventsUrl = server.url;
  });

  afterAll(async () => {
    await bot.stop();
    await server.close();
    await fake.stop();
    cleanup();
  });

  async function ask(topic: string, user: string, channel: string): Promise<SlackMessage> {
    const body = new URLSearchParams(slashCommand(fake, { command: '/morris', text: topic, user_id: user, channel_id: channel })).toString();
    expect((await postSigned(eventsUrl, body, { secret: SECRET, contentType: 'application/x-www-form-urlencoded' })).status).toBe(200);
    return waitFor(() => fake.messages.filter((m) => m.channel === channel).find(finished), 20_000, `article in ${channel}`);
  }

  const element = (m: SlackMessage, type: string, actionId?: string) =>
    (m.blocks as Block[]).flatMap((b) => b.elements ?? []).find((e) => e.type === type && (!actionId || e.action_id === actionId))!;
  const generationOf = (m: SlackMessage) => String(element(m, 'button', 'morris_regenerate').value);
  const click = (user: string, message: SlackMessage, action: Record<string, unknown>, value?: string, extra: { timestamp?: number; signature?: string } = {}) =>
    postInteraction(eventsUrl, blockActions(fake, { user, message, action, value }), { secret: SECRET, ...extra });

  it('the article ends with its text in sections, a lineage context block, 👍/👎 feedback buttons and Regenerate / Suggest an edit', async () => {
    const msg = await ask('the fax machine revival', 'U1', 'CBLOCKS');
    const article = articleFor('the fax machine revival');
    expect(msg.text).toBe(toSlackMrkdwn(`${article}\n\n_${attributionLine('Test Columnist')}_`));
    const blocks = msg.blocks as Block[];
    expect(blocks.map((b) => b.type)).toEqual(['section', 'context', 'context_actions', 'actions']);
    expect(blocks[0]!.text!.text).toBe(msg.text);
    expect(blocks[1]!.elements).toEqual([
      { type: 'plain_text', emoji: true, text: 'Columnist: Test Columnist · adapter: a-test-1 · base model: tiny-test · dataset: ds-test-1' },
    ]);
    const g = generationOf(msg);
    expect(element(msg, 'feedback_buttons')).toMatchObject({ action_id: 'morris_rate', positive_button: { value: `up:${g}` }, negative_button: { value: `down:${g}` } });
    expect(blocks[3]!.elements!.map((e) => (e.text as { text: string }).text)).toEqual(['Regenerate', 'Suggest an edit', 'Details']);
    expect(getGeneration(store, g)).toMatchObject({ article, userId: 'U1', outcome: 'ok' });
  });

  it('Details answers privately with the full record, including a regeneration made from it', async () => {
    const msg = await ask('copper switch-off', 'U5', 'CDETAILS');
    const g = generationOf(msg);
    expect((await click('U6', msg, element(msg, 'button', 'morris_regenerate'))).status).toBe(200);
    const second = await waitFor(() => fake.messages.find((m) => m.channel === 'CDETAILS' && m.ts !== msg.ts && m.blocks?.length && generationOf(m) !== g), 20_000, 'regeneration');
    expect((await click('U7', msg, element(msg, 'button', 'morris_details'))).status).toBe(200);
    const answer = await waitFor(() => fake.responses.find((r) => String(r.body.text).startsWith(`Article \`${g}\``)), 10_000, 'details');
    expect(answer.body).toMatchObject({ response_type: 'ephemeral', replace_original: false });
    const text = String(answer.body.text);
    expect(text).toMatch(/Asked by <@U5> on slack/);
    expect(text).toMatch(/Columnist: Test Columnist · adapter: a-test-1/);
    expect(text).toMatch(/Feedback: 0 👍, 0 👎, 0 suggested edits, 1 Regenerate click\n/);
    expect(text).toMatch(new RegExp(`Later versions: \`${generationOf(second)}\` \\(regeneration\\)$`));
  });

  it('👍 from another user is recorded for the clicker and answered privately; a replay is ignored, a forgery refused', async () => {
    const msg = await ask('spectrum auctions', 'U2', 'CRATE');
    const g = generationOf(msg);
    const rate = element(msg, 'feedback_buttons');
    const ts = Math.floor(Date.now() / 1000);
    expect((await click('U3', msg, rate, `up:${g}`, { timestamp: ts })).status).toBe(200);
    const receipt = await waitFor(() => fake.responses.find((r) => String(r.body.text).includes('noted 👍')), 10_000, 'rating receipt');
    expect(receipt.body).toMatchObject({ response_type: 'ephemeral', replace_original: false });
    // A second click is a second signal; the same signed request sent again (same timestamp,
    // body and signature) is acknowledged and not counted.
    const replay = blockActions(fake, { user: 'U3', message: msg, action: rate, value: `up:${g}` });
    const first = await postInteraction(eventsUrl, replay, { secret: SECRET, timestamp: ts });
    const again = await postInteraction(eventsUrl, replay, { secret: SECRET, timestamp: ts });
    expect([first.status, again.status]).toEqual([200, 200]);
    const forged = await click('U4', msg, rate, `down:${g}`, { signature: 'v0=deadbeef' });
    expect(forged.status).toBe(401);
    await new Promise((r) => setTimeout(r, 200));
    expect(listFeedback(store, g).map((r) => [r.kind, r.value, r.userId, r.platform, r.adapterId])).toEqual([
      ['rating', 1, 'U3', 'slack', 'a-test-1'],
      ['rating', 1, 'U3', 'slack', 'a-test-1'],
    ]);
  });

  it('Suggest an edit opens a modal (views.open) holding the article in multiline inputs; its submission is a preference pair', async () => {
    const msg = await ask('a long read on roaming', 'U5', 'CEDIT');
    const g = generationOf(msg);
    const article = articleFor('a long read on roaming', 900);
    expect(article.length).toBeGreaterThan(SLACK_INPUT_MAX_CHARS);
    expect((await click('U6', msg, element(msg, 'button', 'morris_edit'))).status).toBe(200);
    const opened = await waitFor(() => fake.views.at(-1), 10_000, 'views.open');
    expect(opened.trigger_id).toMatch(/^trig-/);
    expect(opened.view).toMatchObject({ type: 'modal', private_metadata: g });
    const inputs = (opened.view.blocks as { block_id: string; element: { type: string; multiline: boolean; initial_value: string } }[]);
    expect(inputs.length).toBeGreaterThanOrEqual(2);
    for (const b of inputs) {
      expect(b.element).toMatchObject({ type: 'plain_text_input', multiline: true });
      expect(b.element.initial_value.length).toBeLessThanOrEqual(SLACK_INPUT_MAX_CHARS);
    }
    expect(inputs.map((b) => b.element.initial_value).join('\n\n').split(/\s+/)).toEqual(article.split(/\s+/));
    const values = Object.fromEntries(inputs.map((b, n) => [b.block_id, n === 0 ? `Sharper headline\n\n${b.element.initial_value}` : b.element.initial_value]));
    const submitted = await postInteraction(eventsUrl, viewSubmission({ user: 'U6', view: opened.view, values }), { secret: SECRET });
    expect(submitted.status).toBe(200);
    expect(JSON.parse(submitted.text)).toMatchObject({ response_action: 'update', view: { type: 'modal' } });
    const pair = preferencePairs(store).find((p) => p.rejectedId === g)!;
    expect(pair).toMatchObject({ source: 'edit', rejected: article, topic: 'a long read on roaming' });
    expect(pair.chosen.startsWith('Sharper headline\n\n')).toBe(true);
    expect(listFeedback(store, g)).toEqual([expect.objectContaining({ kind: 'edit', userId: 'U6', platform: 'slack' })]);
  });

  it('Regenerate posts a new, linked article in the same channel as the clicker; 👍 on it and 👎 on the first make a pair', async () => {
    const msg = await ask('the death of the landline', 'U7', 'CREGEN');
    const first = generationOf(msg);
    const calls = gen.calls.length;
    expect((await click('U8', msg, element(msg, 'button', 'morris_regenerate'))).status).toBe(200);
    const second = await waitFor(() => fake.messages.filter((m) => m.channel === 'CREGEN' && finished(m) && m.ts !== msg.ts)[0], 20_000, 'regenerated article');
    expect(second.history.length).toBeGreaterThan(1); // streamed like any article
    const g2 = generationOf(second);
    expect(gen.calls.length).toBe(calls + 1);
    expect(getGeneration(store, g2)).toMatchObject({ parentId: first, userId: 'U8', channelId: 'CREGEN', outcome: 'ok' });
    const receipts = fake.responses.length;
    await click('U7', msg, element(msg, 'feedback_buttons'), `down:${first}`);
    await click('U7', second, element(second, 'feedback_buttons'), `up:${g2}`);
    const pair = await waitFor(() => preferencePairs(store).find((p) => p.source === 'rating' && p.rejectedId === first), 10_000, 'rating pair');
    expect(pair.chosenId).toBe(g2);
    await waitFor(() => fake.responses.length >= receipts + 2, 10_000, 'both receipts');
  });

  it('Regenerate on an article in a thread answers in that thread', async () => {
    const event = appMention({ user: 'U9', text: `<@${BOT_USER_ID}> the landline in a thread`, channel: 'CTHREAD', ts: '1700000009.000100' });
    expect((await postSigned(eventsUrl, JSON.stringify(event), { secret: SECRET, contentType: 'application/json' })).status).toBe(200);
    const msg = await waitFor(() => fake.messages.find((m) => m.channel === 'CTHREAD' && finished(m)), 20_000, 'threaded article');
    expect(msg.thread_ts).toBe('1700000009.000100');
    await click('U10', msg, element(msg, 'button', 'morris_regenerate'));
    const again = await waitFor(() => fake.messages.find((m) => m.channel === 'CTHREAD' && finished(m) && m.ts !== msg.ts), 20_000, 'regenerated in thread');
    expect(again.thread_ts).toBe('1700000009.000100');
    expect(getGeneration(store, generationOf(again))).toMatchObject({ parentId: generationOf(msg), userId: 'U10' });
  });

  it('after those clicks, `morris feedback export` prints the pairs they made, and an import into a fresh data dir gives the same pairs', async () => {
    const morris = async (args: string[], dir: string) => {
      const r = await runMorris(args, { env: { ...process.env, LOG_LEVEL: 'warn', MORRIS_DATA_DIR: dir } });
      expect(r.code, r.stderr).toBe(0);
      return r.stdout;
    };
    const exported = await morris(['feedback', 'export'], dataDir);
    const lines = exported.trimEnd().split('\n').map((l) => JSON.parse(l) as { chosen: { content: string }[]; rejected: { content: string }[]; morris: { source: string } });
    // The edit from the modal and the 👍/👎 across a regeneration, as the store derives them.
    expect(lines.map((l) => l.morris.source).sort()).toEqual(preferencePairs(store).map((p) => p.source).sort());
    expect(lines.find((l) => l.morris.source === 'edit')!.chosen[0]!.content.startsWith('Sharper headline')).toBe(true);
    expect(lines.find((l) => l.morris.source === 'rating')!.rejected[0]!.content).toBe(articleFor('the death of the landline take 1'));
    const stats = JSON.parse(await morris(['feedback', 'stats', '--json'], dataDir));
    expect(stats.pairs).toMatchObject({ edit: 1, rating: 1 });

    const fresh = mkdtempSync(path.join(os.tmpdir(), 'morris-import-'));
    try {
      const file = path.join(fresh, 'pairs.jsonl');
      writeFileSync(file, exported);
      await morris(['feedback', 'import', file], fresh);
      expect(JSON.parse(await morris(['feedback', 'stats', '--json'], fresh)).pairs).toEqual(stats.pairs);
    } finally {
      rmSync(fresh, { recursive: true, force: true });
    }
  }, 120_000);
});

describe('Slack feedback over Socket Mode', () => {
  const fake = new FakeSlack();
  let store: Store;
  let cleanup: () => void;
  let bot: SlackBot;

  beforeAll(async () => {
    await fake.start();
    ({ store, cleanup } = tempStore());
    bot = createSlackBot({ core: makeCore(store, new FakeGenerator(() => ({ chunkDelayMs: 3 }))), botToken: 'xoxb-test', appToken: 'xapp-test', apiUrl: fake.apiUrl, editIntervalMs: 40, updatesPerMinute: 60_000, retries: 0 });
    await bot.start();
    await waitFor(() => fake.socketConnected, 20_000, 'socket connection');
  });

  afterAll(async () => {
    await bot.stop();
    await fake.stop();
    cleanup();
  });

  it('clicks and the edit form arrive as interactive envelopes; the form is answered in the ack', async () => {
    await fake.envelope('slash_commands', slashCommand(fake, { command: '/morris', text: 'socket feedback', user_id: 'U1', channel_id: 'CSOCK' }));
    const msg = await waitFor(() => fake.messages.find((m) => m.channel === 'CSOCK' && finished(m)), 20_000, 'socket article');
    const rate = (msg.blocks as Block[]).flatMap((b) => b.elements ?? []).find((e) => e.type === 'feedback_buttons')!;
    const g = String((rate.negative_button as { value: string }).value).slice('down:'.length);
    await fake.envelope('interactive', blockActions(fake, { user: 'U2', message: msg, action: rate, value: `down:${g}` }));
    await waitFor(() => listFeedback(store, g).length === 1, 10_000, 'socket rating');
    const edit = (msg.blocks as Block[]).flatMap((b) => b.elements ?? []).find((e) => e.action_id === 'morris_edit')!;
    await fake.envelope('interactive', blockActions(fake, { user: 'U2', message: msg, action: edit }));
    const opened = await waitFor(() => fake.views.at(-1), 10_000, 'views.open');
    const [input] = opened.view.blocks as { block_id: string; element: { initial_value: string } }[];
    const ack = await fake.envelope('interactive', viewSubmission({ user: 'U2', view: opened.view, values: { [input!.block_id]: `${input!.element.initial_value}\n\nA closing line.` } }));
    expect(ack).toMatchObject({ response_action: 'update' });
    expect(listFeedback(store, g).map((r) => [r.kind, r.userId])).toEqual([
      ['rating', 'U2'],
      ['edit', 'U2'],
    ]);
    expect(preferencePairs(store)[0]).toMatchObject({ source: 'edit', rejectedId: g });
  });
});
