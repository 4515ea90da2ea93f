/**
 * One path through the real in-process engine: the bots' TextGenerator adapter over the real
 * GenerationService on the tiny generated model, driven by a real Slack slash command (Bolt,
 * HTTP mode, fake Slack), plus a service whose model is missing (clear message, bot stays up).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { generatorFromConfig } from '../../src/serve/generator-adapters.ts';
import { createSlackBot, type SlackBot } from '../../src/bot/slack.ts';
import { createGenerationService } from '../../src/model/serving/create.ts';
import type { GenerationService } from '../../src/model/serving/generation-service.ts';
import { initTinyModel } from '../../src/model/tiny/index.ts';
import { openStore, type Store } from '../../src/store/db.ts';
import { FakeSlack, postSigned, slashCommand } from './fakes/slack-server.ts';
import { collect, makeCore, serveSlackEvents, waitFor } from './helpers.ts';

const SECRET = 'real-engine-secret';

describe('bots over the real GenerationService (tiny model)', () => {
  const fake = new FakeSlack();
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-bot-engine-'));
  const modelDir = path.join(root, 'tiny');
  let store: Store;
  let service: GenerationService;
  let missing: GenerationService;
  let bot: SlackBot;
  let server: Awaited<ReturnType<typeof serveSlackEvents>>;
  let eventsUrl = '';

  beforeAll(async () => {
    initTinyModel(modelDir, { seed: 7 });
    const config = loadConfig({
      MORRIS_DATA_DIR: path.join(root, 'data'),
      MORRIS_DEVICE: 'cpu',
      MORRIS_THREADS: '1',
      MORRIS_MAX_NEW_TOKENS: '24',
      MORRIS_IDLE_UNLOAD_S: '0',
      MORRIS_BACKEND: 'local',
    });
    store = openStore(config.dbPath);
    service = createGenerationService(config, { baseModel: modelDir });
    missing = createGenerationService(config, { baseModel: path.join(root, 'no-such-model') });
    const core = makeCore(store, generatorFromConfig(config, { service, store }), { columnist: 'Test Columnist' });
    await fake.start();
    bot = createSlackBot({ core, botToken: 'xoxb-t', signingSecret: SECRET, apiUrl: fake.apiUrl, editIntervalMs: 50, updatesPerMinute: 6000, retries: 0 });
    await bot.start();
    server = await serveSlackEvents(bot);
    eventsUrl = server.url;
  });

  afterAll(async () => {
    await bot?.stop();
    await server?.close();
    await fake.stop();
    await service?.close();
    await missing?.close();
    store?.close();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('/morris → real model text streamed into Slack, recorded with base model and timings', async () => {
    const t0 = Date.now();
    const body = new URLSearchParams(slashCommand(fake, { command: '/morris', text: '--short rural broadband', user_id: 'U1', channel_id: 'CREAL' })).toString();
    const ack = await postSigned(eventsUrl, body, { secret: SECRET, contentType: 'application/x-www-form-urlencoded' });
    expect(JSON.parse(ack.text).text).toBe('Writing about “rural broadband”…');
    const msg = await waitFor(() => fake.messages.find((m) => m.channel === 'CREAL' && /not written by them|^Sorry/.test(m.text)), 60_000, 'real reply');
    const totalMs = Date.now() - t0;
    expect(msg.text).toMatch(/AI-generated in the style of Test Columnist — not written by them_$/);
    const row = store.prepare("SELECT * FROM generations WHERE topic = 'rural broadband'").get() as Record<string, unknown>;
    expect(row).toMatchObject({ outcome: 'ok', user_id: 'U1', base_model: modelDir });
    expect(row.n_chars as number).toBeGreaterThan(0);
    // The model's own words come first (not a placeholder or an error).
    expect(msg.text.startsWith('Writing about')).toBe(false);
    expect(msg.text.split('\n\n_AI-generated')[0]!.trim().length).toBeGreaterThan(0);
    console.log(`[real engine] first article end to end ${totalMs} ms (ttft ${row.ttft_ms} ms incl. model load, ${row.n_chars} chars)`);
  });

  it('a missing model gives the person a short message with a reference and the bot stays up', async () => {
    const core = makeCore(store, generatorFromConfig(loadConfig({ MORRIS_DATA_DIR: path.join(root, 'data') }), { service: missing, store }));
    const p = await core.prepare({ requester: { platform: 'discord', userId: 'u9' }, text: 'anything at all' });
    if (!p.ok) throw new Error('expected ok');
    const last = (await collect(p.run())).at(-1)!;
    expect(last.kind).toBe('failed');
    expect(last.text).toBe(`Sorry, Morris couldn't write that: the model failed to load. (ref \`${p.request.id}\`)`);
    const row = store.prepare('SELECT outcome, error FROM generations WHERE id = ?').get(p.request.id) as { outcome: string; error: string };
    expect(row.outcome).toBe('failed');
    expect(row.error).toMatch(/^MODEL_MISSING: No model at .*no-such-model/);
    // The real model keeps answering on the same process.
    const again = await makeCore(store, generatorFromConfig(loadConfig({ MORRIS_DATA_DIR: path.join(root, 'data') }), { service, store })).prepare({
      requester: { platform: 'discord', userId: 'u9' },
      text: 'second try',
    });
    if (!again.ok) throw new Error('expected ok');
    expect((await collect(again.run())).at(-1)!.kind).toBe('final');
  });

  it('version reports the base model and adapter answering now', async () => {
    const core = makeCore(store, generatorFromConfig(loadConfig({ MORRIS_DATA_DIR: path.join(root, 'data') }), { service, store }));
    const out = await core.admin({ requester: { platform: 'slack', userId: 'UADMIN' }, text: 'version' });
    expect(out).toMatch(/backend: +in-process/);
    expect(out).toMatch(/base model: tiny/);
    expect(out).toMatch(/adapter: +none \(base model only\)/);
    expect(out).toMatch(/model loaded on cpu/);
  });
});
