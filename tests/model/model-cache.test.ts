/** The one model cache: one model at a time, swap frees the old, failed loads retry, idle unload. */
import { describe, expect, it } from 'vitest';
import { ModelCache } from '../../src/model/serving/model-cache.ts';

function harness() {
  const disposed: string[] = [];
  const loads: string[] = [];
  const cache = new ModelCache<string>(async (m) => {
    disposed.push(m);
  });
  const load = (name: string) => async () => {
    loads.push(name);
    return name;
  };
  return { cache, disposed, loads, load };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('ModelCache', () => {
  it('loads once per key and frees the old model before loading another', async () => {
    const { cache, disposed, loads, load } = harness();
    expect(await cache.get('a', load('a'))).toBe('a');
    expect(await cache.get('a', load('a again'))).toBe('a');
    expect(await cache.get('b', load('b'))).toBe('b');
    expect(loads).toEqual(['a', 'b']);
    expect(disposed).toEqual(['a']);
    expect(cache.loaded).toBe('b');
  });

  it('reports loading until the load settles', async () => {
    const { cache } = harness();
    let finish!: (v: string) => void;
    const got = cache.get('a', () => new Promise<string>((r) => (finish = r)));
    await sleep(0);
    expect(cache.loading).toBe(true);
    expect(cache.loaded).toBeNull();
    finish('a');
    await got;
    expect(cache.loading).toBe(false);
    expect(cache.loaded).toBe('a');
  });

  it('keeps nothing after a failed load, so the next get tries again', async () => {
    const { cache, disposed, load } = harness();
    await expect(cache.get('a', () => Promise.reject(new Error('broken')))).rejects.toThrow('broken');
    expect(cache.loading).toBe(false);
    expect(await cache.get('a', load('a'))).toBe('a');
    await cache.unload();
    expect(disposed).toEqual(['a']);
  });

  it('keepOnly frees a model under another key and keeps the one asked for', async () => {
    const { cache, disposed, load } = harness();
    await cache.get('a', load('a'));
    await cache.keepOnly('a');
    expect(disposed).toEqual([]);
    await cache.keepOnly('b');
    expect(disposed).toEqual(['a']);
    expect(cache.loaded).toBeNull();
  });

  it('unloads after the idle time unless cancelled or no longer idle', async () => {
    const { cache, disposed, load } = harness();
    await cache.get('a', load('a'));
    cache.unloadWhenIdle(20, () => true, () => undefined);
    cache.cancelIdleUnload();
    await sleep(40);
    expect(disposed).toEqual([]);
    cache.unloadWhenIdle(20, () => false, () => undefined);
    await sleep(40);
    expect(disposed).toEqual([]);
    cache.unloadWhenIdle(20, () => true, () => undefined);
    await sleep(40);
    expect(disposed).toEqual(['a']);
  });
});
