/**
 * The LoRA adapters resident beside one native decoder's base weights: each request names its
 * adapter (or none), sequences in one step may use different ones, and the most recently used stay
 * loaded, so promoting, rolling back or switching columnist costs no reload of the base model.
 *
 * An adapter in use by a sequence is pinned: it is never released under it, even when newer ones
 * push it out of the pool (it goes when its last sequence ends). An adapter folder whose file
 * changed on disk is read afresh. A file that cannot be read fails the request that named it,
 * nobody else's.
 */
import { statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { MorrisError } from '../../errors.ts';
import { childLog } from '../../log.ts';
import type { DecoderConfig } from '../checkpoint/config.ts';
import { readAdapter } from '../checkpoint/lora.ts';
import type { NativeAdapter, NativeDecoder } from './native-decoder.ts';

const log = childLog('engine');

interface Entry {
  readonly dir: string;
  readonly identity: string;
  readonly adapter: NativeAdapter;
  pins: number;
  /** Out of the pool: released when its last pin goes. */
  evicted: boolean;
}

export interface PinnedAdapter {
  /** null: the base model alone. */
  readonly adapter: NativeAdapter | null;
  /** The folder it came from (resolved), or null. */
  readonly dir: string | null;
  unpin(): void;
}

/** What identifies one version of an adapter folder: its weights file's size and change time. */
function identityOf(dir: string): string {
  try {
    const s = statSync(join(dir, 'adapter_model.safetensors'));
    return `${s.size}:${s.mtimeMs}`;
  } catch {
    return 'missing';
  }
}

export class AdapterPool {
  private readonly entries: Entry[] = []; // least recently used first

  constructor(
    private readonly decoder: NativeDecoder,
    private readonly cfg: DecoderConfig,
    /** Adapters kept loaded while unused (those in use are kept regardless). */
    private readonly capacity: number,
    /** Told when an adapter leaves for good, so caches keyed by it can drop their entries. */
    private readonly onRelease: (adapter: NativeAdapter) => void = () => undefined,
  ) {}

  /** Adapters loaded now (in use or kept). */
  get size(): number {
    return this.entries.length;
  }

  /** The adapter in `dir` (null: none), loaded if it is not resident, pinned until unpin(). */
  pin(dir: string | null): PinnedAdapter {
    if (dir === null) return { adapter: null, dir: null, unpin: () => undefined };
    const abs = resolve(dir);
    const identity = identityOf(abs);
    let entry = this.entries.find((e) => e.dir === abs && e.identity === identity && !e.evicted);
    if (entry) this.entries.splice(this.entries.indexOf(entry), 1);
    else entry = this.load(abs, identity);
    this.entries.push(entry);
    entry.pins++;
    this.trim();
    let pinned = true;
    const e = entry;
    return {
      adapter: e.adapter,
      dir: abs,
      unpin: () => {
        if (!pinned) return;
        pinned = false;
        e.pins--;
        if (e.evicted && e.pins === 0) this.release(e);
        this.trim();
      },
    };
  }

  /** Releases every adapter not in use (the decoder is going). */
  clear(): void {
    for (const e of [...this.entries]) {
      e.evicted = true;
      if (e.pins === 0) this.release(e);
    }
  }

  private load(dir: string, identity: string): Entry {
    try {
      const adapter = this.decoder.loadAdapter(readAdapter(dir, this.cfg));
      log.info({ adapterDir: dir, resident: this.entries.length + 1 }, 'adapter loaded beside the base model');
      return { dir, identity, adapter, pins: 0, evicted: false };
    } catch (e) {
      throw new MorrisError('MODEL_INVALID', `Cannot load the LoRA adapter in ${dir}: ${e instanceof Error ? e.message : String(e)}.`, {
        hint: 'Check adapter_config.json and adapter_model.safetensors, or roll back to the previous adapter.',
        cause: e,
      });
    }
  }

  /** Keeps at most `capacity` unused adapters, dropping the least recently used first. */
  private trim(): void {
    // A newer version of a folder replaces the older one as soon as the older one is unused.
    for (const e of this.entries) {
      if (!e.evicted && this.entries.some((o) => o !== e && o.dir === e.dir && this.entries.indexOf(o) > this.entries.indexOf(e))) e.evicted = true;
    }
    let excess = this.entries.filter((e) => !e.evicted).length - this.capacity;
    for (const e of this.entries) {
      if (excess <= 0) break;
      if (!e.evicted && e.pins === 0) {
        e.evicted = true;
        excess--;
      }
    }
    for (const e of this.entries.filter((x) => x.evicted && x.pins === 0)) this.release(e);
  }

  private release(e: Entry): void {
    const i = this.entries.indexOf(e);
    if (i >= 0) this.entries.splice(i, 1);
    this.onRelease(e.adapter);
    try {
      e.adapter.release();
    } catch (err) {
      log.warn({ adapterDir: e.dir, err: err instanceof Error ? err.message : String(err) }, 'adapter not released; it goes with the decoder');
    }
  }
}
