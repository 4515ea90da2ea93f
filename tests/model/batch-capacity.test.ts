/**
 * The batch a model serves fits its KV cache budget: too small a budget shrinks the configured
 * batch, with a warning at load that says which settings to change, and the service admits that
 * many at once.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';

const warnings = vi.hoisted(() => [] as { component: string; msg: string }[]);
vi.mock('../../src/log.ts', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/log.ts')>();
  return {
    ...real,
    childLog(component: string) {
      const logger = real.childLog(component);
      return new Proxy(logger, {
        get(target, key, receiver) {
          if (key !== 'warn') return Reflect.get(target, key, receiver);
          return (obj: unknown, msg?: string) => {
            warnings.push({ component, msg: typeof obj === 'string' ? obj : String(msg) });
            return target.warn(obj as object, msg);
          };
        },
      });
    },
  };
});

const { batchCapacity, kvBytesPerSequence } = await import('../../src/model/inference/batch-capacity.ts');
const { loadModel } = await import('../../src/model/inference/engine.ts');
const { GenerationService } = await import('../../src/model/serving/generation-service.ts');
const { initTinyModel } = await import('../../src/model/tiny/index.ts');
const { openCheckpoint } = await import('../../src/model/checkpoint/config.ts');

const root = mkdtempSync(join(tmpdir(), 'morris-batchcap-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('batch capacity', () => {
  const cfg = { numLayers: 30, numKvHeads: 3, headDim: 64, maxPositionEmbeddings: 2048 } as Parameters<typeof batchCapacity>[0];
  const perSequence = kvBytesPerSequence(cfg, 2048);

  it('keeps the configured batch when its caches fit, and shrinks it with a message when they do not', () => {
    expect(perSequence).toBe(30 * 2 * 3 * 64 * 2048 * 4);
    expect(batchCapacity(cfg, 8, perSequence * 8)).toEqual({ maxBatch: 8, shrunk: null });
    const small = batchCapacity(cfg, 8, perSequence * 3.5);
    expect(small.maxBatch).toBe(3);
    expect(small.shrunk).toMatch(/MORRIS_MAX_BATCH=8 needs 720 MB .* over the 315 MB budget \(MORRIS_KV_MEMORY_MB\); serving 3 at once\. Raise MORRIS_KV_MEMORY_MB or lower MORRIS_MAX_BATCH/);
    // Never below one: a budget under one sequence still serves, one at a time.
    expect(batchCapacity(cfg, 4, 1).maxBatch).toBe(1);
  });

  it('a model loaded with too small a KV budget serves fewer at once, says so in a warning, and the service admits that many', async () => {
    const dir = join(root, 'tiny');
    initTinyModel(dir, { seed: 3 });
    const tiny = openCheckpoint(dir).config;
    const budget = Math.floor(kvBytesPerSequence(tiny, tiny.maxPositionEmbeddings) * 2.5);
    const m = await loadModel({ modelDir: dir, cacheDir: join(root, 'cache'), device: 'cpu', decodeKernel: 'native', maxBatch: 6, kvBudgetBytes: budget });
    try {
      expect(m.info).toMatchObject({ maxBatch: 2, batchShrunk: expect.stringMatching(/^MORRIS_MAX_BATCH=6 needs .* serving 2 at once/) });
      expect(warnings).toContainEqual({ component: 'engine', msg: m.info.batchShrunk });
    } finally {
      await m.dispose();
    }
    const svc = new GenerationService({
      load: (o) => loadModel({ ...o, cacheDir: join(root, 'cache'), maxBatch: 6, kvBudgetBytes: budget }),
      baseModel: dir,
      systemPromptFile: null,
      defaults: { maxNewTokens: 30, temperature: 0, topP: 1, topK: 0, repetitionPenalty: 1 },
      timeoutS: 60,
      idleUnloadS: 0,
      queueMax: 10,
      maxTopicChars: 300,
      decodeKernel: 'native',
    });
    for await (const _ of svc.generate({ topic: 'warm-up', sampling: { maxNewTokens: 1 } }));
    let most = 0;
    const poll = setInterval(() => (most = Math.max(most, svc.status().runningCount)), 1);
    await Promise.all(['a', 'b', 'c', 'd'].map(async (topic) => { for await (const _ of svc.generate({ topic })); }));
    clearInterval(poll);
    expect(svc.status().maxBatch).toBe(2);
    expect(most).toBe(2);
    await svc.close();
  });
});
