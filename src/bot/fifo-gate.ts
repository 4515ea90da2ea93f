/**
 * A gate with a fixed number of slots in front of the shared waiting line (src/waiting-line.ts):
 * the OpenAI-compatible backend uses it as its global queue, as the in-process GenerationService
 * uses the same line in front of its one model.
 */
import { MorrisError } from '../errors.ts';
import { WaitingLine } from '../waiting-line.ts';

interface Waiter {
  readonly background: boolean;
  onPosition(position: number): void;
  admit(): void;
}

export class FifoGate {
  private active = 0;
  private readonly line: WaitingLine<Waiter>;

  constructor(
    private readonly slots: number,
    queueMax: number,
    /** Background waiters' own cap; they queue behind every foreground waiter. */
    backgroundQueueMax = queueMax,
  ) {
    if (slots < 1) throw new RangeError('slots must be at least 1');
    this.line = new WaitingLine(queueMax, backgroundQueueMax);
  }

  get running(): number {
    return this.active;
  }

  get queued(): number {
    return this.line.length;
  }

  /**
   * Waits for a slot; resolves with a release function (call it exactly once). Throws BUSY when
   * the queue is full and CANCELLED when `signal` aborts while waiting.
   */
  enter(onPosition: (position: number) => void, signal?: AbortSignal, background = false): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(new MorrisError('CANCELLED', 'Cancelled before it started.'));
    if (this.active < this.slots && this.line.length === 0) {
      this.active++;
      return Promise.resolve(this.releaser());
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        background,
        onPosition,
        admit: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve(this.releaser());
        },
      };
      const onAbort = () => {
        this.line.remove(waiter);
        reject(new MorrisError('CANCELLED', 'Cancelled while waiting in the queue.'));
      };
      // A full lane throws BUSY here, which rejects this promise.
      this.line.add(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.line.shift();
      if (next) next.admit();
      else this.active--;
    };
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
