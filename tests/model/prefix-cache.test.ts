/**
 * The shared-prefix cache on the real engine (tiny model, native kernel): requests behind one long
 * system prompt reuse its KV and write exactly what they write with the cache off; an edited
 * system prompt or another adapter shares less or nothing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCheckpoint } from '../../src/model/checkpoint/config.ts';
import { writeRandomAdapter } from '../../src/model/checkpoint/random-checkpoint.ts';
import { loadModel, type LoadedModel } from '../../src/model/inference/engine.ts';
import { initTinyModel } from '../../src/model/tiny/index.ts';
import type { ChatMessage } from '../../src/prompts.ts';

const root = mkdtempSync(join(tmpdir(), 'morris-prefix-'));
const dir = join(root, 'tiny');
const lora = join(root, 'lora');
const greedy = { maxNewTokens: 16, temperature: 0, topP: 1, topK: 0, repetitionPenalty: 1 };
const STYLE = 'You are a weary telecoms columnist. '.repeat(12);

let cached: LoadedModel;
let plain: LoadedModel;

beforeAll(async () => {
  initTinyModel(dir, { seed: 9 });
  writeRandomAdapter(lora, openCheckpoint(dir).config, { r: 4, alpha: 16, targets: ['q_proj', 'v_proj'], seed: 3 });
  const opts = { modelDir: dir, cacheDir: join(root, 'cache'), device: 'cpu', decodeKernel: 'native' as const };
  cached = await loadModel({ ...opts, prefixCacheEntries: 4 });
  plain = await loadModel({ ...opts, prefixCacheEntries: 0 });
});
afterAll(async () => {
  await cached?.dispose();
  await plain?.dispose();
  rmSync(root, { recursive: true, force: true });
});

async function write(m: LoadedModel, system: string, topic: string, adapterDir?: string | null): Promise<string> {
  const messages: ChatMessage[] = [{ role: 'system', content: system }, { role: 'user', content: `Write a column about ${topic}.` }];
  let text = '';
  for await (const piece of m.stream({ messages }, greedy, undefined, adapterDir === undefined ? {} : { adapterDir })) text += piece;
  return text;
}

describe('shared-prefix cache', () => {
  it('reuses a long system prompt for later requests and writes the same tokens as without it', async () => {
    const topics = ['late trains', 'open RAN', 'spectrum auctions'];
    const withCache: string[] = [];
    for (const t of topics) withCache.push(await write(cached, STYLE, t));
    const hits = cached.kernelStats.prefix!;
    expect(hits.hits).toBe(2);
    // Each later prompt skipped at least the style guide's tokens.
    expect(hits.reusedTokens).toBeGreaterThanOrEqual(2 * cached.countTokens(STYLE));
    for (const [i, t] of topics.entries()) expect(await write(plain, STYLE, t), t).toBe(withCache[i]);
    expect(plain.kernelStats.prefix?.hits ?? 0).toBe(0);
    // Concurrent requests behind the same prompt, cached and not: the same texts again.
    expect(await Promise.all(topics.map((t) => write(cached, STYLE, t)))).toEqual(withCache);
  });

  it('an edited system prompt shares only what is unchanged; another adapter shares nothing', async () => {
    const before = { ...cached.kernelStats.prefix! };
    const edited = STYLE.replace('weary', 'cheerful');
    const text = await write(cached, edited, 'late trains');
    expect(text).toBe(await write(plain, edited, 'late trains'));
    const after = cached.kernelStats.prefix!;
    // "You are a " and the template before it: far less than the whole guide.
    expect(after.reusedTokens - before.reusedTokens).toBeLessThan(cached.countTokens(STYLE) / 4);

    const hitsBefore = cached.kernelStats.prefix!.hits;
    const adapted = await write(cached, STYLE, 'late trains', lora);
    expect(cached.kernelStats.prefix!.hits).toBe(hitsBefore); // the base model's prompts are not the adapter's
    expect(adapted).toBe(await write(plain, STYLE, 'late trains', lora));
    expect(adapted).not.toBe(await write(plain, STYLE, 'late trains', null));
    await write(cached, STYLE, 'open RAN', lora);
    expect(cached.kernelStats.prefix!.hits).toBe(hitsBefore + 1); // now the adapter has its own
  });
});
