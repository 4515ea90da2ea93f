/**
 * The whole loop in one serve process: a cron tick scrapes the sample site, rebuilds the dataset,
 * trains a tiny adapter in a worker process, evaluates it and promotes it, and the running
 * generation service answers with it. Then a worse adapter is evaluated and kept out.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServe, type ServeHandle } from '../../src/serve/start.ts';
import { loadConfig } from '../../src/config.ts';
import { getLogs, listRuns } from '../../src/store/job-runs.ts';
import { getAdapter } from '../../src/jobs/registry.ts';
import { readSafetensorsHeader, readTensorF32, writeSafetensors } from '../../src/model/checkpoint/safetensors.ts';
import { QUICK_TRAIN, startTinyServe, tinyEnv, waitFor } from './helpers.ts';

let root: string;
let h: ServeHandle;
let close: () => Promise<void>;

beforeAll(async () => {
  // Cron has minutes, not seconds: the first tick is fired now, exactly as the cron fires it.
  ({ root, h, close } = await startTinyServe('morris-serve-chain-', { MORRIS_CRON_RESCRAPE: '* * * * *', MORRIS_CRON_TZ: 'Europe/London' }));
  void h.scheduler.tick('rescrape');
}, 60_000);

afterAll(async () => close?.());

describe('serve: cron → chain → promoted adapter', () => {
  it('a cron tick runs rescrape → rebuild → retrain → evaluate and the generation service uses the new adapter', async () => {
    const active = await waitFor(() => h.registry.active(), 150_000, 500);
    await h.scheduler.stop();
    await h.scheduler.settled();

    const byJob = (job: string) => listRuns(h.store, { job, limit: 100 }).filter((r) => r.status !== 'skipped');
    const scrape = byJob('rescrape').at(-1);
    expect(scrape!.trigger).toBe('cron');
    expect(scrape!.status).toBe('succeeded');
    const rebuild = byJob('rebuild').at(-1)!;
    const retrain = byJob('retrain').at(-1)!;
    const evaluate = byJob('evaluate').at(-1)!;
    expect([rebuild.parent_id, retrain.parent_id, evaluate.parent_id]).toEqual([scrape!.id, rebuild.id, retrain.id]);
    expect(evaluate.message).toMatch(/^promoted: validation loss .* beats base/);
    expect((retrain.result as { adapterId: string }).adapterId).toBe(active.id);
    // Later ticks rescraped, found nothing new and stopped there: one dataset, one training.
    expect(byJob('retrain')).toHaveLength(1);
    const later = byJob('rescrape').filter((r) => r.id > scrape!.id && r.status === 'succeeded');
    for (const r of later) expect(getLogs(h.store, r.id).map((l) => l.line)).toContain('chain stops here: the scrape found nothing new or changed');

    // Hot swap: no restart, and the next generation answers with the promoted adapter.
    expect(h.service.status().adapterId).toBe(active.id);
    let done: { adapterId?: string | null; text: string } | undefined;
    for await (const ev of h.generator.generate({ topic: 'Another 6G white paper', maxNewTokens: 16, requestId: 't1' })) {
      if (ev.type === 'done') done = ev;
    }
    expect(done!.adapterId).toBe(active.id);
    const ev = active.eval as { candidate: { valLoss: number }; base: { valLoss: number } };
    expect(ev.candidate.valLoss).toBeLessThan(ev.base.valLoss);
  }, 180_000);

  it('a worse adapter is evaluated against the active one and kept as a candidate with the reason', async () => {
    const active = h.registry.active()!;
    // A damaged copy of the active adapter: the same shapes, its B matrices blown up.
    const worseDir = path.join(root, 'models', 'adapters', 'worse');
    fs.cpSync(active.path, worseDir, { recursive: true });
    const file = path.join(worseDir, 'adapter_model.safetensors');
    const tensors: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
    for (const [name, entry] of readSafetensorsHeader(file).tensors) {
      const data = readTensorF32(entry);
      if (name.includes('lora_B')) for (let i = 0; i < data.length; i++) data[i] = (i % 7) - 3;
      tensors[name] = { dtype: 'F32', shape: [...entry.shape], data };
    }
    writeSafetensors(file, tensors, { format: 'pt' });
    h.store
      .prepare(`INSERT INTO adapters (id, base_model, dataset_id, path, status, metrics) VALUES ('worse', ?, ?, ?, 'candidate', '{}')`)
      .run(active.base_model, active.dataset_id, worseDir);

    const s = await h.control.start('evaluate', { trigger: 'test', input: { adapterId: 'worse' } });
    const [run] = await s.finished;
    expect(run!.status).toBe('succeeded');
    expect(run!.message).toMatch(/^not promoted: validation loss .* does not beat lora-/);
    expect(h.registry.active()!.id).toBe(active.id);
    const worse = getAdapter(h.store, 'worse');
    expect(worse.status).toBe('candidate');
    expect(worse.reason).toMatch(/does not beat/);
    expect(h.service.status().adapterId).toBe(active.id);
  }, 120_000);
});

describe('serve start-up', () => {
  it('a port in use is a CONFIG_INVALID error naming the address', async () => {
    const port = Number(new URL(h.url).port);
    const config = loadConfig(tinyEnv(fs.mkdtempSync(path.join(root, 'second-'))));
    await expect(startServe({ config, port, host: '127.0.0.1', bots: false })).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
      message: expect.stringContaining(`127.0.0.1:${port}: the port is in use`),
    });
  });
});

describe('training worker budget', () => {
  it('a worker over MORRIS_TRAIN_MEMORY_MB is stopped with a message that says which setting to raise', async () => {
    const { runWorker } = await import('../../src/jobs/fork-worker.ts');
    const { currentDatasetId } = await import('../../src/jobs/handlers.ts');
    const logs: string[] = [];
    const adaptersDir = path.join(root, 'models', 'adapters-budget');
    await expect(
      runWorker(
        {
          kind: 'train',
          options: {
            dbPath: h.store.name,
            baseModelDir: path.join(root, 'models', 'tiny'),
            datasetId: currentDatasetId(h.store),
            runsDir: path.join(root, 'data', 'runs-budget'),
            adaptersDir,
            resume: false,
            // Far more steps than the watchdog's first samples allow (it samples every RSS_CHECK_MS),
            // and no early stop: 200 steps, or a stop after three evaluations without gain (44 steps
            // once), could finish within a second, before any sample, and write an adapter.
            settings: { ...QUICK_TRAIN, maxSteps: 20_000, patience: 0, threads: 1 },
          },
        },
        // Below what Node + ONNX Runtime need for even the tiny model.
        { threads: 1, memoryMb: 256 },
        { onLog: (l) => logs.push(l) },
      ),
    ).rejects.toThrow(/over the memory budget \(MORRIS_TRAIN_MEMORY_MB=256\)/);
    expect(logs.some((l) => /worker uses \d+ MB, over MORRIS_TRAIN_MEMORY_MB=256/.test(l))).toBe(true);
    // Stopped by the watchdog, not by reaching its end: the training wrote no adapter.
    expect(fs.existsSync(adaptersDir) ? fs.readdirSync(adaptersDir) : []).toEqual([]);
  }, 90_000);
});
