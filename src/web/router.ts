/**
 * A small router over node:http: routes are data (method, path pattern, handler), handlers return
 * a JSON-able value or write the response themselves (streams), and one error handler turns every
 * thrown error into a JSON error body with the MorrisError's status and code.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import { describeError, isMorrisError, MorrisError } from '../errors.ts';
import { childLog } from '../log.ts';

const log = childLog('web');

/** Request bodies above this are refused: the API only takes small JSON objects. */
export const MAX_BODY_BYTES = 64 * 1024;

export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  params: Record<string, string>;
  query: URLSearchParams;
  /** Parsed JSON body ({} when empty). */
  body(): Promise<Record<string, unknown>>;
}

/** Return a value to send it as JSON; return RESPONDED when the handler wrote the response. */
export const RESPONDED = Symbol('responded');
export type Handler = (ctx: RequestContext) => Promise<unknown> | unknown;

export interface Route {
  method: 'GET' | 'POST';
  path: string;
  /** Needs the admin bearer token (anything that changes state). */
  admin?: boolean;
  handler: Handler;
}

interface Compiled extends Route {
  re: RegExp;
  keys: string[];
}

function compile(route: Route): Compiled {
  const keys: string[] = [];
  const re = new RegExp(
    '^' +
      route.path.replace(/\//g, '\\/').replace(/:(\w+)/g, (_, k: string) => {
        keys.push(k);
        return '([^/]+)';
      }) +
      '$',
  );
  return { ...route, re, keys };
}

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(body);
}

async function readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new MorrisError('BAD_INPUT', `Request body over ${MAX_BODY_BYTES} bytes.`, { status: 413 });
    chunks.push(c as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (!text) return {};
  try {
    const v = JSON.parse(text);
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
    return v as Record<string, unknown>;
  } catch (e) {
    throw new MorrisError('BAD_INPUT', `Request body must be a JSON object: ${(e as Error).message}`);
  }
}

/** A path segment; a malformed escape (`%E0`) is the client's mistake, not a server error. */
function decodeParam(v: string): string {
  try {
    return decodeURIComponent(v);
  } catch (e) {
    throw new MorrisError('BAD_INPUT', `Malformed escape in the path: "${v}".`, { cause: e });
  }
}

function tokenMatches(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

export function checkAdmin(req: IncomingMessage, adminToken: string | undefined): void {
  if (!adminToken) {
    throw new MorrisError('FORBIDDEN', 'Admin actions over HTTP are disabled: MORRIS_ADMIN_TOKEN is not set.', {
      hint: 'Set MORRIS_ADMIN_TOKEN on the server and send it as "Authorization: Bearer <token>".',
    });
  }
  const m = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
  if (!m || !tokenMatches(m[1]!.trim(), adminToken)) {
    throw new MorrisError('FORBIDDEN', 'Admin token missing or wrong.', { status: 401, hint: 'Send "Authorization: Bearer <MORRIS_ADMIN_TOKEN>".' });
  }
}

export function createRouter(routes: Route[], opts: { adminToken?: string; fallback?: (req: IncomingMessage, res: ServerResponse) => boolean }) {
  const compiled = routes.map(compile);
  return async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    try {
      let pathMatched = false;
      for (const r of compiled) {
        const m = r.re.exec(url.pathname);
        if (!m) continue;
        pathMatched = true;
        if (r.method !== req.method) continue;
        if (r.admin) checkAdmin(req, opts.adminToken);
        const params = Object.fromEntries(r.keys.map((k, i) => [k, decodeParam(m[i + 1]!)]));
        let bodyPromise: Promise<Record<string, unknown>> | undefined;
        const out = await r.handler({ req, res, params, query: url.searchParams, body: () => (bodyPromise ??= readBody(req)) });
        if (out !== RESPONDED && !res.headersSent) sendJson(res, 200, out ?? { ok: true });
        return;
      }
      if (pathMatched) throw new MorrisError('BAD_INPUT', `${req.method} is not allowed on ${url.pathname}.`, { status: 405 });
      if (opts.fallback?.(req, res)) return;
      throw new MorrisError('NOT_FOUND', `No such endpoint: ${req.method} ${url.pathname}`, { hint: 'See docs/api.md.' });
    } catch (e) {
      handleError(res, e, `${req.method} ${url.pathname}`);
    }
  };
}

/** The one error handler of the HTTP entry point. */
export function handleError(res: ServerResponse, e: unknown, what: string): void {
  const status = isMorrisError(e) ? e.status : 500;
  if (status >= 500) log.error({ err: e, what }, 'request failed');
  else log.debug({ err: e, what }, 'request refused');
  if (res.headersSent) {
    // A stream already started: say so in-band (SSE) and end it.
    if (!res.writableEnded) {
      res.write(`event: error\ndata: ${JSON.stringify({ code: isMorrisError(e) ? e.code : 'INTERNAL', message: describeError(e) })}\n\n`);
      res.end();
    }
    return;
  }
  sendJson(res, status, {
    error: {
      code: isMorrisError(e) ? e.code : 'INTERNAL',
      message: isMorrisError(e) ? e.message : 'Internal error; the server log has the details.',
      hint: isMorrisError(e) ? e.hint : undefined,
    },
  });
}

/** Starts a Server-Sent Events response; returns a writer. */
export function startSse(res: ServerResponse) {
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  res.flushHeaders();
  return (event: string, data: unknown) => {
    if (!res.writableEnded) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };
}
