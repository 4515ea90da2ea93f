/**
 * One training at a time on the host, queued fairly. Training (and the gate's evaluation after
 * it) fills the machine, so chains of different columnists take turns: a voice whose chain reaches
 * retrain while another voice trains waits for its turn instead of being skipped, in the order
 * they arrived. A voice is in the line at most once at a time, because a chain of the same voice
 * cannot start while its previous one runs (the runner skips it), so first come, first served is
 * also fair between voices. Given the store, a turn also holds the host's training lease
 * (host-lease.ts), so a `morris train` in a terminal or a second `morris serve` waits for it, and
 * this process waits for theirs.
 */
import type { Store } from '../store/db.ts';
import { withTrainingLease, type LeaseHolder } from './host-lease.ts';

export class TrainingQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private readonly line: string[] = [];
  private readonly closing = new AbortController();
  private waitingFor: LeaseHolder | null = null;

  /** `host`: the store whose lease every turn holds, and the command named to whoever waits. */
  constructor(private readonly host?: { store: Store; command: string }) {}

  /** Runs `work` once every earlier turn has ended (whatever its outcome), holding the host's lease. */
  turn<T>(columnist: string, work: () => Promise<T>): Promise<T> {
    this.line.push(columnist);
    const run = this.tail.then(() => {
      this.line.splice(this.line.indexOf(columnist), 1);
      if (!this.host) return work();
      return withTrainingLease(
        this.host.store,
        { what: `training for ${columnist}`, command: this.host.command },
        () => {
          this.waitingFor = null;
          return work();
        },
        {
          signal: this.closing.signal,
          // withTrainingLease logs whom it waits for ("training for <voice>"); here it is only remembered for status.
          onWait: (h) => {
            this.waitingFor = h;
          },
        },
      ).finally(() => (this.waitingFor = null));
    });
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Voices waiting for their turn, first first (the one training now is not listed). */
  waiting(): string[] {
    return [...this.line];
  }

  /** The other process's training this process's next turn waits for, or null. */
  blockedBy(): LeaseHolder | null {
    return this.waitingFor;
  }

  /** Stops waiting for the host's lease (shutdown): a turn still waiting fails as cancelled. */
  close(): void {
    this.closing.abort();
  }
}
