/**
 * One training at a time on the host, across processes (jobs/host-lease.ts): the lease's rules on
 * one store, then real processes — two `morris train` runs started together train one after the
 * other (the second says it waits, and for whom), and a holder killed with SIGKILL is taken over
 * by the `morris train` waiting on it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/store/db.ts';
import { initTinyModel } from '../../src/model/tiny/index.ts';
import { importDataset } from '../../src/pipeline/dataset/import.ts';
import {
  claimTrainingLease,
  LEASE_EXPIRY_MS,
  releaseTrainingLease,
  renewTrainingLease,
  trainingLeaseHolder,
  withTrainingLease,
} from '../../src/jobs/host-lease.ts';
import { TrainingQueue } from '../../src/jobs/training-queue.ts';
import { waitFor } from './helpers.ts';
import { MORRIS_BIN, REPO_ROOT } from '../morris-cli.ts';

let root: string;
let dataDir: string;
let modelDir: string;
const children: ChildProcess[] = [];

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-lease-'));
  dataDir = path.join(root, 'data');
  modelDir = path.join(root, 'tiny');
  initTinyModel(modelDir, { seed: 3, dims: { hidden: 32, intermediate: 64, layers: 2, heads: 4, kvHeads: 2 } });
  const rows = Array.from({ length: 8 }, (_, i) =>
    JSON.stringify({ split: i < 6 ? 'train' : 'validation', messages: [{ role: 'user', content: `Write about masts ${i}.` }, { role: 'assistant', content: `Masts ${i} are shared, sensibly.` }] }),
  );
  fs.writeFileSync(path.join(root, 'ds.jsonl'), rows.join('\n'));
  const store = openStore(path.join(dataDir, 'morris.db'));
  importDataset(store, path.join(root, 'ds.jsonl'));
  store.close();
});

afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  fs.rmSync(root, { recursive: true, force: true });
});

const env = () => ({ ...process.env, MORRIS_DATA_DIR: dataDir, MORRIS_MODELS_DIR: path.join(root, 'models'), LOG_LEVEL: 'warn' });

interface Ran {
  code: number | null;
  out: string;
  err: string;
  /** When the child wrote each stderr chunk (ms since the epoch) and what. */
  errAt: { at: number; text: string }[];
}

