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
