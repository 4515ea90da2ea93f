/**
 * One loaded model at a time, the one cache the generation service and the evaluation worker
 * share: asking for another key frees the current model first (two models rarely fit in memory
 * together), a load that fails leaves nothing behind so the next request tries again, and the
 * owner may ask for an unload after a quiet spell.
 */
export class ModelCache<T> {
  /** The model being loaded or loaded, under the key it was asked for. */
  private entry: { key: string; value: Promise<T> } | null = null;
  private ready: { key: string; value: T } | null = null;
  private idleTimer: NodeJS.Timeout | null = null;

  /** `dispose` frees one model (and may log it); it runs once per successful load. */
  constructor(private readonly dispose: (value: T) => Promise<void>) {}

  /** The loaded model, if one is ready. */
  get loaded(): T | null {
    return this.ready?.value ?? null;
  }

  get loading(): boolean {
    return this.entry !== null && this.ready?.key !== this.entry.key;
  }

  /** The model for `key`, loading it with `load` (after freeing any other) when it is not the current one. */
  async get(key: string, load: () => Promise<T>): Promise<T> {
    if (this.entry?.key === key) return this.entry.value;
    await this.unload();
    const value = load();
    const entry = { key, value };
    this.entry = entry;
    value.then(
      (v) => {
        if (this.entry === entry) this.ready = { key, value: v };
      },
      () => {
        // The error reaches get()'s caller; the next get() loads afresh.
        if (this.entry === entry) this.entry = null;
      },
    );
    return value;
  }

  /** Frees the current model unless it is the one under `key` (a hot swap's old model). */
  async keepOnly(key: string | null): Promise<void> {
    if (this.entry && this.entry.key !== key) await this.unload();
  }

  async unload(): Promise<void> {
    this.cancelIdleUnload();
    const entry = this.entry;
    if (!entry) return;
    this.entry = null;
    this.ready = null;
    // A model that failed to load has nothing to free; its error already reached get()'s caller.
    const value = await entry.value.then(
      (v) => ({ v }),
      () => null,
    );
    if (value) await this.dispose(value.v);
  }

  /**
   * Unloads after `ms` unless something cancels it first or `stillIdle` says otherwise by then.
   * The timer never keeps a process alive on its own.
   */
  unloadWhenIdle(ms: number, stillIdle: () => boolean, onError: (e: unknown) => void): void {
    this.cancelIdleUnload();
    if (ms <= 0 || !this.ready) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = null;
      if (stillIdle()) this.unload().catch(onError);
    }, ms);
    this.idleTimer.unref();
  }

  cancelIdleUnload(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }
}
