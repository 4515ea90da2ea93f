/**
 * One training at a time on the host, across processes. Training fills a small machine, so a
 * `morris train` in a terminal, a second `morris serve` and the service's own chains must take
 * turns. The turn is a lease row in the store (one kv key, claimed in an IMMEDIATE transaction, so
 * two processes can never both win): who holds it (pid, what it trains, which command) and a
 * heartbeat. A holder whose process is gone, or whose heartbeat stopped LEASE_EXPIRY_MS ago (a
 * frozen process, or its pid reused after a crash), no longer blocks: the next claimant takes it
 * over. A process that must wait says so, and for whom, and polls until its turn.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { deleteKv, getKv, setKv, type Store } from '../store/db.ts';
import { MorrisError } from '../errors.ts';
import { childLog } from '../log.ts';
import { isPidAlive } from '../pids.ts';

const log = childLog('jobs');

/** The kv key of the lease. */
export const LEASE_KEY = 'training.lease';
/** How often a holder renews its heartbeat. */
export const HEARTBEAT_MS = 5_000;
/** A heartbeat older than this is a holder that stopped (its pid may be reused): taken over. */
export const LEASE_EXPIRY_MS = 90_000;
/** How often a waiting process tries again. */
export const WAIT_POLL_MS = 500;

export interface LeaseHolder {
  pid: number;
  /** What it trains, for whoever waits ("retrain for rival"). */
  what: string;
  /** The command holding it ("morris serve", "morris train"). */
  command: string;
  since: string;
  heartbeat: string;
  /** Tells this claim from a later one by the same pid. */
  token: string;
}

/** Why a lease does not block anyone any more, or null while its holder is alive and beating. */
export function staleReason(h: LeaseHolder, now = Date.now()): string | null {
  if (!isPidAlive(h.pid)) return `its process ${h.pid} is gone`;
  const age = now - Date.parse(h.heartbeat);
  if (!(age <= LEASE_EXPIRY_MS)) return `its heartbeat stopped ${Math.round(age / 1000)} s ago`;
  return null;
}

function readLease(store: Store): LeaseHolder | null {
  const raw = getKv(store, LEASE_KEY);
  if (!raw) return null;
  try {
    return JSON.parse(raw) as LeaseHolder;
  } catch {
    return null; // a hand-edited or torn value blocks nobody; the next claim overwrites it
  }
}

/** The live holder of the host's training turn, or null when it is free (a stale one is free). */
export function trainingLeaseHolder(store: Store, now = Date.now()): LeaseHolder | null {
  const h = readLease(store);
  return h && staleReason(h, now) === null ? h : null;
}

export type ClaimOutcome = { claimed: true; lease: LeaseHolder; tookOverFrom?: { holder: LeaseHolder; why: string } } | { claimed: false; holder: LeaseHolder };

/** One attempt: takes the lease when it is free or stale, in one IMMEDIATE transaction. */
export function claimTrainingLease(store: Store, who: { what: string; command: string; pid?: number }, now = Date.now()): ClaimOutcome {
  return store
    .transaction((): ClaimOutcome => {
      const current = readLease(store);
      const why = current ? staleReason(current, now) : null;
      if (current && why === null) return { claimed: false, holder: current };
      const at = new Date(now).toISOString();
      const lease: LeaseHolder = { pid: who.pid ?? process.pid, what: who.what, command: who.command, since: at, heartbeat: at, token: randomBytes(6).toString('hex') };
      setKv(store, LEASE_KEY, JSON.stringify(lease));
      return current && why ? { claimed: true, lease, tookOverFrom: { holder: current, why } } : { claimed: true, lease };
    })
    .immediate();
}

/** Renews the heartbeat; false when the lease is no longer ours (it was taken over as stale). */
export function renewTrainingLease(store: Store, lease: LeaseHolder, now = Date.now()): boolean {
  return store
    .transaction(() => {
      const current = readLease(store);
      if (current?.token !== lease.token) return false;
      setKv(store, LEASE_KEY, JSON.stringify({ ...current, heartbeat: new Date(now).toISOString() }));
      return true;
    })
    .immediate();
}

/** Gives the lease back, only if it is still ours. */
export function releaseTrainingLease(store: Store, lease: LeaseHolder): void {
  store
    .transaction(() => {
      if (readLease(store)?.token === lease.token) deleteKv(store, LEASE_KEY);
    })
    .immediate();
}

/** One line about a holder for a waiting person or a log. */
export function describeHolder(h: LeaseHolder): string {
  return `${h.what} (${h.command}, pid ${h.pid}, since ${h.since})`;
}

export interface LeaseWaitOptions {
  signal?: AbortSignal;
  /** Called when this process starts waiting, and again whenever the holder changes. */
  onWait?: (holder: LeaseHolder) => void;
  pollMs?: number;
}

/**
 * Runs `work` holding the host's training lease: waits for it (saying for whom), heartbeats while
 * `work` runs, and gives it back however `work` ends. An abort while waiting throws CANCELLED.
 */
export async function withTrainingLease<T>(store: Store, who: { what: string; command: string }, work: () => Promise<T>, opts: LeaseWaitOptions = {}): Promise<T> {
  let lastToken: string | null = null;
  let lease: LeaseHolder;
  for (;;) {
    if (opts.signal?.aborted) throw new MorrisError('CANCELLED', `gave up waiting for the host's training turn (${who.what})`);
    const c = claimTrainingLease(store, who);
    if (c.claimed) {
      if (c.tookOverFrom) log.warn({ holder: c.tookOverFrom.holder, why: c.tookOverFrom.why }, `took over the host's training turn from ${describeHolder(c.tookOverFrom.holder)}: ${c.tookOverFrom.why}`);
      lease = c.lease;
      break;
    }
    if (c.holder.token !== lastToken) {
      lastToken = c.holder.token;
      log.info({ holder: c.holder, waiting: who.what }, `waiting for the host's training turn: held by ${describeHolder(c.holder)}`);
      opts.onWait?.(c.holder);
    }
    // An abort ends the wait at once; the loop's first line then throws CANCELLED.
    await sleep(opts.pollMs ?? WAIT_POLL_MS, undefined, { signal: opts.signal }).catch(() => undefined);
  }
  const beat = setInterval(() => {
    try {
      if (!renewTrainingLease(store, lease)) log.warn({ lease }, "the host's training turn was taken over while this training ran (its heartbeat was late)");
    } catch (e) {
      log.warn({ err: e }, "cannot renew the host's training turn");
    }
  }, HEARTBEAT_MS);
  beat.unref();
  try {
    return await work();
  } finally {
    clearInterval(beat);
    releaseTrainingLease(store, lease);
  }
}
