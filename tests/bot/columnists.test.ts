/**
 * Asking for a voice, end to end through the real Slack and Discord clients against the local
 * fakes: `/morris --as NAME`, a Discord mention with `--as`, and Discord's `columnist:` option (with
 * autocomplete) reach that columnist's active adapter and style guide through the generation
 * service's per-request adapter; the article carries that voice's attribution; an unknown name
 * gets the known ones; requests for two voices decode at the same time on one model.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, type Config } from '../../src/config.ts';
import { addColumnist } from '../../src/columnists/folder.ts';
import { COLUMNISTS_DIR, SYSTEM_PROMPT_FILE } from '../../src/paths.ts';
import { readSystemPrompt, type ChatMessage } from '../../src/prompts.ts';
import { insertAdapter } from '../../src/store/adapters.ts';
import { AdapterRegistry } from '../../src/jobs/registry.ts';
import { GenerationService, type LoadModelFn } from '../../src/model/serving/generation-service.ts';
import type { LoadedModel } from '../../src/model/inference/engine.ts';
import { generatorFromConfig } from '../../src/serve/generator-adapters.ts';
import { voiceDirectoryFromConfig, columnistChoices } from '../../src/bot/voices.ts';
import { createSlackBot, type SlackBot } from '../../src/bot/slack.ts';
import { createDiscordBot, type DiscordBot } from '../../src/bot/discord.ts';
import { attributionLine } from '../../src/bot/render.ts';
import type { BotCore } from '../../src/bot/core.ts';
import type { Store } from '../../src/store/db.ts';
import { FakeSlack, postSigned, slashCommand } from './fakes/slack-server.ts';
import { BOT_ID, FakeDiscord } from './fakes/discord-server.ts';
import { makeCore, serveSlackEvents, tempStore, waitFor } from './helpers.ts';

const RIVAL_PROMPT = 'You are the Rival: brisk, upbeat, never a joke.';
const SECRET = 'test-signing-secret';
const STRING = 3;

interface Seen {
  adapterDir: string | null;
  system: string;
  topic: string;
}

/** A stand-in engine with an adapter pool (several adapters in one batch), recording what each generation ran with. */
function poolEngine() {
  const seen: Seen[] = [];
  const state = { active: new Set<string>(), overlap: [] as string[][] };
  const load: LoadModelFn = async (o) => {
    const model: LoadedModel = {
      info: { modelDir: o.modelDir, adapterDir: o.adapterDir ?? null, device: 'cpu', quant: 'fp32', decodeKernel: 'native', decodeLoop: 'morris', maxBatch: 4, batchShrunk: null, adapterPool: true },
      kernelStats: { nativeSteps: 0, nativeMs: 0, onnxRuns: 0 },
      async *stream(input, opts, signal, options) {
        const messages = (input as { messages: ChatMessage[] }).messages;
        const adapterDir = options?.adapterDir === undefined ? (o.adapterDir ?? null) : options.adapterDir;
        const who = adapterDir ? path.basename(adapterDir) : 'base';
        seen.push({ adapterDir, system: messages[0]!.content, topic: messages.at(-1)!.content });
        state.active.add(who);
        if (state.active.size > 1) state.overlap.push([...state.active].sort());
        try {
          for (const w of [`[${who}]`, 'Headline', 'one', 'two', 'three', 'four']) {
            await new Promise((r) => setTimeout(r, 15));
            if (signal?.aborted) return;
            yield `${w} `;
          }
        } finally {
          state.active.delete(who);
        }
      },
      countTokens: (t) => t.split(' ').filter(Boolean).length,
      lastStats: null,
      async dispose() {},
    };
    return model;
  };
  return { load, seen, state };
}

let dir: string;
let config: Config;
let store: Store;
let cleanupStore: () => void;
let service: GenerationService;
let core: BotCore;
const engine = poolEngine();
const adapterDirs: Record<string, string> = {};

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-voices-'));
  const root = path.join(dir, 'columnists');
  fs.cpSync(path.join(COLUMNISTS_DIR, 'morris'), path.join(root, 'morris'), { recursive: true });
  config = loadConfig({ MORRIS_COLUMNISTS_DIR: root, MORRIS_DATA_DIR: path.join(dir, 'data') });
  addColumnist('rival', config, { displayName: 'The Rival', attribution: 'a rival columnist' });
  fs.writeFileSync(path.join(root, 'rival', 'system-prompt.md'), `${RIVAL_PROMPT}\n`);
  ({ store, cleanup: cleanupStore } = tempStore());
  const registry = new AdapterRegistry(store);
  for (const [id, columnist] of [['lora-morris', 'morris'], ['lora-rival', 'rival']] as const) {
    adapterDirs[columnist] = path.join(dir, 'adapters', id);
    fs.mkdirSync(adapterDirs[columnist]!, { recursive: true });
    fs.writeFileSync(path.join(adapterDirs[columnist]!, 'adapter_config.json'), '{}');
    insertAdapter(store, { id, baseModel: 'tiny', datasetId: null, path: adapterDirs[columnist]!, status: 'candidate', metrics: {}, reason: null, columnist });
    await registry.promote(id, 'test');
  }
  fs.mkdirSync(path.join(dir, 'base'));
  fs.writeFileSync(path.join(dir, 'base', 'config.json'), '{}');
  service = new GenerationService({
    load: engine.load,
    baseModel: path.join(dir, 'base'),
    adapter: { id: 'lora-morris', dir: adapterDirs.morris!, datasetId: null },
    systemPromptFile: SYSTEM_PROMPT_FILE,
    defaults: { maxNewTokens: 50, temperature: 0, topP: 1, topK: 0, repetitionPenalty: 1 },
    timeoutS: 30,
    idleUnloadS: 0,
    queueMax: 10,
    maxTopicChars: 300,
  });
  core = makeCore(store, generatorFromConfig(config, { service, store }), { voices: voiceDirectoryFromConfig(config) });
});

