/**
 * The batch loop's scheduling on a fake kernel whose logits are a pure function of each sequence's
 * own history: whatever the company, every generation must get exactly the tokens it gets alone —
 * with prompts of different lengths prefilled in chunks, members joining and leaving mid-run, one
 * cancelled, and failures (a NaN row, a throwing sampler, a failed step) ending only their own.
 */
import { BaseStreamer } from '@huggingface/transformers';
import { describe, expect, it } from 'vitest';
import { BatchLoop, type BatchEntry, type BatchKernel } from '../../src/model/inference/batch-loop.ts';
import type { Generation } from '../../src/model/inference/decode-loop.ts';

const VOCAB = 50;
const EOS = 7;

class IdStreamer extends BaseStreamer {
  readonly ids: number[] = [];
  ended = false;
  private prompt = true;
  override put(value: bigint[][]): void {
    if (this.prompt) this.prompt = false;
    else this.ids.push(Number(value[0]![0]!));
  }
  override end(): void {
    this.ended = true;
  }
}

interface FakeSeq {
  tokens: number[];
  closed: boolean;
  poison: boolean;
}

/** Logits whose argmax is a hash of the whole history, so any mix-up between sequences shows. */
function logitsOf(history: readonly number[]): Float32Array {
  let h = 2166136261;
  for (const t of history) h = Math.imul(h ^ t, 16777619) >>> 0;
  const row = new Float32Array(VOCAB);
  for (let i = 0; i < VOCAB; i++) row[i] = ((h >>> (i % 24)) & 0xff) / 256 + (i === h % VOCAB ? 2 : 0);
  return row;
}

function fakeKernel(opts: { prefillChunk: number; failStep?: number }) {
  const steps: BatchEntry<FakeSeq>[][] = [];
  const kernel: BatchKernel<FakeSeq> = {
    prefillChunk: opts.prefillChunk,
    open: (g) => ({ sequence: { tokens: [], closed: false, poison: (g as Generation & { poison?: boolean }).poison === true }, cached: 0 }),
    async step(entries) {
      steps.push([...entries]);
      await new Promise((r) => setTimeout(r, 1)); // a real step yields to the event loop
      if (opts.failStep === steps.length) throw new Error('step failed');
      const out: Float32Array[] = [];
      for (const e of entries) {
        if (e.sequence.closed) throw new Error('step on a closed sequence');
        if (e.start !== e.sequence.tokens.length) throw new Error(`entry starts at ${e.start}, cache holds ${e.sequence.tokens.length}`);
        e.sequence.tokens.push(...e.tokens);
        if (e.wantLogits) {
          const row = logitsOf(e.sequence.tokens);
          if (e.sequence.poison) row[3] = NaN;
          out.push(row);
        }
      }
      return out;
    },
    async close(s) {
      s.closed = true;
    },
  };
  return { kernel, steps };
}

function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

interface Spec {
  prompt: number[];
  maxNewTokens: number;
  stopAfter?: number;
  poison?: boolean;
  throwAt?: number;
}

function generation(spec: Spec): { g: Generation; streamer: IdStreamer } {
  const streamer = new IdStreamer();
  const g = {
    promptIds: spec.prompt,
    maxNewTokens: spec.maxNewTokens,
    choose(logits: Float32Array, seen: readonly number[]) {
      if (spec.throwAt !== undefined && seen.length - spec.prompt.length === spec.throwAt) throw new Error('sampler failed');
      return argmax(logits);
    },
    eos: [EOS],
    streamer,
    isStopped: () => spec.stopAfter !== undefined && streamer.ids.length >= spec.stopAfter,
    poison: spec.poison,
  };
  return { g, streamer };
}

/** The ids `spec` produces alone, on a kernel that prefills whole prompts. */
async function alone(spec: Spec): Promise<number[]> {
  const { kernel } = fakeKernel({ prefillChunk: Infinity });
  const { g, streamer } = generation(spec);
  await new BatchLoop(kernel, { prefillBudget: Infinity }).run(g);
  return streamer.ids;
}

const prompt = (n: number, seed: number) => Array.from({ length: n }, (_, i) => (i * 13 + seed * 7) % VOCAB === EOS ? 8 : (i * 13 + seed * 7) % VOCAB);

