/**
 * Continuous batching on the CPU: every generation running on one model shares one loop, and each
 * step of it advances all of them at once. On the CPU a decode step is bound by reading the
 * weights, so a kernel that streams them once for every sequence in the step (the native batched
 * step) turns B requests into nearly B times the tokens per second.
 *
 * A generation joins at the next step: its prompt is prefilled in chunks (at most `prefillBudget`
 * prompt tokens a step across all joining sequences, so a long prompt delays the others' next
 * token by one chunk, not by the whole prompt); once its last prompt token has run, it decodes one
 * token a step beside the others and leaves as soon as it stops. Each member keeps its own
 * sampling, seed, stop tokens, limit and cancellation (all inside its Generation), so its tokens
 * are the ones it would have produced alone whenever the kernel's rows do not depend on each other
 * (the native kernel's are bitwise independent; see tests/model/batch-loop.test.ts).
 *
 * A failure that belongs to one member (a NaN logit row, its sampler throwing) ends that member
 * alone; a failed kernel step ends the members that were in it.
 */
import { MorrisError } from '../../errors.ts';
import type { Generation } from './decode-loop.ts';

/** One sequence's share of a step: `tokens` appended from position `start`. */
export interface BatchEntry<S> {
  readonly sequence: S;
  readonly tokens: readonly number[];
  readonly start: number;
  /** Whether the logits after the last of `tokens` are needed (a prompt's middle chunks skip them). */
  readonly wantLogits: boolean;
}

/** What the loop needs from a kernel that can advance several sequences in one step. */
export interface BatchKernel<S> {
  /**
   * The most prompt tokens one step takes for one sequence; Infinity when a prompt must go in one
   * piece (a kernel without chunked prefill).
   */
  readonly prefillChunk: number;
  /**
   * A sequence for a generation, and how many of its prompt's first tokens are already in its
   * cache (a shared prefix the kernel kept from an earlier prompt; 0 for an empty one).
   */
  open(g: Generation): { sequence: S; cached: number };
  /** Called once the whole prompt is in the sequence's cache (a kernel may keep it for later prompts). */
  promptDone?(sequence: S, promptIds: readonly number[]): void;
  /**
   * Runs every entry; returns the logits of the entries that want them, in entry order. They may
   * be views of one buffer the next step overwrites: the loop reads them before it steps again.
   */
  step(entries: readonly BatchEntry<S>[]): Promise<Float32Array[]>;
  /** Gives the sequence's cache back (it is never in a running step when this is called). */
  close(sequence: S): Promise<void>;
}

interface Member<S> {
  readonly g: Generation;
  readonly sequence: S;
  /** Prompt tokens already in the cache. */
  prefilled: number;
  /** Every id so far (prompt + generated), as the sampler's repetition rules see them. */
  readonly seen: number[];
  /** The last chosen token, to run in the next step; null while prefilling. */
  pending: number | null;
  generated: number;
  resolve(): void;
  reject(e: unknown): void;
}

export interface BatchLoopOptions {
  /** Prompt tokens prefilled per step across all joining sequences (at least one chunk a step). */
  prefillBudget: number;
}

function hasNonFinite(row: Float32Array): boolean {
  for (let i = 0; i < row.length; i++) if (!Number.isFinite(row[i]!)) return true;
  return false;
}

export class BatchLoop<S> {
  private readonly members: Member<S>[] = [];
  private readonly arrivals: { g: Generation; resolve(): void; reject(e: unknown): void }[] = [];
  private running = false;
  /** Steps run and the rows they held, for benchmarks and tests. */
  readonly stats = { steps: 0, rows: 0, maxMembers: 0 };

  constructor(
    private readonly kernel: BatchKernel<S>,
    private readonly opts: BatchLoopOptions,
  ) {}

  /** Generations in the loop now (decoding, or waiting for the next step to join). */
  get size(): number {
    return this.members.length + this.arrivals.length;
  }

