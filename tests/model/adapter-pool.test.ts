/**
 * The adapters resident beside one decoder: least recently used go first, never one a sequence
 * still uses; a rewritten adapter file is read afresh; a broken one fails alone.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseDecoderConfig } from '../../src/model/checkpoint/config.ts';
import { writeRandomAdapter } from '../../src/model/checkpoint/random-checkpoint.ts';
import { AdapterPool } from '../../src/model/inference/adapter-pool.ts';
import type { NativeAdapter, NativeDecoder } from '../../src/model/inference/native-decoder.ts';

const root = mkdtempSync(join(tmpdir(), 'morris-pool-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const cfg = parseDecoderConfig({
  model_type: 'llama', hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2,
  vocab_size: 64, max_position_embeddings: 64, rms_norm_eps: 1e-5,
});

function adapter(name: string, seed = 1): string {
  const dir = join(root, name);
  writeRandomAdapter(dir, cfg, { r: 2, alpha: 4, targets: ['q_proj'], seed });
  return dir;
}

/** A decoder stand-in that counts loads and releases (the pool's logic is what is under test). */
function fakeDecoder() {
  const log: string[] = [];
  let n = 0;
  const decoder = {
    loadAdapter: () => {
      const id = `#${++n}`;
      log.push(`load ${id}`);
      return { id, release: () => log.push(`release ${id}`) } as NativeAdapter & { id: string };
    },
  } as unknown as NativeDecoder;
  return { decoder, log };
}

describe('AdapterPool', () => {
  it('keeps the most recently used, releases the least recently used once unused, never one in use', () => {
    const [a, b, c] = [adapter('a'), adapter('b'), adapter('c')];
    const { decoder, log } = fakeDecoder();
    const forgotten: unknown[] = [];
    const pool = new AdapterPool(decoder, cfg, 2, (x) => forgotten.push(x));
    const pa = pool.pin(a);
    pool.pin(b).unpin();
    const again = pool.pin(a);
    expect(again.adapter).toBe(pa.adapter); // resident: no second load
    again.unpin();
    pool.pin(c).unpin(); // three resident, a in use: b (least recent, unused) goes
    expect(log).toEqual(['load #1', 'load #2', 'load #3', 'release #2']);
    expect(pool.size).toBe(2);
    pool.pin(b).unpin(); // b again: loaded afresh; c is now least recent and unused
    expect(log.slice(4)).toEqual(['load #4', 'release #3']);
    pa.unpin();
    expect(log).toHaveLength(6); // a is still among the two most recent
    expect(forgotten).toHaveLength(2);
    expect(pool.pin(null)).toMatchObject({ adapter: null, dir: null });
    pool.clear();
    expect(log.slice(6).sort()).toEqual(['release #1', 'release #4']);
  });

  it('reads a rewritten adapter afresh; the old version goes when its last sequence ends', async () => {
    const dir = adapter('rewritten', 1);
    const { decoder, log } = fakeDecoder();
    const pool = new AdapterPool(decoder, cfg, 4);
    const old = pool.pin(dir);
    await new Promise((r) => setTimeout(r, 20)); // a new mtime
    writeRandomAdapter(dir, cfg, { r: 2, alpha: 4, targets: ['q_proj'], seed: 2 });
    const fresh = pool.pin(dir);
    expect(fresh.adapter).not.toBe(old.adapter);
    expect(log).toEqual(['load #1', 'load #2']);
    old.unpin();
    expect(log).toEqual(['load #1', 'load #2', 'release #1']);
    fresh.unpin();
    expect(pool.size).toBe(1);
  });

  it('a broken adapter file is MODEL_INVALID naming the folder, and nothing stays pinned', () => {
    const dir = adapter('broken');
    writeFileSync(join(dir, 'adapter_model.safetensors'), 'garbage');
    const { decoder, log } = fakeDecoder();
    const pool = new AdapterPool(decoder, cfg, 2);
    expect(() => pool.pin(dir)).toThrow(expect.objectContaining({ code: 'MODEL_INVALID', message: expect.stringContaining('broken') }));
    expect(pool.size).toBe(0);
    expect(log).toEqual([]);
  });
});
