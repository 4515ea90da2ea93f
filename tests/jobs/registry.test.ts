import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AdapterRegistry, adapterHistory, getAdapter } from '../../src/jobs/registry.ts';
import { tempStore } from './helpers.ts';

let t: ReturnType<typeof tempStore>;
beforeEach(() => {
  t = tempStore();
  for (const id of ['a1', 'a2', 'a3']) {
    t.store.prepare(`INSERT INTO adapters (id, base_model, path, created_at) VALUES (?, 'tiny', ?, ?)`).run(id, `/adapters/${id}`, `2026-01-0${id[1]}T00:00:00Z`);
  }
});
afterEach(() => t.cleanup());

describe('AdapterRegistry', () => {
  it('promotes, retires the previous one, and rolls back step by step down to the base model', async () => {
    const swaps: (string | null)[] = [];
    const reg = new AdapterRegistry(t.store, async (a) => void swaps.push(a?.id ?? null));
    await reg.promote('a1', 'test');
    await reg.promote('a2', 'test');
    await reg.promote('a3', 'test');
    expect(reg.active()?.id).toBe('a3');
    expect(getAdapter(t.store, 'a2').status).toBe('retired');
    expect(reg.list().map((a) => a.id)).toEqual(['a3', 'a2', 'a1']);

    let c = await reg.rollback('admin');
    expect([c.previous?.id, c.active?.id]).toEqual(['a3', 'a2']);
    expect(getAdapter(t.store, 'a3').reason).toMatch(/rolled back by admin/);
    c = await reg.rollback('admin');
    expect(c.active?.id).toBe('a1');
    c = await reg.rollback('admin');
    expect(c.active).toBeNull();
    await expect(reg.rollback('admin')).rejects.toThrow(/nothing to roll back/);
    expect(swaps).toEqual(['a1', 'a2', 'a3', 'a2', 'a1', null]);
    expect(adapterHistory(t.store).map((e) => `${e.action}:${e.adapter_id}`)).toEqual([
      'rollback:null',
      'rollback:a1',
      'rollback:a2',
      'promote:a3',
      'promote:a2',
      'promote:a1',
    ]);
  });

  it('at most one adapter is active, enforced by the store itself', async () => {
    const reg = new AdapterRegistry(t.store);
    await reg.promote('a1', 'test');
    expect(() => t.store.prepare(`UPDATE adapters SET status = 'active' WHERE id = 'a2'`).run()).toThrow(/UNIQUE/);
  });

  it('when the hot swap fails, the store keeps naming the adapter that really answers', async () => {
    const reg = new AdapterRegistry(t.store, async (a) => {
      if (a?.id === 'a2') throw new Error('shape mismatch');
    });
    await reg.promote('a1', 'test');
    await expect(reg.promote('a2', 'test')).rejects.toThrow(/Could not switch .* a2: shape mismatch/);
    expect(reg.active()?.id).toBe('a1');
    expect(getAdapter(t.store, 'a2').status).toBe('candidate');
    expect(adapterHistory(t.store)).toHaveLength(1);
  });

  it('unknown ids are NOT_FOUND', async () => {
    const reg = new AdapterRegistry(t.store);
    await expect(reg.promote('zzz', 'x')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
});