  /**
   * Runs `g` to its end alongside whatever else is decoding. Stops where transformers.js's generate
   * stops: after a stop token (kept), after maxNewTokens, or when asked to.
   */
  run(g: Generation): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.arrivals.push({ g, resolve, reject });
      if (!this.running) void this.loop();
    });
  }

  /**
   * Opens the sequences of generations that arrived since the last step. Only here, between
   * steps: a kernel's caches and adapters may not change while a step runs.
   */
  private admit(): void {
    for (const { g, resolve, reject } of this.arrivals.splice(0)) {
      let opened: { sequence: S; cached: number };
      try {
        opened = this.kernel.open(g);
      } catch (e) {
        reject(e);
        continue;
      }
      g.streamer.put([g.promptIds.map((v) => BigInt(v))]);
      this.members.push({ g, sequence: opened.sequence, prefilled: opened.cached, seen: [...g.promptIds], pending: null, generated: 0, resolve, reject });
    }
    this.stats.maxMembers = Math.max(this.stats.maxMembers, this.members.length);
  }

  private async loop(): Promise<void> {
    this.running = true;
    try {
      for (this.admit(); this.members.length > 0; this.admit()) {
        // A generation cancelled before its first token leaves without running its prompt further.
        for (const m of this.members.filter((m) => m.pending === null && m.g.isStopped())) await this.finish(m);
        const work = this.plan();
        if (work.length === 0) continue;
        let logits: Float32Array[];
        try {
          logits = await this.kernel.step(work.map((w) => w.entry));
        } catch (e) {
          for (const { member } of work) await this.finish(member, e);
          continue;
        }
        this.stats.steps++;
        this.stats.rows += work.reduce((n, w) => n + w.entry.tokens.length, 0);
        let next = 0;
        for (const { member, entry } of work) {
          if (member.pending === null) member.prefilled += entry.tokens.length;
          if (entry.wantLogits) {
            if (member.pending === null) this.promptDone(member);
            await this.advance(member, logits[next++]!);
          }
        }
      }
    } finally {
      this.running = false;
    }
  }

  /** This step's entries: every decoding member's token, then prompt chunks in arrival order. */
  private plan(): { member: Member<S>; entry: BatchEntry<S> }[] {
    const work: { member: Member<S>; entry: BatchEntry<S> }[] = [];
    for (const m of this.members) {
      if (m.pending !== null) work.push({ member: m, entry: { sequence: m.sequence, tokens: [m.pending], start: m.seen.length - 1, wantLogits: true } });
    }
    // The first prompt in line always moves, so a budget below one token still makes progress.
    let budget = Math.max(this.opts.prefillBudget, 1);
    for (const m of this.members) {
      if (m.pending !== null) continue;
      const left = m.g.promptIds.length - m.prefilled;
      // A kernel that cannot chunk takes a whole prompt, one prompt a step.
      const take = this.kernel.prefillChunk === Infinity ? left : Math.min(left, this.kernel.prefillChunk, budget);
      work.push({ member: m, entry: { sequence: m.sequence, tokens: m.g.promptIds.slice(m.prefilled, m.prefilled + take), start: m.prefilled, wantLogits: take === left } });
      budget -= take;
      if (budget <= 0) break;
    }
    return work;
  }

  private promptDone(m: Member<S>): void {
    try {
      this.kernel.promptDone?.(m.sequence, m.g.promptIds);
    } catch {
      // Keeping a prompt for reuse is an optimisation; failing to (no memory for the copy) is not an error.
    }
  }

  /** Chooses the member's next token from its logits; ends it when it stops. */
  private async advance(m: Member<S>, logits: Float32Array): Promise<void> {
    let token: number;
    try {
      if (hasNonFinite(logits)) {
        throw new MorrisError('GENERATION_FAILED', 'The model produced non-finite logits for this request.', { hint: 'Check the adapter and the checkpoint; other requests were not affected.' });
      }
      token = m.g.choose(logits, m.seen);
      m.seen.push(token);
      m.generated++;
      m.g.streamer.put([[BigInt(token)]]);
    } catch (e) {
      await this.finish(m, e);
      return;
    }
    if (m.generated >= m.g.maxNewTokens || m.g.eos.includes(token) || m.g.isStopped()) await this.finish(m);
    else m.pending = token;
  }

  /** Takes the member out of the loop, gives its cache back and settles its run(). */
  private async finish(m: Member<S>, error?: unknown): Promise<void> {
    const i = this.members.indexOf(m);
    if (i < 0) return;
    this.members.splice(i, 1);
    let failure = error;
    try {
      await this.kernel.close(m.sequence);
    } catch (e) {
      failure ??= e;
    }
    if (failure !== undefined) {
      m.reject(failure);
      return;
    }
    try {
      m.g.streamer.end();
      m.resolve();
    } catch (e) {
      m.reject(e);
    }
  }
}
