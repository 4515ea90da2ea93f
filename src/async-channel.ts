/**
 * A single-consumer async queue: a producer pushes, ends or fails it; one consumer iterates it with
 * `for await`. The one channel the engine (token pieces) and the generation service (events) share.
 * `onReturn` fires if the consumer stops iterating before the end, so the producer can stop too.
 */
export class AsyncChannel<T> implements AsyncIterable<T> {
  private items: T[] = [];
  private waiter: ((r: IteratorResult<T>) => void) | null = null;
  private failWaiter: ((e: unknown) => void) | null = null;
  private ended = false;
  private error: unknown = null;

  constructor(private readonly onReturn: () => void = () => {}) {}

  push(item: T): void {
    if (this.ended) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = this.failWaiter = null;
      w({ value: item, done: false });
    } else this.items.push(item);
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.wake();
  }

  fail(e: unknown): void {
    if (this.ended) return;
    this.error = e;
    this.ended = true;
    this.wake();
  }

  private wake(): void {
    if (!this.waiter || this.items.length) return;
    const w = this.waiter;
    const f = this.failWaiter!;
    this.waiter = this.failWaiter = null;
    if (this.error) f(this.error);
    else w({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        if (this.items.length) return Promise.resolve({ value: this.items.shift()!, done: false });
        if (this.ended) {
          if (this.error) {
            const e = this.error;
            this.error = null;
            return Promise.reject(e);
          }
          return Promise.resolve({ value: undefined, done: true });
        }
        return new Promise((res, rej) => {
          this.waiter = res;
          this.failWaiter = rej;
        });
      },
      return: () => {
        if (!this.ended) this.onReturn();
        this.ended = true;
        this.items = [];
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
