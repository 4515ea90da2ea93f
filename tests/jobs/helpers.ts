import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openStore, type Store } from '../../src/store/db.ts';

/** A fresh SQLite store in its own temp folder; `cleanup` closes and removes it. */
export function tempStore(prefix = 'morris-jobs-'): { store: Store; dir: string; dbPath: string; cleanup(): void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const dbPath = path.join(dir, 'morris.db');
  const store = openStore(dbPath);
  return {
    store,
    dir,
    dbPath,
    cleanup() {
      if (store.open) store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A promise with its resolve function outside, to hold a job open until the test says so. */
export function deferred<T = void>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

export async function waitFor<T>(fn: () => T | undefined | false | null, timeoutMs = 10_000, stepMs = 50): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/**
 * A short style guide for dataset builds keeps training sequences small for the tiny model (the
 * real guide alone is ~1,100 of its tokens).
 */
export const SHORT_STYLE = {
  systemPrompt: 'You are Morris, a dry British telecoms columnist. Signature phrases: "What could possibly go wrong?", "Cue the consultants".',
  extras: [],
};

/** Quick training for the tiny model: a few steps with a high rate so the loss moves. */
export const QUICK_TRAIN = { maxSteps: 8, saveEvery: 2, evalEvery: 4, lr: 2e-2, rank: 4, alpha: 8, gradAccum: 1, warmupSteps: 1, maxSeqLen: 384 };

/** Environment for a serve process on a temp folder with a tiny model. */
export function tinyEnv(root: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    MORRIS_DATA_DIR: path.join(root, 'data'),
    MORRIS_MODELS_DIR: path.join(root, 'models'),
    MORRIS_BASE_MODEL: path.join(root, 'models', 'tiny'),
    MORRIS_RATE_LIMIT_RPS: '100',
    MORRIS_CRON_RESCRAPE: 'off',
    MORRIS_RETRAIN_MIN_NEW_EXAMPLES: '1',
    MORRIS_MAX_SEQ_TOKENS: '384',
    MORRIS_MAX_NEW_TOKENS: '48',
    // A random tiny model has no style to measure: the gate decides on loss and copying alone.
    MORRIS_STYLE_TOLERANCE: '1',
    MORRIS_TRAIN_THREADS: '1',
    MORRIS_THREADS: '1',
    MORRIS_ADMIN_TOKEN: 'test-admin-token',
    MORRIS_SHUTDOWN_GRACE_S: '20',
    LOG_LEVEL: 'warn',
    ...extra,
  };
}

/** Creates the tiny model under `root`. */
export async function prepareTinyRoot(root: string): Promise<void> {
  const { initTinyModel } = await import('../../src/model/tiny/index.ts');
  initTinyModel(path.join(root, 'models', 'tiny'));
}

/**
 * A serve process (in this test process) on a fresh temp root with the tiny model, crawling the
 * sample site, training quickly with the short style; `close` stops it and removes everything.
 */
export async function startTinyServe(
  prefix: string,
  extraEnv: Record<string, string> = {},
  serveOpts: Partial<import('../../src/serve/start.ts').ServeOptions> = {},
) {
  const { setConfigForTests } = await import('../../src/config.ts');
  const { startSampleSite } = await import('../../src/pipeline/crawl/sample-site.ts');
  const { startServe } = await import('../../src/serve/start.ts');
  const root = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  await prepareTinyRoot(root);
  const site = await startSampleSite({ port: 0 });
  const config = setConfigForTests(tinyEnv(root, extraEnv));
  let h: Awaited<ReturnType<typeof startServe>>;
  try {
    h = await startServe({
      config,
      port: 0,
      host: '127.0.0.1',
      sources: [{ name: 'sample-archive', baseUrl: site.url }],
      trainOverrides: QUICK_TRAIN,
      style: SHORT_STYLE,
      bots: false,
      ...serveOpts,
    });
  } catch (e) {
    await site.close();
    fs.rmSync(root, { recursive: true, force: true });
    throw e;
  }
  return {
    root,
    h,
    async close() {
      await h.stop('test over');
      await site.close();
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
}
