/**
 * The playground's lane in both queues (the in-process service and the OpenAI backend's FIFO
 * gate): background requests wait behind every foreground one, have their own cap, and never
 * count against the foreground queue, so web traffic cannot make a bot user wait or be refused.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FifoGate } from '../src/bot/fifo-gate.ts';
import { GenerationService, type GenerationEvent, type LoadModelFn } from '../src/model/serving/generation-service.ts';
import type { LoadedModel } from '../src/model/inference/engine.ts';

const root = mkdtempSync(join(tmpdir(), 'morris-lanes-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
writeFileSync(join(root, 'config.json'), '{}');
mkdirSync(join(root, 'x'), { recursive: true });

describe('FifoGate lanes', () => {
  it('a foreground waiter goes ahead of background ones; each lane has its own cap', async () => {
    const gate = new FifoGate(1, 1, 2);
    const order: string[] = [];
    const positions: Record<string, number[]> = { b1: [], b2: [], f1: [] };
    const release0 = await gate.enter(() => undefined); // the running one
    const b1 = gate.enter((p) => positions.b1!.push(p), undefined, true).then((r) => (order.push('b1'), r));
    const b2 = gate.enter((p) => positions.b2!.push(p), undefined, true).then((r) => (order.push('b2'), r));
    await expect(gate.enter(() => undefined, undefined, true)).rejects.toMatchObject({ code: 'BUSY' });
    const f1 = gate.enter((p) => positions.f1!.push(p)).then((r) => (order.push('f1'), r));
    // The background lane is full, the foreground lane still has its one place, now taken.
    await expect(gate.enter(() => undefined)).rejects.toMatchObject({ code: 'BUSY' });
    expect(positions).toEqual({ b1: [1, 2], b2: [2, 3], f1: [1] });
    release0();
    (await f1)();
    (await b1)();
    (await b2)();
    expect(order).toEqual(['f1', 'b1', 'b2']);
  });
});

describe('GenerationService lanes', () => {
  it('runs a foreground request before background ones queued earlier, and background never fills the foreground queue', async () => {
    const ran: string[] = [];
    const load: LoadModelFn = async (o) =>
      ({
        info: { modelDir: o.modelDir, adapterDir: null, device: 'cpu', quant: 'fp32', decodeKernel: 'onnx', decodeLoop: 'morris', maxBatch: 1, batchShrunk: null, adapterPool: false },
        kernelStats: { nativeSteps: 0, nativeMs: 0, onnxRuns: 0 },
        async *stream(input: { messages: { content: string }[] } | { text: string }) {
          const topic = 'messages' in input ? input.messages.at(-1)!.content : input.text;
          ran.push(topic);
          await new Promise((r) => setTimeout(r, 20));
          yield `${topic} `;
        },
        countTokens: () => 1,
        lastStats: null,
        async dispose() {},
      }) as unknown as LoadedModel;
    const service = new GenerationService({
      load,
      baseModel: root,
      systemPromptFile: null,
      defaults: { maxNewTokens: 4, temperature: 0, topP: 1, topK: 0, repetitionPenalty: 1 },
      timeoutS: 10,
      idleUnloadS: 0,
      queueMax: 1,
      backgroundQueueMax: 2,
      maxTopicChars: 300,
    });
    const drain = async (it: AsyncIterable<GenerationEvent>) => {
      const positions: number[] = [];
      for await (const ev of it) if (ev.type === 'queued') positions.push(ev.position);
      return positions;
    };
    const running = drain(service.generate({ topic: 'first', background: true }));
    await new Promise((r) => setTimeout(r, 5));
    const web1 = drain(service.generate({ topic: 'web one', background: true }));
    const web2 = drain(service.generate({ topic: 'web two', background: true }));
    expect(() => service.generate({ topic: 'web three', background: true })).toThrow(/Too many requests waiting/);
    // Two background requests wait, yet the foreground queue (1 place) is untouched.
    const slack = drain(service.generate({ topic: 'slack' }));
    expect(() => service.generate({ topic: 'slack two' })).toThrow(/Too many requests waiting/);
    const [, p1, p2, ps] = await Promise.all([running, web1, web2, slack]);
    // The user turn is the column instruction around the topic; its last word is the topic's.
    expect(ran.map((t) => /(first|slack|one|two)\W*$/.exec(t)?.[1])).toEqual(['first', 'slack', 'one', 'two']);
    expect(ps).toEqual([1]);
    // Each web request was pushed back one place when the Slack request arrived.
    expect(p1).toEqual([1, 2, 1]);
    expect(p2).toEqual([2, 3, 2, 1]);
    await service.close();
  });
});