describe('BatchLoop', () => {
  it('gives each generation its lone tokens while prompts of different lengths join mid-run in chunks', async () => {
    const specs: Spec[] = [
      { prompt: prompt(3, 1), maxNewTokens: 20 },
      { prompt: prompt(17, 2), maxNewTokens: 12 },
      { prompt: prompt(9, 3), maxNewTokens: 25 },
      { prompt: prompt(30, 4), maxNewTokens: 5 },
      { prompt: prompt(1, 5), maxNewTokens: 30 },
    ];
    const expected = await Promise.all(specs.map(alone));
    const { kernel, steps } = fakeKernel({ prefillChunk: 4 });
    const loop = new BatchLoop(kernel, { prefillBudget: 6 });
    const runs: Promise<number[]>[] = [];
    for (const [i, spec] of specs.entries()) {
      const { g, streamer } = generation(spec);
      runs.push(loop.run(g).then(() => (expect(streamer.ended).toBe(true), streamer.ids)));
      // Later ones arrive while the earlier ones decode.
      if (i % 2 === 1) await new Promise((r) => setTimeout(r, 6));
    }
    expect(await Promise.all(runs)).toEqual(expected);
    expect(loop.size).toBe(0);
    expect(loop.stats.maxMembers).toBeGreaterThan(2);
    // Several sequences decoded in one step, and no step prefilled more than the budget or a chunk.
    expect(Math.max(...steps.map((s) => s.filter((e) => e.tokens.length === 1 && e.wantLogits).length))).toBeGreaterThan(2);
    for (const s of steps) {
      const prefill = s.filter((e) => e.start < 30 && e.tokens.length > 1);
      expect(prefill.reduce((n, e) => n + e.tokens.length, 0)).toBeLessThanOrEqual(6);
      for (const e of s) expect(e.tokens.length).toBeLessThanOrEqual(4);
    }
  });

  it('lets one member be cancelled, or fail on a NaN row, a throwing sampler or its step, without touching the rest', async () => {
    const specs: Spec[] = [
      { prompt: prompt(5, 1), maxNewTokens: 20 },
      { prompt: prompt(6, 2), maxNewTokens: 20, stopAfter: 3 },
      { prompt: prompt(4, 3), maxNewTokens: 20, poison: true },
      { prompt: prompt(8, 6), maxNewTokens: 20, throwAt: 1 },
      { prompt: prompt(2, 5), maxNewTokens: 20 },
    ];
    const expected = await Promise.all([specs[0]!, specs[1]!, specs[4]!].map(alone));
    expect(expected[1]).toHaveLength(3);
    expect((await alone({ ...specs[3]!, throwAt: undefined })).length).toBeGreaterThan(1); // it fails mid-run, not at its end
    const { kernel } = fakeKernel({ prefillChunk: 3 });
    const loop = new BatchLoop(kernel, { prefillBudget: 8 });
    const results = await Promise.allSettled(
      specs.map((spec) => {
        const { g, streamer } = generation(spec);
        return loop.run(g).then(() => streamer.ids);
      }),
    );
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'rejected', 'fulfilled']);
    expect([results[0], results[1], results[4]].map((r) => (r as PromiseFulfilledResult<number[]>).value)).toEqual(expected);
    expect((results[2] as PromiseRejectedResult).reason).toMatchObject({ code: 'GENERATION_FAILED', message: expect.stringMatching(/non-finite logits/) });
    expect((results[3] as PromiseRejectedResult).reason.message).toBe('sampler failed');
  });

  it('ends the members of a failed step, closes their caches, and serves the next arrivals', async () => {
    const { kernel } = fakeKernel({ prefillChunk: 2, failStep: 3 });
    const loop = new BatchLoop(kernel, { prefillBudget: 4 });
    const first = [generation({ prompt: prompt(5, 1), maxNewTokens: 10 }), generation({ prompt: prompt(3, 2), maxNewTokens: 10 })];
    const settled = await Promise.allSettled(first.map(({ g }) => loop.run(g)));
    expect(settled.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(loop.size).toBe(0);
    const later = generation({ prompt: prompt(4, 3), maxNewTokens: 6 });
    await loop.run(later.g);
    expect(later.streamer.ids).toEqual(await alone({ prompt: prompt(4, 3), maxNewTokens: 6 }));
  });

  it('ends a generation cancelled while its prompt is still being prefilled, without a token', async () => {
    const { kernel, steps } = fakeKernel({ prefillChunk: 2 });
    const loop = new BatchLoop(kernel, { prefillBudget: 2 });
    let stop = false;
    const { g, streamer } = generation({ prompt: prompt(20, 1), maxNewTokens: 10 });
    const run = loop.run({ ...g, isStopped: () => stop });
    await new Promise((r) => setTimeout(r, 5));
    stop = true;
    await run;
    expect(streamer.ids).toEqual([]);
    expect(streamer.ended).toBe(true);
    expect(steps.length).toBeLessThan(10);
  });
});
