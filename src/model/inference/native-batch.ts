/**
 * The native kernel as a batch kernel (batch-loop.ts): every step is one native call that advances
 * all rows, reading each weight matrix once for all of them; prompts are prefilled natively in
 * chunks between other sequences' decode tokens.
 *
 * Shared prompt prefixes: every request of one columnist starts with the same system prompt, so
 * recent prompts stay cached (a copy of their KV, under the adapter they ran with) and a new one
 * starts from the longest prefix it shares with any of them (a fork of that cache), as llama.cpp's
 * prompt cache and SGLang's radix cache do. No notion of "system prompt" is needed: an edited style
 * guide or another adapter simply shares less. A row's K/V do not depend on what else ran in its
 * step (the kernel's rows are bitwise independent), so a cached prefix gives exactly the tokens a
 * full prefill would.
 */
import type { AdapterPool } from './adapter-pool.ts';
import type { BatchKernel } from './batch-loop.ts';
import type { Generation, KernelStats } from './decode-loop.ts';
import type { NativeAdapter, NativeDecoder, NativeSequence } from './native-decoder.ts';

export interface NativeMember {
  readonly seq: NativeSequence;
  readonly adapter: NativeAdapter | null;
  /** Lets the adapter go once this sequence has ended. */
  readonly unpin: () => void;
}

/** A prompt's cache kept for later prompts that start the same way. */
interface CachedPrompt {
  readonly ids: readonly number[];
  readonly adapter: NativeAdapter | null;
  readonly seq: NativeSequence;
}

export interface NativeBatchOptions {
  /** The adapters resident beside the base weights, and the one a generation gets by default. */
  adapters: AdapterPool;
  defaultAdapterDir: string | null;
  /** Prompt tokens of one sequence per step (a chunk is one small GEMM). */
  prefillChunk: number;
  /** Prompts kept for prefix reuse (0 turns the cache off). */
  prefixCacheEntries: number;
  /** Their KV copies may take at most this much memory (bytes), and one position takes positionBytes. */
  prefixCacheBytes: number;
  positionBytes: number;
  /** Shorter shared prefixes are not worth a cache copy. */
  minPrefix: number;
}

export interface PrefixStats {
  /** Prompts that started from a cached prefix, and the prompt tokens that did not run. */
  hits: number;
  reusedTokens: number;
}

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/**
 * The batch kernel, and `forget`, which the adapter pool calls when an adapter goes: prompts
 * cached under it can never be reused.
 */
export function nativeBatches(decoder: NativeDecoder, stats: KernelStats, opts: NativeBatchOptions): BatchKernel<NativeMember> & { forget(adapter: NativeAdapter): void } {
  const cache: CachedPrompt[] = []; // most recently used last
  let logitsBuffer = new Float32Array(0);
  const prefix: PrefixStats = (stats.prefix ??= { hits: 0, reusedTokens: 0 });

  /** The cached prompt sharing the longest prefix with `ids` under `adapter`, and that length. */
  const bestPrefix = (ids: readonly number[], adapter: NativeAdapter | null): { entry: CachedPrompt; length: number } | null => {
    let best: { entry: CachedPrompt; length: number } | null = null;
    for (const entry of cache) {
      if (entry.adapter !== adapter) continue;
      // At least the prompt's last token must run: its logits choose the first new token.
      const length = Math.min(commonPrefix(entry.ids, ids), ids.length - 1);
      if (length >= opts.minPrefix && length > (best?.length ?? 0)) best = { entry, length };
    }
    return best;
  };

  return {
    prefillChunk: opts.prefillChunk,
    open(g: Generation) {
      const pinned = opts.adapters.pin(g.adapterDir === undefined ? opts.defaultAdapterDir : g.adapterDir);
      const adapter = pinned.adapter;
      try {
        const hit = opts.prefixCacheEntries > 0 ? bestPrefix(g.promptIds, adapter) : null;
        if (!hit) return { sequence: { seq: decoder.sequence(), adapter, unpin: pinned.unpin }, cached: 0 };
        const seq = hit.entry.seq.fork(hit.length);
        cache.splice(cache.indexOf(hit.entry), 1);
        cache.push(hit.entry);
        prefix.hits++;
        prefix.reusedTokens += hit.length;
        return { sequence: { seq, adapter, unpin: pinned.unpin }, cached: hit.length };
      } catch (e) {
        pinned.unpin();
        throw e;
      }
    },
    forget(adapter) {
      for (const e of cache.filter((c) => c.adapter === adapter)) {
        cache.splice(cache.indexOf(e), 1);
        e.seq.free();
      }
    },
    promptDone(member, ids) {
      if (opts.prefixCacheEntries === 0 || ids.length < opts.minPrefix) return;
      // A prompt wholly inside a cached one adds nothing new.
      if (cache.some((e) => e.adapter === member.adapter && commonPrefix(e.ids, ids) === ids.length)) return;
      if (ids.length * opts.positionBytes > opts.prefixCacheBytes) return;
      cache.push({ ids: [...ids], adapter: member.adapter, seq: member.seq.fork(ids.length) });
      const bytes = () => cache.reduce((n, e) => n + e.ids.length * opts.positionBytes, 0);
      while (cache.length > opts.prefixCacheEntries || bytes() > opts.prefixCacheBytes) cache.shift()!.seq.free();
    },
    async step(entries) {
      const rows = entries.flatMap((e) =>
        e.tokens.map((token, i) => ({
          sequence: e.sequence.seq,
          token,
          position: e.start + i,
          adapter: e.sequence.adapter,
          wantLogits: e.wantLogits && i === e.tokens.length - 1,
        })),
      );
      // The loop reads a step's logits before it asks for the next step (BatchKernel.step), so
      // every step writes into the same buffer, grown when more rows want logits.
      const wanted = rows.reduce((n, r) => n + (r.wantLogits ? 1 : 0), 0) * decoder.vocab;
      if (logitsBuffer.length < wanted) logitsBuffer = new Float32Array(wanted);
      const t0 = performance.now();
      const logits = await decoder.stepBatch(rows, logitsBuffer);
      const ms = performance.now() - t0;
      stats.nativeMs += ms;
      stats.nativeSteps++;
      if (rows.length > entries.length || entries.some((e) => !e.wantLogits)) {
        stats.prefillSteps = (stats.prefillSteps ?? 0) + 1;
        stats.prefillMs = (stats.prefillMs ?? 0) + ms;
      }
      return logits;
    },
    async close(member) {
      try {
        member.seq.free();
      } finally {
        member.unpin();
      }
    },
  };
}