afterAll(async () => {
  await service.close();
  cleanupStore();
  fs.rmSync(dir, { recursive: true, force: true });
});

const seenFor = (topic: string) => engine.seen.find((s) => s.topic.includes(topic));

describe('asking for a voice on Slack', () => {
  const fake = new FakeSlack();
  let bot: SlackBot;
  let server: Awaited<ReturnType<typeof serveSlackEvents>>;
  const slash = (text: string, channel: string) =>
    postSigned(server.url, new URLSearchParams(slashCommand(fake, { command: '/morris', text, user_id: 'U1', channel_id: channel })).toString(), {
      secret: SECRET,
      contentType: 'application/x-www-form-urlencoded',
    });

  beforeAll(async () => {
    await fake.start();
    bot = createSlackBot({ core, botToken: 'xoxb-test', signingSecret: SECRET, apiUrl: fake.apiUrl, editIntervalMs: 50, updatesPerMinute: 60_000, retries: 0 });
    await bot.start();
    server = await serveSlackEvents(bot);
  });
  afterAll(async () => {
    await bot.stop();
    await server.close();
    await fake.stop();
  });

  it('/morris --as rival reaches the rival adapter with its style guide and ends with its attribution', async () => {
    const ack = await slash('--as rival the future of 5G', 'CRIVAL');
    expect(ack.status).toBe(200);
    const msg = await waitFor(() => fake.messages.find((m) => m.channel === 'CRIVAL' && m.text.includes('not written by them')), 20_000, 'rival article');
    expect(msg.text).toContain('[lora-rival] Headline');
    expect(msg.text).toContain(attributionLine('a rival columnist'));
    // The lineage line under the article names the voice that wrote it, and its adapter.
    await waitFor(() => JSON.stringify(msg.blocks ?? []).includes('Columnist: a rival columnist'), 20_000, 'lineage block');
    expect(JSON.stringify(msg.blocks)).toContain('adapter: lora-rival');
    expect(seenFor('the future of 5G')).toEqual({ adapterDir: adapterDirs.rival, system: RIVAL_PROMPT, topic: 'Write a column about the future of 5G.' });
    const row = store.prepare("SELECT columnist, adapter_id, outcome FROM generations WHERE topic = 'the future of 5G'").get();
    expect(row).toEqual({ columnist: 'rival', adapter_id: 'lora-rival', outcome: 'ok' });
  });

  it('without --as the default columnist answers as before', async () => {
    await slash('late trains', 'CDEFAULT');
    const msg = await waitFor(() => fake.messages.find((m) => m.channel === 'CDEFAULT' && m.text.includes('not written by them')), 20_000, 'default article');
    expect(msg.text).toContain('[lora-morris] Headline');
    expect(msg.text).toContain(attributionLine('Test Columnist'));
    expect(seenFor('late trains')).toMatchObject({ adapterDir: adapterDirs.morris, system: readSystemPrompt(SYSTEM_PROMPT_FILE) });
  });

  it('an unknown voice is refused with the known ones, and nothing is generated', async () => {
    const before = engine.seen.length;
    const ack = await slash('--as nobody roaming fees', 'CNOBODY');
    expect(JSON.parse(ack.text).text).toContain('No columnist named "nobody". Known columnists: morris, rival.');
    await new Promise((r) => setTimeout(r, 100));
    expect(engine.seen.length).toBe(before);
  });

  it('/morris-admin default-columnist sets the voice of one channel; --as still wins; none clears it', async () => {
    const admin = (text: string, user = 'UADMIN') =>
      postSigned(server.url, new URLSearchParams(slashCommand(fake, { command: '/morris-admin', text, user_id: user, channel_id: 'CHOUSE' })).toString(), {
        secret: SECRET,
        contentType: 'application/x-www-form-urlencoded',
      }).then((r) => String(JSON.parse(r.text).text));
    expect(await admin('default-columnist rival', 'UNOTADMIN')).toMatch(/admins only/);
    expect(await admin('default-columnist nobody')).toContain('No columnist named "nobody". Known columnists: morris, rival.');
    expect(await admin('default-columnist rival')).toContain('This channel now writes as rival');
    // The chain's commands take a voice too; without a job system here they say so.
    expect(await admin('retrain rival')).toContain('Admin actions are not available in this process');
    expect(await admin('help')).toContain('`retrain [columnist]`');
    expect(await admin('default-columnist')).toContain('This channel writes as rival.');
    await slash('house prices', 'CHOUSE');
    await slash('--as morris house rules', 'CHOUSE');
    await slash('elsewhere entirely', 'COTHER');
    await waitFor(() => ['house prices', 'house rules', 'elsewhere entirely'].every((t) => seenFor(t)), 20_000, 'three articles');
    expect(seenFor('house prices')!.adapterDir).toBe(adapterDirs.rival);
    expect(seenFor('house rules')!.adapterDir).toBe(adapterDirs.morris);
    expect(seenFor('elsewhere entirely')!.adapterDir).toBe(adapterDirs.morris);
    expect(await admin('default-columnist none')).toContain('default columnist again');
    await slash('house again', 'CHOUSE');
    await waitFor(() => seenFor('house again'), 20_000, 'after clearing');
    expect(seenFor('house again')!.adapterDir).toBe(adapterDirs.morris);
    expect(store.prepare("SELECT args, allowed, outcome FROM audit_log WHERE command = 'default-columnist' ORDER BY id").all()).toEqual([
      { args: 'rival', allowed: 0, outcome: 'refused: not an admin' },
      { args: 'nobody', allowed: 1, outcome: expect.stringMatching(/^failed: No columnist named "nobody"/) },
      { args: 'rival', allowed: 1, outcome: 'ok' },
      { args: null, allowed: 1, outcome: 'ok' },
      { args: 'none', allowed: 1, outcome: 'ok' },
    ]);
  });

  it('requests for both voices at once decode together on the one model', async () => {
    await Promise.all([slash('--as rival spectrum auctions', 'CBOTH1'), slash('spectrum auctions again', 'CBOTH2')]);
    await waitFor(() => fake.messages.filter((m) => m.channel.startsWith('CBOTH') && m.text.includes('not written by them')).length === 2, 20_000, 'both articles');
    expect(engine.state.overlap).toContainEqual(['lora-morris', 'lora-rival']);
  });
});

