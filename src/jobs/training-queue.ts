/**
 * One training at a time on the host, queued fairly. Training (and the gate's evaluation after
 * it) fills the machine, so chains of different columnists take turns: a voice whose chain reaches
 * retrain while another voice trains waits for its turn instead of being skipped, in the order
 * they arrived. A voice is in the line at most once at a time, because a chain of the same voice
 * cannot start while its previous one runs (the runner skips it), so first come, first served is
 * also fair between voices. Across processes (a CLI `morris train` next to `morris serve`) the
 * store's run lock still refuses a second training (store/job-runs.ts EXCLUSIVE_ON_HOST).
 */
export class TrainingQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private readonly line: string[] = [];

  /** Runs `work` once every earlier turn has ended (whatever its outcome). */
  turn<T>(columnist: string, work: () => Promise<T>): Promise<T> {
    this.line.push(columnist);
    const run = this.tail.then(() => {
      this.line.splice(this.line.indexOf(columnist), 1);
      return work();
    });
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Voices waiting for their turn, first first (the one training now is not listed). */
  waiting(): string[] {
    return [...this.line];
  }
}
