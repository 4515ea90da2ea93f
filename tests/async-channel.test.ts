/**
 * The one async channel the engine (token pieces) and the generation service (events) share:
 * items arrive in order whether pushed before or while the consumer waits, end and fail are
 * seen after what was already pushed, and a consumer that stops early tells the producer.
 */
import { describe, expect, it } from 'vitest';
import { AsyncChannel } from '../src/async-channel.ts';

async function drain<T>(ch: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of ch) out.push(x);
  return out;
}

describe('AsyncChannel', () => {
  it('delivers items pushed before and during iteration, in order, then ends', async () => {
    const ch = new AsyncChannel<number>();
    ch.push(1);
    ch.push(2);
    const got = drain(ch);
    await Promise.resolve();
    ch.push(3);
    setTimeout(() => {
      ch.push(4);
      ch.end();
    }, 5);
    expect(await got).toEqual([1, 2, 3, 4]);
  });

  it('a failure is thrown after the items pushed before it', async () => {
    const ch = new AsyncChannel<string>();
    ch.push('a');
    ch.fail(new Error('boom'));
    const seen: string[] = [];
    await expect((async () => {
      for await (const x of ch) seen.push(x);
    })()).rejects.toThrow('boom');
    expect(seen).toEqual(['a']);
  });

  it('a failure wakes a waiting consumer', async () => {
    const ch = new AsyncChannel<string>();
    const got = drain(ch);
    setTimeout(() => ch.fail(new Error('late')), 5);
    await expect(got).rejects.toThrow('late');
  });

  it('ignores pushes, ends and failures after it ended', async () => {
    const ch = new AsyncChannel<number>();
    ch.push(1);
    ch.end();
    ch.push(2);
    ch.fail(new Error('ignored'));
    expect(await drain(ch)).toEqual([1]);
  });

  it('a consumer that stops early calls onReturn once; one that reads to the end never does', async () => {
    let returned = 0;
    const early = new AsyncChannel<number>(() => returned++);
    early.push(1);
    early.push(2);
    for await (const x of early) if (x === 1) break;
    expect(returned).toBe(1);
    early.push(3); // the producer may still push: it is dropped
    expect(await drain(early)).toEqual([]);

    let returnedFull = 0;
    const full = new AsyncChannel<number>(() => returnedFull++);
    full.push(1);
    full.end();
    expect(await drain(full)).toEqual([1]);
    expect(returnedFull).toBe(0);
  });
});
