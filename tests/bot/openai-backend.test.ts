/**
 * The OpenAI-compatible backend against a local server that speaks /v1/chat/completions with
 * stream: true (server-sent events), as vLLM, llama.cpp server and Ollama do.
 */
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { articlePrompt, readSystemPrompt } from '../../src/prompts.ts';
import { SYSTEM_PROMPT_FILE } from '../../src/paths.ts';
import { generatorFromConfig } from '../../src/serve/generator-adapters.ts';
import { chatCompletionsUrl, OpenAiGenerator } from '../../src/bot/openai-backend.ts';
import type { GenerationEvent } from '../../src/generation-events.ts';
import { isMorrisError } from '../../src/errors.ts';
import { collect, makeCore, tempStore } from './helpers.ts';

interface Seen {
  body: { model: string; stream: boolean; max_tokens: number; temperature?: number; messages: { role: string; content: string }[] };
  auth?: string;
}

/** Streams the user's topic back word by word; "stall" never finishes; "explode" answers 500. */
function startServer(): Promise<{ server: http.Server; url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString()) as Seen['body'];
    seen.push({ body, auth: req.headers.authorization });
    if (req.url !== '/v1/chat/completions') {
      res.writeHead(404).end('not found');
      return;
    }
    const topic = body.messages.at(-1)!.content;
    if (topic.includes('explode')) {
      res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":{"message":"CUDA out of memory"}}');
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const words = `Column on ${topic}: doom, gloom and capex.`.split(' ');
    const send = (obj: unknown) => res.write(`data: ${JSON.stringify(obj)}\r\n\r\n`);
    res.write(': keep-alive comment\n\n');
    send({ id: 'c1', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { role: 'assistant' } }] });
    // "stall": three words, then silence; the client's time limit must cut it.
    const upTo = topic.includes('stall') ? 3 : words.length;
    for (let i = 0; i < upTo; i++) {
      send({ id: 'c1', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: (i ? ' ' : '') + words[i] }, finish_reason: null }] });
      await new Promise((r) => setTimeout(r, 3));
    }
    if (topic.includes('stall')) return;
    send({ id: 'c1', object: 'chat.completion.chunk', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] });
    res.end('data: [DONE]\n\n');
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, seen })),
  );
}

