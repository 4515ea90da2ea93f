/**
 * A busy channel on the real batched engine: Slack slash commands (real Bolt, HTTP mode, fake
 * Slack) from several people at once reach the GenerationService on the tiny generated model with
 * MORRIS_MAX_BATCH=2. Each person gets exactly the article that topic gets alone (greedy), two are
 * written at a time, and the queue positions people see count batch slots.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSlackBot, type SlackBot } from '../../src/bot/slack.ts';
import { loadConfig } from '../../src/config.ts';
import { createGenerationService } from '../../src/model/serving/create.ts';
import type { GenerationService } from '../../src/model/serving/generation-service.ts';
import { initTinyModel } from '../../src/model/tiny/index.ts';
import { generatorFromConfig } from '../../src/serve/generator-adapters.ts';
import { openStore, type Store } from '../../src/store/db.ts';
import { FakeSlack, postSigned, slashCommand, type SlackMessage } from './fakes/slack-server.ts';
import { makeCore, serveSlackEvents, waitFor } from './helpers.ts';

const SECRET = 'batch-engine-secret';
const finished = (m: SlackMessage) => /not written by them_$|^Sorry/.test(m.text);

describe('a busy channel on the real batched engine (tiny model, two slots)', () => {
  const fake = new FakeSlack();
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-bot-batch-'));
  let store: Store;
  let service: GenerationService;
  let bot: SlackBot;
  let server: Awaited<ReturnType<typeof serveSlackEvents>>;
  let eventsUrl = '';

  beforeAll(async () => {
    const modelDir = path.join(root, 'tiny');
    initTinyModel(modelDir, { seed: 8 });
    const config = loadConfig({
      MORRIS_DATA_DIR: path.join(root, 'data'),
      MORRIS_DEVICE: 'cpu',
      MORRIS_THREADS: '1',
      MORRIS_MAX_NEW_TOKENS: '200', // long enough that five arrivals overlap even on a loaded machine
      MORRIS_TEMPERATURE: '0',
      MORRIS_MAX_BATCH: '2',
      MORRIS_IDLE_UNLOAD_S: '0',
      MORRIS_BACKEND: 'local',
    });
    store = openStore(config.dbPath);
    service = createGenerationService(config, { baseModel: modelDir });
    const core = makeCore(store, generatorFromConfig(config, { service, store }), { columnist: 'Test Columnist', userRateLimitPerMin: 100 });
    await fake.start();
    bot = createSlackBot({ core, botToken: 'xoxb-t', signingSecret: SECRET, apiUrl: fake.apiUrl, editIntervalMs: 20, updatesPerMinute: 60_000, retries: 0 });
    await bot.start();
    server = await serveSlackEvents(bot);
    eventsUrl = server.url;
  });

  afterAll(async () => {
    await bot?.stop();
    await server?.close();
    await fake.stop();
    await service?.close();
    store?.close();
    fs.rmSync(root, { recursive: true, force: true });
  });

  const ask = (topic: string, user: string, channel: string) =>
    postSigned(eventsUrl, new URLSearchParams(slashCommand(fake, { command: '/morris', text: topic, user_id: user, channel_id: channel })).toString(), {
      secret: SECRET,
      contentType: 'application/x-www-form-urlencoded',
    });
  const answerIn = (channel: string) => waitFor(() => fake.messages.find((m) => m.channel === channel && finished(m)), 60_000, `answer in ${channel}`);

  it('five people at once: each gets the article its topic gets alone, two written at a time, positions count slots', async () => {
    const topics = ['rural broadband', 'open RAN', 'spectrum auctions', 'the metaverse', 'satellite phones'];
    // Alone, one after another (the first also loads the model).
    const alone: string[] = [];
    for (const [i, topic] of topics.entries()) {
      await ask(topic, `UA${i}`, `CALONE${i}`);
      alone.push((await answerIn(`CALONE${i}`)).text);
    }
    expect(new Set(alone).size).toBeGreaterThanOrEqual(4); // distinct enough that a swapped answer shows

    let together = 0;
    const poll = setInterval(() => (together = Math.max(together, service.status().runningCount)), 2);
    const acks = await Promise.all(topics.map((topic, i) => ask(topic, `UB${i}`, `CBUSY${i}`)));
    for (const a of acks) expect(a.status).toBe(200);
    const answers = await Promise.all(topics.map((_, i) => answerIn(`CBUSY${i}`)));
    clearInterval(poll);
    answers.forEach((m, i) => expect(m.text, topics[i]).toBe(alone[i]));
    // Two slots on the native kernel; without it (no C compiler at install) ONNX Runtime's steps
    // serve one at a time, and the line says so.
    const slots = service.status().decodeKernel?.startsWith('native') ? 2 : 1;
    expect(service.status().maxBatch).toBe(slots);
    expect(together).toBe(slots);
    // The rest waited for a slot: the longest line anyone saw was 5 - slots.
    const positions = answers.flatMap((m) => m.history.map((h) => /Queued: position (\d+)/.exec(h.text)?.[1]).filter(Boolean).map(Number));
    expect(Math.max(...positions)).toBe(topics.length - slots);
  });
});
