/**
 * The one FIFO waiting line with positions that both queues use (the generation service's and the
 * OpenAI backend's gate): two lanes, each first-in-first-out, where a foreground arrival goes ahead
 * of every waiting background one; each lane has its own cap, and an arrival past it is BUSY. Every
 * waiter hears its position (1 = next to leave) whenever it changes.
 */
import { MorrisError } from './errors.ts';

export interface Waiter {
  readonly background: boolean;
  onPosition(position: number): void;
}

export class WaitingLine<W extends Waiter> {
  private readonly entries: { waiter: W; lastPosition: number }[] = [];

  constructor(
    private readonly queueMax: number,
    /** Background waiters' own cap; they never count against queueMax. */
    private readonly backgroundQueueMax = queueMax,
    /** What a BUSY error tells the person, if the owner has something to add. */
    private readonly busyHint?: string,
  ) {}

  get length(): number {
    return this.entries.length;
  }

  /** The waiters, front first (a copy: the caller may remove while walking it). */
  waiters(): W[] {
    return this.entries.map((e) => e.waiter);
  }

  /** Throws BUSY when the waiter's lane is full; otherwise joins it and reports positions. */
  add(waiter: W): void {
    const sameLane = this.entries.filter((e) => e.waiter.background === waiter.background).length;
    if (sameLane >= (waiter.background ? this.backgroundQueueMax : this.queueMax)) {
      throw new MorrisError('BUSY', `Too many requests waiting (${sameLane}); please try again shortly.`, this.busyHint ? { hint: this.busyHint } : {});
    }
    const entry = { waiter, lastPosition: 0 };
    const firstBackground = this.entries.findIndex((e) => e.waiter.background);
    if (waiter.background || firstBackground < 0) this.entries.push(entry);
    else this.entries.splice(firstBackground, 0, entry);
    this.report();
  }

  /** Takes the waiter out of the line (it gave up); false when it was not waiting. */
  remove(waiter: W): boolean {
    const i = this.entries.findIndex((e) => e.waiter === waiter);
    if (i < 0) return false;
    this.entries.splice(i, 1);
    this.report();
    return true;
  }

  /** The next waiter to run, left in the line (to decide whether it can start yet). */
  peek(): W | undefined {
    return this.entries[0]?.waiter;
  }

  /** The next waiter to run, taken out of the line; undefined when nobody waits. */
  shift(): W | undefined {
    const next = this.entries.shift();
    if (next) this.report();
    return next?.waiter;
  }

  private report(): void {
    this.entries.forEach((e, i) => {
      if (e.lastPosition !== i + 1) {
        e.lastPosition = i + 1;
        e.waiter.onPosition(i + 1);
      }
    });
  }
}