describe('OpenAI-compatible backend', () => {
  let server: http.Server;
  let url = '';
  let seen: Seen[] = [];
  beforeAll(async () => {
    ({ server, url, seen } = await startServer());
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  const make = (over: Partial<ConstructorParameters<typeof OpenAiGenerator>[0]> = {}) =>
    new OpenAiGenerator({
      baseUrl: url,
      model: 'morris-lora-7',
      apiKey: 'sk-local',
      systemPrompt: 'You are Morris.',
      userPrompt: (t) => `Write a column about: ${t}`,
      timeoutMs: 5000,
      queueMax: 10,
      ...over,
    });

  it('builds the endpoint from a base with or without /v1', () => {
    expect(chatCompletionsUrl('http://h:8000/v1/')).toBe('http://h:8000/v1/chat/completions');
    expect(chatCompletionsUrl('http://h:11434')).toBe('http://h:11434/v1/chat/completions');
  });

  it('streams deltas from SSE and finishes with the whole text', async () => {
    const events = await collect(make().generate({ topic: 'fibre rollouts', maxNewTokens: 50, temperature: 0.4, requestId: 'g-1' }));
    const texts = events.filter((e) => e.type === 'text');
    expect(texts.length).toBeGreaterThan(3);
    const done = events.at(-1) as Extract<GenerationEvent, { type: 'done' }>;
    expect(done).toMatchObject({ type: 'done', cut: false, reason: 'stop', adapterId: 'morris-lora-7' });
    expect(done.text).toBe('Column on Write a column about: fibre rollouts: doom, gloom and capex.');
    expect(texts.map((e) => (e as { text: string }).text).join('')).toBe(done.text);
    const req = seen.at(-1)!;
    expect(req.auth).toBe('Bearer sk-local');
    expect(req.body).toMatchObject({ model: 'morris-lora-7', stream: true, max_tokens: 50, temperature: 0.4 });
    expect(req.body.messages[0]).toEqual({ role: 'system', content: 'You are Morris.' });
  });

  it('a revision adds the previous article and the instruction as the last turns', async () => {
    await collect(make().generate({ topic: 'fibre rollouts', revision: { previousArticle: 'Old column.', instruction: 'shorter' }, maxNewTokens: 50, requestId: 'g-r' }));
    expect(seen.at(-1)!.body.messages).toEqual([
      { role: 'system', content: 'You are Morris.' },
      { role: 'user', content: 'Write a column about: fibre rollouts' },
      { role: 'assistant', content: 'Old column.' },
      { role: 'user', content: 'shorter' },
    ]);
  });

  it('cuts a stream that outlives the time limit and keeps the partial text', async () => {
    const events: GenerationEvent[] = [];
    const t0 = Date.now();
    for await (const e of make({ timeoutMs: 1000 }).generate({ topic: 'stall forever', maxNewTokens: 50, requestId: 'g-2' })) events.push(e);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(990);
    const done = events.at(-1) as Extract<GenerationEvent, { type: 'done' }>;
    expect(done).toMatchObject({ type: 'done', cut: true, reason: 'timeout' });
    expect(done.text).toBe('Column on Write');
  });

  it('turns HTTP errors and an unreachable server into BACKEND_ERROR', async () => {
    const fail = async (g: OpenAiGenerator, topic: string) => {
      try {
        for await (const _ of g.generate({ topic, maxNewTokens: 5, requestId: 'g-3' })) void _;
      } catch (e) {
        return e;
      }
      throw new Error('expected a failure');
    };
    const e1 = await fail(make(), 'explode');
    expect(isMorrisError(e1) && e1.code).toBe('BACKEND_ERROR');
    expect((e1 as Error).message).toMatch(/HTTP 500.*CUDA out of memory/);
    const e2 = await fail(make({ baseUrl: 'http://127.0.0.1:9/v1' }), 'anything');
    expect(isMorrisError(e2) && e2.code).toBe('BACKEND_ERROR');
  });

  it('is what MORRIS_BACKEND=openai selects, prompting with the repo style guide like the engine', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-openai-'));
    try {
      const config = loadConfig({ MORRIS_DATA_DIR: dir, MORRIS_BACKEND: 'openai', MORRIS_OPENAI_BASE_URL: url, MORRIS_OPENAI_MODEL: 'served-lora' });
      const gen = generatorFromConfig(config, {});
      const done = (await collect(gen.generate({ topic: 'config topic', maxNewTokens: 9, requestId: 'g-9' }))).at(-1);
      expect(done).toMatchObject({ type: 'done', cut: false, adapterId: 'served-lora' });
      const style = readSystemPrompt(SYSTEM_PROMPT_FILE);
      expect(style).toMatch(/^You are Morris/);
      expect(seen.at(-1)!.body.messages[0]).toEqual({ role: 'system', content: style });
      expect(seen.at(-1)!.body.messages[1]).toEqual({ role: 'user', content: articlePrompt('config topic') });
      expect(seen.at(-1)!.auth).toBeUndefined();
      expect(() => generatorFromConfig(loadConfig({ MORRIS_DATA_DIR: dir, MORRIS_BACKEND: 'openai' }), {})).toThrow(/MORRIS_OPENAI_BASE_URL/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('queues beyond its concurrency and reports positions; through the core end to end', async () => {
    const { store, cleanup } = tempStore();
    try {
      const core = makeCore(store, make({ concurrency: 1 }));
      const preps = await Promise.all(
        [0, 1, 2].map((i) => core.prepare({ requester: { platform: 'discord', userId: `u${i}` }, text: `remote topic ${i}` })),
      );
      const runs = await Promise.all(preps.map((p) => (p.ok ? collect(p.run()) : Promise.reject(new Error('refused')))));
      runs.forEach((us, i) => {
        const final = us.at(-1)!;
        expect(final.kind).toBe('final');
        expect(final.text).toContain(`remote topic ${i}: doom, gloom and capex.`);
      });
      expect(runs[2]!.filter((u) => u.kind === 'notice' && /Queued: position/.test(u.text)).map((u) => u.text.match(/\d+/)![0])).toEqual(['2', '1']);
      const rows = store.prepare('SELECT outcome, adapter_id FROM generations').all();
      expect(rows).toEqual(Array(3).fill({ outcome: 'ok', adapter_id: 'morris-lora-7' }));
    } finally {
      cleanup();
    }
  });
});
