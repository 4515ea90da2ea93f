import { describe, expect, it } from 'vitest';
import { FifoGate, throughGate } from '../../src/bot/fifo-gate.ts';
import { isMorrisError } from '../../src/errors.ts';

describe('FifoGate', () => {
  it('admits in order, reports positions as they change, and refuses past queueMax', async () => {
    const gate = new FifoGate(1, 2);
    const seen: Record<string, number[]> = { b: [], c: [] };
    const releaseA = await gate.enter(() => undefined);
    const b = gate.enter((p) => seen.b!.push(p));
    const c = gate.enter((p) => seen.c!.push(p));
    const d = await gate.enter(() => undefined).catch((e: unknown) => e);
    expect(isMorrisError(d) && d.code).toBe('BUSY');
    releaseA();
    const releaseB = await b;
    expect(seen).toEqual({ b: [1], c: [2, 1] });
    releaseB();
    (await c)();
    expect(gate.running).toBe(0);
  });

  it('a waiter cancelled by its signal leaves the queue and the others move up', async () => {
    const gate = new FifoGate(1, 5);
    const release = await gate.enter(() => undefined);
    const ac = new AbortController();
    const positions: number[] = [];
    const cancelled = gate.enter(() => undefined, ac.signal);
    const behind = gate.enter((p) => positions.push(p));
    ac.abort();
    await expect(cancelled).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(positions).toEqual([2, 1]);
    release();
    (await behind)();
  });

  it('throughGate hands the slot on when its consumer stops while still queued', async () => {
    const gate = new FifoGate(1, 5);
    const release = await gate.enter(() => undefined);
    async function* body() {
      yield 'ran';
    }
    const it = throughGate(gate, undefined, body);
    expect((await it.next()).value).toEqual({ type: 'queued', position: 1 });
    await it.return(undefined); // consumer gives up while queued
    release();
    // The abandoned waiter's turn comes and its slot passes straight on: the next one runs.
    const events: unknown[] = [];
    for await (const e of throughGate(gate, undefined, body)) events.push(e);
    expect(events.at(-1)).toBe('ran');
    expect(gate.running).toBe(0);
    expect(gate.queued).toBe(0);
  });
});
