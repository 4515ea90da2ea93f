/**
 * MORRIS_BACKEND=openai with several voices: each columnist maps to the model name the server
 * answers it under (its columnist.json "openaiModel", e.g. a vLLM --lora-modules name) and is
 * prompted with its own style guide; a voice without one is refused with what to set.
 */
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { addColumnist } from '../../src/columnists/folder.ts';
import { COLUMNISTS_DIR, SYSTEM_PROMPT_FILE } from '../../src/paths.ts';
import { readSystemPrompt } from '../../src/prompts.ts';
import { generatorFromConfig } from '../../src/serve/generator-adapters.ts';
import type { GenerationEvent } from '../../src/generation-events.ts';

const seen: { model: string; system: string }[] = [];
let server: http.Server;
let url = '';
let dir = '';

beforeAll(async () => {
  server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString()) as { model: string; messages: { content: string }[] };
    seen.push({ model: body.model, system: body.messages[0]!.content });
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: `written by ${body.model}` }, finish_reason: null }] })}\n\n`);
    res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`);
    res.end('data: [DONE]\n\n');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-openai-voices-'));
  fs.cpSync(path.join(COLUMNISTS_DIR, 'morris'), path.join(dir, 'morris'), { recursive: true });
});
afterAll(() => {
  server.closeAllConnections();
  server.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function text(events: AsyncIterable<GenerationEvent>): Promise<string> {
  let out = '';
  for await (const ev of events) if (ev.type === 'done') out = ev.text;
  return out;
}

describe('OpenAI-compatible backend with several columnists', () => {
  it('asks the server for each voice by its own model name, with its own style guide', async () => {
    const config = loadConfig({ MORRIS_COLUMNISTS_DIR: dir, MORRIS_BACKEND: 'openai', MORRIS_OPENAI_BASE_URL: url, MORRIS_OPENAI_MODEL: 'morris-lora' });
    addColumnist('rival', config, { displayName: 'The Rival' });
    fs.writeFileSync(path.join(dir, 'rival', 'system-prompt.md'), 'You are the Rival.\n');
    fs.writeFileSync(path.join(dir, 'rival', 'columnist.json'), JSON.stringify({ displayName: 'The Rival', attribution: 'a rival', openaiModel: 'rival-lora' }));
    addColumnist('house', config);
    const gen = generatorFromConfig(config, {});
    expect(await text(gen.generate({ topic: 'late trains', maxNewTokens: 9, requestId: 'r1', columnist: 'rival' }))).toBe('written by rival-lora');
    expect(seen.at(-1)).toEqual({ model: 'rival-lora', system: 'You are the Rival.' });
    expect(await text(gen.generate({ topic: 'late trains', maxNewTokens: 9, requestId: 'r2' }))).toBe('written by morris-lora');
    expect(seen.at(-1)).toEqual({ model: 'morris-lora', system: readSystemPrompt(SYSTEM_PROMPT_FILE) });
    expect(() => gen.generate({ topic: 'x', maxNewTokens: 9, requestId: 'r3', columnist: 'house' })).toThrow(
      expect.objectContaining({ code: 'BAD_INPUT', message: expect.stringContaining('Columnist house has no "openaiModel"'), hint: expect.stringContaining('--lora-modules') }),
    );
    expect(() => gen.generate({ topic: 'x', maxNewTokens: 9, requestId: 'r4', columnist: 'nobody' })).toThrow(/Known columnists: house, morris, rival/);
    expect(seen).toHaveLength(2);
  });
});
