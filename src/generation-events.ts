/**
 * The events one generation yields, from whoever writes it (the in-process service, the
 * OpenAI-compatible backend, a test fake) to whoever shows it (the bots' core, the CLI). It sits
 * at the top of src/ so that model/ and bot/ share it without either importing the other.
 *
 * In order: any number of `queued` (position 1 = next to run), one `started`, any number of
 * `text` (each a new piece to append), then exactly one `done`. Failures are thrown (a MorrisError
 * with a code such as MODEL_MISSING, BUSY, BACKEND_ERROR) and end the stream.
 */

export interface DoneEvent {
  type: 'done';
  /** The whole text generated, authoritative even if some `text` events were not read. */
  text: string;
  /** True when stopped early (time limit, cancellation): the text is partial. */
  cut: boolean;
  /** Why it stopped, e.g. 'stop', 'length', 'timeout', 'cancelled'. */
  reason?: string;
  /** Which model wrote it, when the writer knows. */
  adapterId?: string | null;
  datasetId?: string | null;
  baseModel?: string | null;
}

/** `D` narrows `done` for a writer that always reports more (the service's counts and timings). */
export type GenerationEvent<D extends DoneEvent = DoneEvent> =
  | { type: 'queued'; position: number }
  | { type: 'started' }
  | { type: 'text'; text: string }
  | D;