function start(args: string[], extraEnv: Record<string, string> = {}): { child: ChildProcess; done: Promise<Ran>; err: () => string } {
  const child = spawn(process.execPath, args, { cwd: REPO_ROOT, env: { ...env(), ...extraEnv } });
  children.push(child);
  const r: Ran = { code: null, out: '', err: '', errAt: [] };
  child.stdout!.on('data', (d: Buffer) => (r.out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => {
    r.err += d.toString();
    r.errAt.push({ at: Date.now(), text: d.toString() });
  });
  const done = new Promise<Ran>((resolve) => child.on('close', (code) => resolve({ ...r, code })));
  return { child, done, err: () => r.err };
}

/** `morris train` on the tiny model: a few steps, its own seed (so its own run folder). */
const train = (seed: number) =>
  start([MORRIS_BIN, 'train', '--model', modelDir, '--threads', '1', '--no-progress', '--steps', '6', '--rank', '4', '--alpha', '8', '--max-seq-len', '64', '--seed', String(seed)]);

/** A process that takes the lease and holds it until killed (a training that never ends). */
const holder = () =>
  start(
    [
      '--import',
      'tsx',
      '--input-type=module',
      '-e',
      `import { openStore } from './src/store/db.ts';
       import { withTrainingLease } from './src/jobs/host-lease.ts';
       const store = openStore(process.env.LEASE_DB);
       await withTrainingLease(store, { what: 'a training that never ends', command: 'lease-holder' }, () => { process.stdout.write('holding\\n'); return new Promise(() => setInterval(() => {}, 1000)); });`,
    ],
    { LEASE_DB: path.join(dataDir, 'morris.db') },
  );

/** [first, last] time of the training steps of each run, from the store's metrics. */
function stepSpans(store: Store): { run: string; from: string; to: string }[] {
  return store.prepare(`SELECT run_id AS run, MIN(at) AS "from", MAX(at) AS "to" FROM train_metrics GROUP BY run_id ORDER BY "from"`).all() as { run: string; from: string; to: string }[];
}

describe('the lease on one store', () => {
  it('one claimant at a time; the holder renews and releases only its own claim; a stale one is taken over', () => {
    const store = openStore(path.join(root, 'rules.db'));
    try {
      const a = claimTrainingLease(store, { what: 'retrain for morris', command: 'morris serve' });
      expect(a.claimed).toBe(true);
      const b = claimTrainingLease(store, { what: 'SFT training for rival', command: 'morris train' });
      expect(b).toMatchObject({ claimed: false, holder: { pid: process.pid, what: 'retrain for morris', command: 'morris serve' } });
      expect(trainingLeaseHolder(store)?.what).toBe('retrain for morris');
      if (!a.claimed) throw new Error('unreachable');
      // A heartbeat that stopped LEASE_EXPIRY_MS ago no longer blocks (a frozen holder, or a reused pid).
      const later = Date.now() + LEASE_EXPIRY_MS + 1000;
      expect(trainingLeaseHolder(store, later)).toBeNull();
      const c = claimTrainingLease(store, { what: 'SFT training for rival', command: 'morris train' }, later);
      expect(c).toMatchObject({ claimed: true, tookOverFrom: { holder: { what: 'retrain for morris' }, why: expect.stringMatching(/heartbeat stopped \d+ s ago/) } });
      // The old holder finds it is no longer its own: it cannot renew or release the new claim.
      expect(renewTrainingLease(store, a.lease)).toBe(false);
      releaseTrainingLease(store, a.lease);
      expect(trainingLeaseHolder(store, later)?.what).toBe('SFT training for rival');
      if (!c.claimed) throw new Error('unreachable');
      expect(renewTrainingLease(store, c.lease, later)).toBe(true);
      releaseTrainingLease(store, c.lease);
      expect(trainingLeaseHolder(store)).toBeNull();
      // A holder whose process is gone blocks nobody either.
      claimTrainingLease(store, { what: 'a dead one', command: 'morris serve', pid: 2 ** 22 + 12345 });
      expect(claimTrainingLease(store, { what: 'next', command: 'morris train' })).toMatchObject({ claimed: true, tookOverFrom: { why: expect.stringMatching(/process \d+ is gone/) } });
    } finally {
      store.close();
    }
  });

  it('a waiter says for whom it waits, runs when the turn is free, and gives up on abort', async () => {
    const store = openStore(path.join(root, 'wait.db'));
    try {
      const first = claimTrainingLease(store, { what: 'retrain for morris', command: 'morris serve' });
      if (!first.claimed) throw new Error('unreachable');
      const waits: string[] = [];
      let ran = false;
      const waiting = withTrainingLease(store, { what: 'DPO training for house', command: 'morris train' }, async () => void (ran = true), { pollMs: 20, onWait: (h) => waits.push(h.what) });
      await new Promise((r) => setTimeout(r, 100));
      expect([ran, waits]).toEqual([false, ['retrain for morris']]);
      releaseTrainingLease(store, first.lease);
      await waiting;
      expect(ran).toBe(true);
      expect(trainingLeaseHolder(store)).toBeNull(); // given back after the work
      const again = claimTrainingLease(store, { what: 'retrain for morris', command: 'morris serve' });
      const abort = new AbortController();
      const gaveUp = withTrainingLease(store, { what: 'x', command: 'y' }, async () => 1, { pollMs: 20, signal: abort.signal });
      abort.abort();
      await expect(gaveUp).rejects.toMatchObject({ code: 'CANCELLED' });
      if (again.claimed) releaseTrainingLease(store, again.lease);
    } finally {
      store.close();
    }
  });
});

describe('across real processes', () => {
  it('two `morris train` started together train one after the other; the second says it waits and for whom', async () => {
    const [a, b] = [train(1), train(2)];
    const [ra, rb] = await Promise.all([a.done, b.done]);
    expect(ra.code, ra.err).toBe(0);
    expect(rb.code, rb.err).toBe(0);
    const waited = [ra, rb].filter((r) => /waiting: the host trains one thing at a time and SFT training for morris \(morris train, pid \d+, since /.test(r.err));
    expect(waited).toHaveLength(1);
    const store = openStore(path.join(dataDir, 'morris.db'));
    try {
      const spans = stepSpans(store);
      expect(spans).toHaveLength(2);
      // The second run's first step came after the first run's last one.
      expect(spans[1]!.from > spans[0]!.to).toBe(true);
      expect(trainingLeaseHolder(store)).toBeNull();
    } finally {
      store.close();
    }
  }, 180_000);

  it('a holder killed with SIGKILL is taken over by the `morris train` waiting on it', async () => {
    const h = holder();
    const store = openStore(path.join(dataDir, 'morris.db'));
    try {
      await waitFor(() => trainingLeaseHolder(store)?.pid === h.child.pid, 30_000, 50);
      const t = train(3);
      await waitFor(() => /waiting: .*a training that never ends \(lease-holder, pid \d+/.test(t.err()), 60_000, 100);
      const before = stepSpans(store).length;
      const killedAt = Date.now();
      h.child.kill('SIGKILL');
      const r = await t.done;
      expect(r.code, r.err).toBe(0);
      expect(r.err).toMatch(/took over the host's training turn from a training that never ends \(lease-holder, pid \d+.*\): its process \d+ is gone/);
      // It trained after the kill, not before.
      const spans = stepSpans(store);
      expect(spans).toHaveLength(before + 1);
      expect(Date.parse(spans.at(-1)!.from)).toBeGreaterThanOrEqual(killedAt - 1000);
      expect(trainingLeaseHolder(store)).toBeNull();
    } finally {
      store.close();
    }
  }, 180_000);

  it("a serve's training queue waits its turn behind another process's training, and says whose", async () => {
    const h = holder();
    const store = openStore(path.join(dataDir, 'morris.db'));
    try {
      await waitFor(() => trainingLeaseHolder(store)?.pid === h.child.pid, 30_000, 50);
      const queue = new TrainingQueue({ store, command: 'morris serve' });
      let ran = false;
      const turn = queue.turn('rival', async () => {
        ran = true;
        return trainingLeaseHolder(store);
      });
      await waitFor(() => queue.blockedBy()?.command === 'lease-holder', 10_000, 50);
      expect(ran).toBe(false);
      h.child.kill('SIGKILL');
      // While its work runs, the queue holds the lease in the serve's name.
      expect(await turn).toMatchObject({ pid: process.pid, what: 'training for rival', command: 'morris serve' });
      expect(queue.blockedBy()).toBeNull();
      expect(trainingLeaseHolder(store)).toBeNull();
      // Closing the queue (shutdown) makes a turn still waiting give up instead of hanging.
      const other = holder();
      await waitFor(() => trainingLeaseHolder(store)?.pid === other.child.pid, 30_000, 50);
      const waiting = queue.turn('morris', async () => 'ran');
      await waitFor(() => queue.blockedBy() !== null, 10_000, 50);
      queue.close();
      await expect(waiting).rejects.toMatchObject({ code: 'CANCELLED' });
      other.child.kill('SIGKILL');
    } finally {
      store.close();
    }
  }, 60_000);
});