describe('asking for a voice on Discord', () => {
  const fake = new FakeDiscord();
  let bot: DiscordBot;
  const user = { id: '300000000000000003', username: 'reader' };

  beforeAll(async () => {
    await fake.start();
    bot = createDiscordBot({ core, token: 'fake-token', apiUrl: fake.apiUrl, editIntervalMs: 50 });
    await bot.start();
  });
  afterAll(async () => {
    await bot.stop();
    await fake.stop();
  });

  it('the columnist: option reaches the rival adapter', async () => {
    const token = fake.slashCommand({ name: 'morris', options: [{ name: 'topic', type: STRING, value: 'fibre to the home' }, { name: 'columnist', type: STRING, value: 'rival' }], user });
    const msg = await waitFor(() => fake.messages.find((m) => m.interaction_token === token && m.content.includes('not written by them')), 20_000, 'slash reply');
    expect(msg.content).toContain('[lora-rival] Headline');
    expect(msg.content).toContain(attributionLine('a rival columnist'));
    expect(seenFor('fibre to the home')).toMatchObject({ adapterDir: adapterDirs.rival, system: RIVAL_PROMPT });
    expect(JSON.stringify(msg.embeds)).toContain('Columnist: a rival columnist');
  });

  it('a mention accepts --as too', async () => {
    const id = fake.userMessage({ author: user, content: `<@${BOT_ID}> --as rival satellite broadband`, mentionBot: true });
    const reply = await waitFor(() => fake.messages.find((m) => m.reply_to === id && m.content.includes('not written by them')), 20_000, 'mention reply');
    expect(reply.content).toContain('[lora-rival] Headline');
  });

  it('autocomplete offers the voices matching what was typed', async () => {
    const token = fake.autocomplete({ name: 'morris', options: [{ name: 'topic', type: STRING, value: 'x' }, { name: 'columnist', type: STRING, value: 'riv', focused: true }], user });
    const cb = await waitFor(() => fake.interactionCallbacks.find((c) => c.token === token), 20_000, 'autocomplete answer');
    expect(cb.type).toBe(8);
    expect(cb.data).toEqual({ choices: [{ name: 'The Rival (rival)', value: 'rival' }] });
    expect(columnistChoices([{ name: 'morris', displayName: 'Morris', attribution: 'x' }], '')).toEqual([{ name: 'Morris (morris)', value: 'morris' }]);
  });

  it('an unknown columnist: is answered privately with the known ones', async () => {
    const token = fake.slashCommand({ name: 'morris', options: [{ name: 'topic', type: STRING, value: 'x' }, { name: 'columnist', type: STRING, value: 'nobody' }], user });
    const cb = await waitFor(() => fake.interactionCallbacks.find((c) => c.token === token), 20_000, 'refusal');
    expect(cb.type).toBe(4);
    expect(String(cb.data?.content)).toContain('Known columnists: morris, rival.');
  });
});
