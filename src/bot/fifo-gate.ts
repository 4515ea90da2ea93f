/**
 * A first-in-first-out gate with a fixed number of slots that tells each waiter its position
 * (1 = next to run) whenever it changes. The OpenAI-compatible backend uses it as its global
 * queue; the in-process GenerationService has its own.
 */
import { MorrisError } from '../errors.ts';

interface Waiter {
  readonly background: boolean;
  onPosition(position: number): void;
  admit(): void;
  lastPosition: number;
}

export class FifoGate {
  private active = 0;
  private readonly waiting: Waiter[] = [];

  constructor(
    private readonly slots: number,
    private readonly queueMax: number,
    /** Background waiters' own cap; they queue behind every foreground waiter. */
    private readonly backgroundQueueMax = queueMax,
  ) {
    if (slots < 1) throw new RangeError('slots must be at least 1');
  }

  get running(): number {
    return this.active;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /**
   * Waits for a slot; resolves with a release function (call it exactly once). Throws BUSY when
   * the queue is full and CANCELLED when `signal` aborts while waiting.
   */
  enter(onPosition: (position: number) => void, signal?: AbortSignal, background = false): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(new MorrisError('CANCELLED', 'Cancelled before it started.'));
    if (this.active < this.slots && this.waiting.length === 0) {
      this.active++;
      return Promise.resolve(this.releaser());
    }
    const sameLane = this.waiting.filter((w) => w.background === background).length;
    if (sameLane >= (background ? this.backgroundQueueMax : this.queueMax)) {
      return Promise.reject(new MorrisError('BUSY', `Too many requests waiting (${sameLane}); please try again shortly.`));
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        background,
        lastPosition: 0,
        onPosition,
        admit: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve(this.releaser());
        },
      };
      const onAbort = () => {
        const i = this.waiting.indexOf(waiter);
        if (i >= 0) this.waiting.splice(i, 1);
        this.report();
        reject(new MorrisError('CANCELLED', 'Cancelled while waiting in the queue.'));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const firstBackground = this.waiting.findIndex((w) => w.background);
      if (background || firstBackground < 0) this.waiting.push(waiter);
      else this.waiting.splice(firstBackground, 0, waiter);
      this.report();
    });
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next.admit();
      else this.active--;
      this.report();
    };
  }

  private report(): void {
    this.waiting.forEach((w, i) => {
      if (w.lastPosition !== i + 1) {
        w.lastPosition = i + 1;
        w.onPosition(i + 1);
      }
    });
  }
}

/**
 * Runs `body` inside the gate as an async generator: yields `queued` positions while waiting,
 * then everything `body` yields; the slot is released however the consumer stops.
 */
export async function* throughGate<T>(
  gate: FifoGate,
  signal: AbortSignal | undefined,
  body: () => AsyncGenerator<T>,
  background = false,
): AsyncGenerator<T | { type: 'queued'; position: number }> {
  const positions: number[] = [];
  let wake: (() => void) | null = null;
  let release: (() => void) | null = null;
  let failure: unknown = null;
  let abandoned = false;
  gate
    .enter((p) => {
      positions.push(p);
      wake?.();
    }, signal, background)
    .then(
      (r) => {
        if (abandoned) return r(); // the consumer left while queued: hand the slot straight on
        release = r;
        wake?.();
      },
      (e: unknown) => {
        failure = e;
        wake?.();
      },
    );
  try {
    for (;;) {
      while (positions.length) yield { type: 'queued', position: positions.shift()! };
      if (failure) throw failure;
      if (release) break;
      await new Promise<void>((r) => (wake = r));
      wake = null;
    }
    yield* body();
  } finally {
    if (release) (release as () => void)();
    else abandoned = true;
  }
}
