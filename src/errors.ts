/**
 * One error type for the whole project. `code` is stable and machine-readable; `hint` tells the
 * person what to do next. Each entry point (CLI, HTTP, bot, job) has one handler that logs the
 * whole error and shows `message` + `hint` to the person.
 */
export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'BAD_INPUT'
  | 'NOT_FOUND'
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'RATE_LIMITED'
  | 'BUSY'
  | 'TIMEOUT'
  | 'CANCELLED'
  | 'STORE_ERROR'
  | 'DISK_FULL'
  | 'FETCH_FAILED'
  | 'ROBOTS_DISALLOWED'
  /** A URL outside a source's hosts, or at a private address the source may not reach. */
  | 'OFF_HOST'
  | 'EXTRACT_FAILED'
  | 'DATASET_EMPTY'
  | 'MODEL_MISSING'
  | 'MODEL_INVALID'
  | 'MODEL_UNSUPPORTED'
  | 'ADAPTER_MISMATCH'
  | 'GRAPH_ERROR'
  | 'NO_GRADIENT_RULE'
  | 'TRAINING_DIVERGED'
  | 'DEVICE_UNAVAILABLE'
  | 'GENERATION_FAILED'
  | 'CONTENT_BLOCKED'
  | 'BACKEND_ERROR'
  | 'JOB_FAILED'
  /** A columnist name with no folder under data/columnists (the message lists the known ones). */
  | 'UNKNOWN_COLUMNIST'
  /** A columnist folder that does not load: a bad settings key, profile, style guide or examples file. */
  | 'COLUMNIST_INVALID'
  | 'INTERNAL';

export class MorrisError extends Error {
  readonly code: ErrorCode;
  readonly hint?: string;
  /** HTTP status for the web API's single error handler. */
  readonly status: number;

  constructor(code: ErrorCode, message: string, opts: { hint?: string; cause?: unknown; status?: number } = {}) {
    super(message, { cause: opts.cause });
    this.name = 'MorrisError';
    this.code = code;
    this.hint = opts.hint;
    this.status = opts.status ?? defaultStatus(code);
  }
}

function defaultStatus(code: ErrorCode): number {
  switch (code) {
    case 'BAD_INPUT':
    case 'CONFIG_INVALID':
    case 'CONTENT_BLOCKED':
      return 400;
    case 'UNAUTHORIZED':
      return 401;
    case 'FORBIDDEN':
      return 403;
    case 'NOT_FOUND':
    case 'UNKNOWN_COLUMNIST':
    case 'MODEL_MISSING':
      return 404;
    case 'BUSY':
      return 409;
    case 'RATE_LIMITED':
      return 429;
    case 'TIMEOUT':
      return 504;
    default:
      return 500;
  }
}

export function isMorrisError(e: unknown): e is MorrisError {
  return e instanceof MorrisError;
}

/**
 * True for a full disk however it surfaced: Node's ENOSPC/EDQUOT on a file write, or SQLite's
 * SQLITE_FULL ("database or disk is full"), which better-sqlite3 reports as a SqliteError code.
 */
export function isDiskFull(e: unknown): boolean {
  if (isMorrisError(e)) return e.code === 'DISK_FULL';
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL';
}

/**
 * Maps a full disk (file write or SQLite) to one coded error naming the path and what was kept;
 * any other error comes back unchanged. `kept` defaults to what most writers can promise.
 */
export function wrapFsError(e: unknown, what: string, kept = 'nothing was registered'): unknown {
  if (isMorrisError(e) || !isDiskFull(e)) return e;
  return new MorrisError('DISK_FULL', `Disk full while writing ${what}; ${kept}.`, {
    hint: 'Free some disk space (old runs live under data/runs and models/adapters, backups under data/backups) and try again.',
    cause: e,
  });
}

/** Short, person-facing text for any error: message plus hint for ours, a generic line otherwise. */
export function describeError(e: unknown): string {
  // A full disk that no writer named (a log row, a job row): still the one DISK_FULL message.
  // SQLite rolled the statement back; what it did not say is which file, so neither can we.
  if (!isMorrisError(e) && isDiskFull(e)) e = wrapFsError(e, `data (${(e as Error).message})`, 'the write in progress was rolled back; what was saved before stays');
  if (isMorrisError(e)) return e.hint ? `${e.message}\n${e.hint}` : e.message;
  return `Unexpected error: ${e instanceof Error ? e.message : String(e)}`;
}
