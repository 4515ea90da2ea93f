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

/** Maps Node's disk-full errors to a coded error that says what to do. */
export function wrapFsError(e: unknown, what: string): unknown {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new MorrisError('DISK_FULL', `Disk full while writing ${what}; nothing was registered.`, {
      hint: 'Free some disk space (old runs live under data/runs and models/adapters) and try again.',
      cause: e,
    });
  }
  return e;
}

/** Short, person-facing text for any error: message plus hint for ours, a generic line otherwise. */
export function describeError(e: unknown): string {
  if (isMorrisError(e)) return e.hint ? `${e.message}\n${e.hint}` : e.message;
  return `Unexpected error: ${e instanceof Error ? e.message : String(e)}`;
}
