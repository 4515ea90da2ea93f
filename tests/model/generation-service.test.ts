import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  GenerationService,
  type GenerationEvent,
  type GenerationServiceOptions,
  type LoadModelFn,
} from '../../src/model/serving/generation-service.ts';
import type { LoadedModel, SamplingOptions } from '../../src/model/inference/engine.ts';
import { FALLBACK_SYSTEM_PROMPT, type ChatMessage } from '../../src/prompts.ts';
import { MorrisError } from '../../src/errors.ts';

const root = mkdtempSync(join(tmpdir(), 'morris-gen-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const base = join(root, 'base');
mkdirSync(base);
writeFileSync(join(base, 'config.json'), '{}');
function adapterDir(name: string): string {
  const d = join(root, name);
  mkdirSync(d, { recursive: true });
  writeFileSync(join(d, 'adapter_config.json'), '{}');
  return d;
}
const promptFile = join(root, 'system-prompt.md');
writeFileSync(promptFile, '<!-- editors: keep it short -->\nYou are the columnist.\n');

interface StreamCall {
  model: string;
  input: { messages: ChatMessage[] } | { text: string };
  opts: SamplingOptions;
}

/** A stand-in engine: echoes "[model] <last user words> w1 w2 ..." one word per tick. */
function fakeEngine(cfg: { tokenMs?: number; ignoreSignal?: boolean; failLoads?: number; maxBatch?: number } = {}) {
  const state = { loads: [] as string[], disposed: [] as string[], streams: [] as StreamCall[], active: 0, maxActive: 0, failLoads: cfg.failLoads ?? 0, log: [] as string[] };
  const load: LoadModelFn = async (o) => {
    await sleep(5);
    if (state.failLoads > 0) {
      state.failLoads--;
      throw new Error('onnx session creation failed: bad weights');
    }
    const name = o.adapterDir ? basename(o.adapterDir) : 'base';
    state.loads.push(name);
    const model: LoadedModel = {
      info: { modelDir: o.modelDir, adapterDir: o.adapterDir ?? null, device: 'cpu', quant: 'fp32', decodeKernel: 'onnx', decodeLoop: 'morris', maxBatch: cfg.maxBatch ?? 1, batchShrunk: null, adapterPool: false },
      kernelStats: { nativeSteps: 0, nativeMs: 0, onnxRuns: 0 },
      async *stream(input, opts, signal) {
        state.streams.push({ model: name, input, opts });
        state.log.push(`start:${name}`);
        state.active++;
        state.maxActive = Math.max(state.maxActive, state.active);
        try {
          const subject = 'messages' in input ? input.messages.at(-1)!.content : input.text;
          const words = [`[${name}]`, ...subject.split(' ')];
          for (let i = 0; words.length < opts.maxNewTokens + 50; i++) words.push(`w${i}`);
          for (const w of words.slice(0, opts.maxNewTokens)) {
            await sleep(cfg.tokenMs ?? 2);
            if (signal?.aborted && !cfg.ignoreSignal) return;
            yield `${w} `;
          }
        } finally {
          state.active--;
          state.log.push(`end:${name}`);
        }
      },
      countTokens: (t) => t.split(' ').filter(Boolean).length,
      lastStats: null,
      async dispose() {
        state.disposed.push(name);
        state.log.push(`dispose:${name}`);
      },
    };
    return model;
  };
  return { load, state };
}

function service(load: LoadModelFn, over: Partial<GenerationServiceOptions> = {}): GenerationService {
  return new GenerationService({
    load,
    baseModel: base,
    systemPromptFile: promptFile,
    defaults: { maxNewTokens: 8, temperature: 0.8, topP: 0.95, topK: 50, repetitionPenalty: 1.1 },
    timeoutS: 30,
    idleUnloadS: 0,
    queueMax: 10,
    maxTopicChars: 300,
    ...over,
  });
}

async function collect(stream: AsyncIterable<GenerationEvent>, tag?: string, log?: string[]): Promise<GenerationEvent[]> {
  const events: GenerationEvent[] = [];
  for await (const ev of stream) {
    events.push(ev);
    if (log && tag && ev.type !== 'text') log.push(`${tag}:${ev.type}${ev.type === 'queued' ? ev.position : ''}`);
  }
  return events;
}
const done = (events: GenerationEvent[]) => {
  const d = events.at(-1)!;
  if (d.type !== 'done') throw new Error(`last event is ${d.type}`);
  return d;
};
/** Runs a request to the end and returns its `done` event. */
const runToDone = async (svc: GenerationService, req: Parameters<GenerationService['generate']>[0]) => done(await collect(svc.generate(req)));

describe('GenerationService', () => {
  it('loads lazily on the first request, once, and keeps the model', async () => {
    const { load, state } = fakeEngine();
    const svc = service(load);
    expect(svc.status()).toMatchObject({ loaded: false, queueLength: 0, baseModel: base });
    expect(state.loads).toEqual([]);
    const first = done(await collect(svc.generate({ topic: 'late trains' })));
    expect(first).toMatchObject({ cut: false, reason: 'length', adapterId: null, baseModel: base, tokens: 8 });
    expect(first.text).toBe('[base] Write a column about late trains. w0 ');
    await collect(svc.generate({ topic: 'bread' }));
    expect(state.loads).toEqual(['base']);
    expect(svc.status()).toMatchObject({ loaded: true, device: 'cpu', quant: 'fp32', running: false });
    // System prompt from the file (comment stripped), then the topic.
    expect((state.streams[0]!.input as { messages: ChatMessage[] }).messages).toEqual([
      { role: 'system', content: 'You are the columnist.' },
      { role: 'user', content: 'Write a column about late trains.' },
    ]);
    await svc.close();
    expect(state.disposed).toEqual(['base']);
  });

  it('streams text events whose concatenation is the done text; stop reason when the engine ends early', async () => {
    const { load } = fakeEngine();
    const svc = service(load);
    const events = await collect(svc.generate({ topic: 'x', sampling: { maxNewTokens: 100 } }));
    const text = events.filter((e) => e.type === 'text').map((e) => (e as { text: string }).text).join('');
    expect(events[0]).toEqual({ type: 'queued', position: 1 });
    expect(events[1]).toEqual({ type: 'started' });
    expect(done(events).text).toBe(text);
    expect(done(events).reason).toBe('length');
    await svc.close();
  });

  it('serves requests FIFO, one at a time, reporting positions in order and never swapping answers', async () => {
    const { load, state } = fakeEngine({ tokenMs: 3 });
    const svc = service(load);
    const log: string[] = [];
    const topics = ['alpha', 'bravo', 'charlie', 'delta'];
    const results = await Promise.all(topics.map((t) => collect(svc.generate({ topic: t }), t, log)));
    results.forEach((events, i) => {
      expect(done(events).text).toContain(`about ${topics[i]}. `);
      for (const other of topics.filter((_, j) => j !== i)) expect(done(events).text).not.toContain(other);
      // Positions count down to 1 (next to run), then it starts.
      const positions = events.filter((e) => e.type === 'queued').map((e) => (e as { position: number }).position);
      expect(positions).toEqual(Array.from({ length: i + 1 }, (_, k) => i + 1 - k));
    });
    const startOrder = log.filter((l) => l.endsWith(':started')).map((l) => l.split(':')[0]);
    expect(startOrder).toEqual(topics);
    // Each request finishes before the next starts.
    const order = log.filter((l) => l.endsWith(':started') || l.endsWith(':done'));
    expect(order).toEqual(topics.flatMap((t) => [`${t}:started`, `${t}:done`]));
    expect(state.maxActive).toBe(1);
    expect(state.streams.map((s) => (s.input as { messages: ChatMessage[] }).messages[1]!.content)).toEqual(topics.map((t) => `Write a column about ${t}.`));
    await svc.close();
  });

  it('decodes as many requests at once as the model batches, admitted in arrival order; positions count free slots', async () => {
    const { load, state } = fakeEngine({ tokenMs: 10, maxBatch: 3 });
    const svc = service(load, { queueMax: 10 });
    const log: string[] = [];
    const topics = ['a', 'b', 'c', 'd', 'e', 'f', 'g'];
    const runs = topics.map((t) => collect(svc.generate({ topic: t, sampling: { maxNewTokens: 6 } }), t, log));
    await sleep(25);
    expect(svc.status()).toMatchObject({ running: true, runningCount: 3, maxBatch: 3, queueLength: 4 });
    const results = await Promise.all(runs);
    expect(state.maxActive).toBe(3);
    // Started in arrival order; each answer is its own request's.
    expect(log.filter((l) => l.endsWith(':started'))).toEqual(topics.map((t) => `${t}:started`));
    results.forEach((events, i) => expect(done(events).text).toContain(`about ${topics[i]}.`));
    // The last to arrive waited for a slot: its positions only ever went down, ending at 1.
    const positions = log.filter((l) => l.startsWith('g:queued')).map((l) => Number(l.slice('g:queued'.length)));
    expect(positions.at(-1)).toBe(1);
    expect([...positions].sort((x, y) => y - x)).toEqual(positions);
    expect(svc.status()).toMatchObject({ running: false, runningCount: 0, queueLength: 0 });
    await svc.close();
  });

  it('counts only waiting requests against the queue limit while a batch decodes', async () => {
    const { load } = fakeEngine({ tokenMs: 5, maxBatch: 3 });
    const svc = service(load, { queueMax: 2 });
    const first = collect(svc.generate({ topic: 'first' }));
    await sleep(20); // the model is loaded: three slots
    const more: Promise<GenerationEvent[]>[] = [];
    for (const t of ['two', 'three', 'four', 'five']) {
      more.push(collect(svc.generate({ topic: t })));
      await sleep(0); // admission runs between arrivals, as it does for requests from the network
    }
    expect(svc.status()).toMatchObject({ runningCount: 3, queueLength: 2 });
    expect(() => svc.generate({ topic: 'six' })).toThrow(expect.objectContaining({ code: 'BUSY' }));
    await Promise.all([first, ...more]);
    await svc.close();
  });

  it('after an adapter swap, admits nothing new until the batch on the old adapter is done', async () => {
    const { load, state } = fakeEngine({ tokenMs: 4, maxBatch: 4 });
    const v1 = adapterDir('batch-v1');
    const v2 = adapterDir('batch-v2');
    const svc = service(load, { adapter: { dir: v1, id: 'v1' } });
    const old = ['o1', 'o2', 'o3'].map((t) => collect(svc.generate({ topic: t, sampling: { maxNewTokens: 10 } })));
    await sleep(15);
    await svc.setAdapter(v2, 'v2');
    const fresh = ['n1', 'n2'].map((t) => collect(svc.generate({ topic: t, sampling: { maxNewTokens: 3 } })));
    const olds = await Promise.all(old);
    const news = await Promise.all(fresh);
    olds.forEach((e) => expect(done(e)).toMatchObject({ adapterId: 'v1', cut: false }));
    news.forEach((e) => expect(done(e).adapterId).toBe('v2'));
    // The old batch ended, its model went, then the new one started.
    const lastOldEnd = state.log.lastIndexOf('end:batch-v1');
    expect(state.log.indexOf('dispose:batch-v1')).toBeGreaterThan(lastOldEnd);
    expect(state.log.indexOf('start:batch-v2')).toBeGreaterThan(state.log.indexOf('dispose:batch-v1'));
    await svc.close();
  });

  it('answers BUSY when the queue is full, before queueing anything', async () => {
    const { load } = fakeEngine({ tokenMs: 5 });
    const svc = service(load, { queueMax: 2 });
    const running = collect(svc.generate({ topic: 'one' }));
    await sleep(1); // let it leave the queue
    const a = collect(svc.generate({ topic: 'two' }));
    const b = collect(svc.generate({ topic: 'three' }));
    let err: unknown;
    try {
      svc.generate({ topic: 'four' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MorrisError);
    expect((err as MorrisError).code).toBe('BUSY');
    expect(svc.status().queueLength).toBe(2);
    await Promise.all([running, a, b]);
    await svc.close();
  });

  it('returns the partial text marked cut when the time limit passes', async () => {
    const { load } = fakeEngine({ tokenMs: 20 });
    const svc = service(load, { timeoutS: 30 });
    const d = done(await collect(svc.generate({ topic: 'slow', timeoutS: 0.15, sampling: { maxNewTokens: 200 } })));
    expect(d).toMatchObject({ cut: true, reason: 'timeout' });
    expect(d.text.length).toBeGreaterThan(0);
    // At most ~8 of the 200 tokens fit in 150 ms at 20 ms each: stopped by the limit, not the length.
    expect('[base] Write a column about slow. w0 w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12'.startsWith(d.text.trimEnd())).toBe(true);
    await svc.close();
  });

  it('time limit holds even if the engine ignores the abort signal, and the next request waits for the engine', async () => {
    // The stubborn engine would need ≥ 20 × 50 ms to finish; the caller must not wait for that.
    const { load, state } = fakeEngine({ tokenMs: 50, ignoreSignal: true });
    const svc = service(load);
    const first = collect(svc.generate({ topic: 'stubborn', timeoutS: 0.1, sampling: { maxNewTokens: 20 } }));
    const second = collect(svc.generate({ topic: 'after', sampling: { maxNewTokens: 2 } }));
    const d1 = done(await first);
    expect(d1.reason).toBe('timeout');
    // The caller has its answer while the stubborn engine is still inside its stream.
    expect(state.active).toBe(1);
    expect(state.log).toEqual(['start:base']);
    await second;
    // The second request started only once the first engine stream had really ended (the
    // service closes it with return() rather than waiting for all 20 tokens).
    expect(state.maxActive).toBe(1);
    expect(state.log.slice(0, 4)).toEqual(['start:base', 'end:base', 'start:base', 'end:base']);
    await svc.close();
  });

  it('cancels through an AbortSignal, running or waiting, and the service carries on', async () => {
    const { load, state } = fakeEngine({ tokenMs: 10 });
    const svc = service(load);
    const runningCtl = new AbortController();
    const waitingCtl = new AbortController();
    const runningEvents: GenerationEvent[] = [];
    let textsSeen = 0;
    let sawTwo: () => void = () => undefined;
    const twoTexts = new Promise<void>((r) => (sawTwo = r));
    const running = (async () => {
      for await (const ev of svc.generate({ topic: 'running', signal: runningCtl.signal, sampling: { maxNewTokens: 100 } })) {
        runningEvents.push(ev);
        if (ev.type === 'text' && ++textsSeen === 2) sawTwo();
      }
      return runningEvents;
    })();
    const waiting = collect(svc.generate({ topic: 'waiting', signal: waitingCtl.signal }));
    const third = collect(svc.generate({ topic: 'third' }));
    await twoTexts;
    waitingCtl.abort();
    const w = await waiting;
    expect(done(w)).toMatchObject({ cut: true, reason: 'cancelled', text: '' });
    expect(w.some((e) => e.type === 'started')).toBe(false);
    runningCtl.abort();
    const r = done(await running);
    expect(r).toMatchObject({ cut: true, reason: 'cancelled' });
    expect(r.text).toMatch(/^\[base\] Write/);
    const t = await third;
    // The third moved from 3 to 2 (first one started) to 1 (waiting one left), and ran.
    expect(t.filter((e) => e.type === 'queued').map((e) => (e as { position: number }).position)).toEqual([3, 2, 1]);
    expect(done(t)).toMatchObject({ cut: false });
    expect(state.streams.map((s) => (s.input as { messages: ChatMessage[] }).messages[1]!.content)).toEqual(['Write a column about running.', 'Write a column about third.']);
    await svc.close();
  });

  it('treats a consumer that stops reading as a cancellation', async () => {
    const { load, state } = fakeEngine({ tokenMs: 5 });
    const svc = service(load);
    for await (const ev of svc.generate({ topic: 'bored', sampling: { maxNewTokens: 500 } })) if (ev.type === 'text') break;
    const next = done(await collect(svc.generate({ topic: 'next', sampling: { maxNewTokens: 3 } })));
    expect(next.cut).toBe(false);
    expect(state.maxActive).toBe(1);
    expect(state.log.filter((l) => l === 'end:base')).toHaveLength(2);
    await svc.close();
  });

  it('swaps the adapter without restart: the in-flight request finishes on the old model, which is disposed afterwards', async () => {
    const { load, state } = fakeEngine({ tokenMs: 10 });
    const v1 = adapterDir('adapter-v1');
    const v2 = adapterDir('adapter-v2');
    const svc = service(load, { adapter: { dir: v1, id: 'v1' } });
    const inflight = collect(svc.generate({ topic: 'old', sampling: { maxNewTokens: 12 } }));
    await sleep(40);
    expect(svc.status()).toMatchObject({ running: true, adapterId: 'v1' });
    await svc.setAdapter(v2, 'v2');
    expect(svc.status().adapterId).toBe('v2');
    expect(state.disposed).toEqual([]); // still in use
    const after = collect(svc.generate({ topic: 'new', sampling: { maxNewTokens: 3 } }));
    const d1 = done(await inflight);
    const d2 = done(await after);
    expect(d1).toMatchObject({ adapterId: 'v1', cut: false });
    expect(d1.text.startsWith('[adapter-v1]')).toBe(true);
    expect(d1.text.split(' ').filter(Boolean)).toHaveLength(12);
    expect(d2.adapterId).toBe('v2');
    expect(d2.text.startsWith('[adapter-v2]')).toBe(true);
    expect(state.loads).toEqual(['adapter-v1', 'adapter-v2']);
    // Old model disposed only after its last request ended.
    expect(state.log.indexOf('dispose:adapter-v1')).toBeGreaterThan(state.log.indexOf('end:adapter-v1'));
    // Back to the plain base model while idle: the adapter model goes at once.
    await svc.setAdapter(null, null);
    expect(state.disposed).toEqual(['adapter-v1', 'adapter-v2']);
    expect(done(await collect(svc.generate({ topic: 'plain', sampling: { maxNewTokens: 2 } }))).adapterId).toBeNull();
    await expect(svc.setAdapter(join(root, 'nope'), 'nope')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await svc.close();
  });

  it('unloads after the idle time and loads again on the next request', async () => {
    const { load, state } = fakeEngine();
    const svc = service(load, { idleUnloadS: 0.3 });
    await collect(svc.generate({ topic: 'one' }));
    const finished = Date.now();
    expect(svc.status().loaded).toBe(true);
    while (svc.status().loaded && Date.now() - finished < 5000) await sleep(10);
    expect(svc.status().loaded).toBe(false);
    expect(Date.now() - finished).toBeGreaterThanOrEqual(290);
    expect(state.disposed).toEqual(['base']);
    await collect(svc.generate({ topic: 'two' }));
    expect(state.loads).toEqual(['base', 'base']);
    await svc.close();
  });

  it('a model that fails to load gives a clear error and the service stays usable', async () => {
    const { load, state } = fakeEngine({ failLoads: 1 });
    const svc = service(load);
    await expect(collect(svc.generate({ topic: 'first' }))).rejects.toMatchObject({ code: 'MODEL_INVALID', message: expect.stringContaining('bad weights') });
    const d = done(await collect(svc.generate({ topic: 'second' })));
    expect(d.cut).toBe(false);
    expect(state.loads).toEqual(['base']);
    await svc.close();

    const missing = service(load, { baseModel: join(root, 'no-such-model') });
    await expect(collect(missing.generate({ topic: 'x' }))).rejects.toMatchObject({ code: 'MODEL_MISSING' });
    expect(missing.status()).toMatchObject({ loaded: false, running: false, queueLength: 0 });
    await missing.close();
  });

  it('an engine that throws outside its stream fails that request only; the next one is served', async () => {
    const { load: realLoad } = fakeEngine();
    let breakNext = 2;
    const load: LoadModelFn = async (o) => {
      const m = await realLoad(o);
      return {
        ...m,
        // First request: stream() itself throws (no generator); second: counting tokens throws.
        stream: (input, opts, signal) => {
          if (breakNext === 2) {
            breakNext--;
            throw new Error('session run failed: input shape');
          }
          return m.stream(input, opts, signal);
        },
        countTokens: (t) => {
          if (breakNext === 1) {
            breakNext--;
            throw new Error('tokenizer crashed');
          }
          return m.countTokens(t);
        },
      };
    };
    const svc = service(load);
    await expect(collect(svc.generate({ topic: 'first' }))).rejects.toMatchObject({ code: 'GENERATION_FAILED', message: expect.stringContaining('input shape') });
    await expect(collect(svc.generate({ topic: 'second' }))).rejects.toMatchObject({ code: 'GENERATION_FAILED', message: expect.stringContaining('tokenizer crashed') });
    const d = done(await collect(svc.generate({ topic: 'third' })));
    expect(d.text).toContain('third');
    expect(svc.status()).toMatchObject({ running: false, queueLength: 0 });
    await svc.close();
  });

  it('validates the topic: empty and over-long are BAD_INPUT, a 100 kB topic does not crash', async () => {
    const { load, state } = fakeEngine();
    const svc = service(load);
    for (const topic of ['', '   \n\t ']) {
      expect(() => svc.generate({ topic })).toThrow(expect.objectContaining({ code: 'BAD_INPUT', hint: expect.stringContaining('Usage') }));
    }
    expect(() => svc.generate({ topic: 'x'.repeat(301) })).toThrow(expect.objectContaining({ code: 'BAD_INPUT', message: expect.stringContaining('limit is 300') }));
    const huge = 'word '.repeat(20_000);
    expect(() => svc.generate({ topic: huge })).toThrow(expect.objectContaining({ code: 'BAD_INPUT', message: expect.stringContaining('Topic is 100000 characters') }));
    expect(() => svc.generate({ topic: 'ok', sampling: { topP: 0 } })).toThrow(expect.objectContaining({ code: 'BAD_INPUT' }));
    expect(() => svc.generate({ rawText: '' })).toThrow(expect.objectContaining({ code: 'BAD_INPUT' }));
    expect(state.loads).toEqual([]);
    // Whitespace is collapsed; the request then works.
    const d = done(await collect(svc.generate({ topic: '  the\n\nweather ', sampling: { maxNewTokens: 9 } })));
    expect(d.text).toContain('about the weather.');
    await svc.close();
  });

  it('passes sampling defaults and per-request overrides; raw text skips the chat template', async () => {
    const { load, state } = fakeEngine();
    const svc = service(load);
    await collect(svc.generate({ topic: 'a' }));
    await collect(svc.generate({ rawText: 'Once upon a time', sampling: { temperature: 0, topK: 0, seed: 42, maxNewTokens: 3 } }));
    expect(state.streams[0]!.opts).toEqual({ maxNewTokens: 8, temperature: 0.8, topP: 0.95, topK: 50, repetitionPenalty: 1.1 });
    expect(state.streams[1]!.opts).toEqual({ maxNewTokens: 3, temperature: 0, topP: 0.95, topK: 0, repetitionPenalty: 1.1, seed: 42 });
    expect(state.streams[1]!.input).toEqual({ text: 'Once upon a time' });
    await svc.close();
  });

  it('falls back to a built-in system prompt when the file is missing', async () => {
    const { load, state } = fakeEngine();
    const svc = service(load, { systemPromptFile: join(root, 'missing.md') });
    await collect(svc.generate({ topic: 'a' }));
    expect((state.streams[0]!.input as { messages: ChatMessage[] }).messages[0]).toEqual({ role: 'system', content: FALLBACK_SYSTEM_PROMPT });
    await svc.close();
  });
});

describe('GenerationService on the real engine (tiny model)', () => {
  it('hot-swaps a LoRA adapter: a request in flight keeps the old model, later ones use the new one', async () => {
    const { initTinyModel } = await import('../../src/model/tiny/index.ts');
    const { openCheckpoint } = await import('../../src/model/checkpoint/config.ts');
    const { writeRandomAdapter } = await import('../../src/model/checkpoint/random-checkpoint.ts');
    const { loadModel } = await import('../../src/model/inference/engine.ts');
    const dir = join(root, 'tiny-real');
    initTinyModel(dir, { arch: 'qwen2', seed: 4 });
    const lora = join(root, 'lora-real');
    writeRandomAdapter(lora, openCheckpoint(dir).config, { r: 8, alpha: 64, targets: ['q_proj', 'v_proj', 'down_proj'], seed: 9 });
    const svc = service(loadModel, { baseModel: dir, defaults: { maxNewTokens: 24, temperature: 0, topP: 1, topK: 0, repetitionPenalty: 1 } });
    const greedy = { topic: 'late trains' };
    const plain = await runToDone(svc, greedy);
    expect(plain).toMatchObject({ adapterId: null, cut: false, tokens: 24 });

    // Swap while a request is running: it must finish exactly as the plain model would.
    const inflight = runToDone(svc, greedy);
    await sleep(0);
    expect(svc.status().running).toBe(true);
    await svc.setAdapter(lora, 'lora-1');
    const adapted = await runToDone(svc, greedy);
    expect((await inflight).text).toBe(plain.text);
    expect(adapted.adapterId).toBe('lora-1');
    expect(adapted.text).not.toBe(plain.text);
    expect(svc.status()).toMatchObject({ loaded: true, adapterId: 'lora-1', device: 'cpu' });

    await svc.setAdapter(null, null);
    expect((await runToDone(svc, greedy)).text).toBe(plain.text);
    await svc.close();
    expect(svc.status().loaded).toBe(false);
  });

  it('batches requests on different adapters in one model: one load, each text what it is alone, swaps without a drain', async () => {
    const { initTinyModel } = await import('../../src/model/tiny/index.ts');
    const { openCheckpoint } = await import('../../src/model/checkpoint/config.ts');
    const { writeRandomAdapter } = await import('../../src/model/checkpoint/random-checkpoint.ts');
    const { loadModel } = await import('../../src/model/inference/engine.ts');
    const dir = join(root, 'tiny-pool');
    initTinyModel(dir, { seed: 5 });
    const cfg = openCheckpoint(dir).config;
    const loraA = join(root, 'lora-pool-a');
    const loraB = join(root, 'lora-pool-b');
    writeRandomAdapter(loraA, cfg, { r: 8, alpha: 64, targets: ['q_proj', 'v_proj', 'down_proj'], seed: 11 });
    writeRandomAdapter(loraB, cfg, { r: 4, alpha: 32, targets: ['k_proj', 'o_proj', 'gate_proj', 'up_proj'], seed: 12 });
    const defaults = { maxNewTokens: 20, temperature: 0, topP: 1, topK: 0, repetitionPenalty: 1 };
    const topics = ['late trains', 'the spectrum auction'];
    // Each adapter alone, in a service of its own.
    const alone = new Map<string, string>();
    for (const [name, adapter] of [['none', null], ['a', { dir: loraA, id: 'a' }], ['b', { dir: loraB, id: 'b' }]] as const) {
      const svc = service(loadModel, { baseModel: dir, adapter, defaults });
      for (const topic of topics) alone.set(`${name}:${topic}`, (await runToDone(svc, { topic })).text);
      await svc.close();
    }
    expect(new Set(alone.values()).size).toBe(6);

    let loads = 0;
    const counted: LoadModelFn = (o) => (loads++, loadModel(o));
    const svc = service(counted, { baseModel: dir, defaults });
    await runToDone(svc, { topic: 'warm-up', sampling: { maxNewTokens: 1 } });
    const runs: Promise<[string, string]>[] = [];
    let together = 0;
    const poll = setInterval(() => (together = Math.max(together, svc.status().runningCount)), 1);
    for (const [name, adapter] of [['none', null], ['a', loraA], ['b', loraB]] as const) {
      await svc.setAdapter(adapter, adapter ? name : null);
      for (const topic of topics) runs.push(runToDone(svc, { topic }).then((d) => [`${name}:${topic}`, d.text]));
      await sleep(0);
    }
    for (const [key, text] of await Promise.all(runs)) expect(text, key).toBe(alone.get(key));
    clearInterval(poll);
    expect(together).toBeGreaterThan(2); // requests on different adapters decoded in the same steps
    expect(loads).toBe(1);
    await svc.close();
  });

  it('in one batch, a cancelled request, one that times out and one whose adapter file is broken end alone; the others get their lone text', async () => {
    const { initTinyModel } = await import('../../src/model/tiny/index.ts');
    const { loadModel } = await import('../../src/model/inference/engine.ts');
    const dir = join(root, 'tiny-faults');
    initTinyModel(dir, { seed: 6 });
    const broken = adapterDir('lora-broken');
    writeFileSync(join(broken, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 8, lora_alpha: 16, target_modules: ['q_proj'] }));
    writeFileSync(join(broken, 'adapter_model.safetensors'), 'not a safetensors file');
    const defaults = { maxNewTokens: 40, temperature: 0, topP: 1, topK: 0, repetitionPenalty: 1 };
    const svc = service(loadModel, { baseModel: dir, defaults });
    const alone = new Map<string, string>();
    for (const topic of ['one', 'two']) alone.set(topic, (await runToDone(svc, { topic })).text);

    const ctl = new AbortController();
    const cancelled = (async () => {
      const events: GenerationEvent[] = [];
      for await (const ev of svc.generate({ topic: 'to be cancelled', signal: ctl.signal, sampling: { maxNewTokens: 400 } })) {
        events.push(ev);
        if (ev.type === 'text') ctl.abort();
      }
      return done(events);
    })();
    const slow = runToDone(svc, { topic: 'too slow', timeoutS: 0.05, sampling: { maxNewTokens: 2000 } });
    const one = runToDone(svc, { topic: 'one' });
    await sleep(0);
    await svc.setAdapter(broken, 'broken');
    const failed = collect(svc.generate({ topic: 'broken adapter' })).then(
      () => null,
      (e: unknown) => e,
    );
    await sleep(0); // it leaves the line with the broken adapter
    await svc.setAdapter(null, null);
    const two = runToDone(svc, { topic: 'two' });
    expect(await cancelled).toMatchObject({ reason: 'cancelled', cut: true });
    expect(await slow).toMatchObject({ reason: 'timeout', cut: true });
    expect(await failed).toMatchObject({ code: 'MODEL_INVALID', message: expect.stringContaining('lora-broken') });
    expect((await one).text).toBe(alone.get('one'));
    expect((await two).text).toBe(alone.get('two'));
    await svc.close();
  });
});
