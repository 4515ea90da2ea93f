/** streamReply on its own, over an in-memory surface: throttled edits, full final text, cleanup. */
import { describe, expect, it } from 'vitest';
import { streamReply, type MessageSurface } from '../../src/bot/stream-reply.ts';
import type { ReplyUpdate } from '../../src/bot/types.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function memorySurface() {
  const writes: { kind: 'post' | 'edit'; index: number; text: string; at: number }[] = [];
  const surface: MessageSurface<number> = {
    async post(text, index) {
      writes.push({ kind: 'post', index, text, at: Date.now() });
      return index;
    },
    async edit(handle, text) {
      writes.push({ kind: 'edit', index: handle, text, at: Date.now() });
    },
  };
  return { surface, writes };
}

describe('streamReply', () => {
  it('posts, edits at most once per interval, and writes the final text in full over several messages', async () => {
    const { surface, writes } = memorySurface();
    async function* updates(): AsyncGenerator<ReplyUpdate> {
      yield { kind: 'notice', text: 'Writing…' };
      let text = '';
      for (let i = 0; i < 12; i++) {
        text += `word${i} `;
        yield { kind: 'partial', text };
        await sleep(5);
      }
      yield { kind: 'final', text: `${text}${'x '.repeat(40)}`, cut: false, generationId: 'g-1' };
    }
    const res = await streamReply(updates(), surface, { maxLength: 50, editIntervalMs: 40, format: (s) => s });
    expect(writes[0]).toMatchObject({ kind: 'post', index: 0, text: 'Writing…' });
    // Message 0 is written at most once per interval (the final write included).
    const first = writes.filter((w) => w.index === 0);
    first.slice(1).forEach((w, i) => expect(w.at - first[i]!.at).toBeGreaterThanOrEqual(40 - 5));
    expect(res.shown.join(' ').replace(/\s+/g, ' ').trim()).toBe(`${Array.from({ length: 12 }, (_, i) => `word${i}`).join(' ')} ${'x '.repeat(40).trim()}`);
    for (const t of res.shown) expect(t.length).toBeLessThanOrEqual(50);
  });

  it('a stream that throws leaves no throttled edit behind', async () => {
    const { surface, writes } = memorySurface();
    async function* updates(): AsyncGenerator<ReplyUpdate> {
      yield { kind: 'partial', text: 'first' };
      await sleep(1);
      yield { kind: 'partial', text: 'first second' }; // waits for the interval: a timer is armed
      throw new Error('generator broke');
    }
    await expect(streamReply(updates(), surface, { maxLength: 100, editIntervalMs: 60, format: (s) => s })).rejects.toThrow('generator broke');
    const after = writes.length;
    await sleep(150);
    expect(writes.length).toBe(after);
    expect(writes.map((w) => w.text)).toEqual(['first …']);
  });

  it('finish writes the last message of a finished article once, even when its text is unchanged; failures never reach it', async () => {
    const run = async (final: ReplyUpdate) => {
      const { surface, writes } = memorySurface();
      const finished: { handle: number | undefined; text: string; index: number; generationId: string }[] = [];
      surface.finish = async (handle, text, index, f) => {
        finished.push({ handle, text, index, generationId: f.generationId });
        return handle ?? index;
      };
      async function* updates(): AsyncGenerator<ReplyUpdate> {
        yield { kind: 'partial', text: 'one two three' };
        await sleep(5);
        yield final;
      }
      const res = await streamReply(updates(), surface, { maxLength: 30, editIntervalMs: 1, format: (s) => s });
      return { writes, finished, res };
    };
    // Same text as the live preview minus the cursor: still written, with the decorations.
    const a = await run({ kind: 'final', text: 'one two three', cut: false, generationId: 'g-1' });
    expect(a.finished).toEqual([{ handle: 0, text: 'one two three', index: 0, generationId: 'g-1' }]);
    // A final text longer than the preview: the new last message is posted through finish.
    const b = await run({ kind: 'final', text: `one two three ${'four '.repeat(8)}`, cut: false, generationId: 'g-2' });
    expect(b.finished.map((f) => [f.handle, f.index])).toEqual([[undefined, b.res.handles.length - 1]]);
    expect(b.res.handles.length).toBeGreaterThan(1);
    expect(b.writes.some((w) => w.index === b.res.handles.length - 1)).toBe(false);
    const c = await run({ kind: 'failed', text: 'Sorry', generationId: 'g-3' });
    expect(c.finished).toEqual([]);
    expect(c.res.shown).toEqual(['Sorry']);
  });
});
