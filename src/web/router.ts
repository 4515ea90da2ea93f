/**
 * A small router over node:http: routes are data (method, path pattern, who may call it,
 * handler), handlers return a JSON-able value or write the response themselves (streams), and one
 * error handler turns every thrown error into a JSON error body with the MorrisError's status and
 * code. Every route needs a signed-in admin (auth.ts) unless it says `access: 'public'`; every
 * POST must be same-origin JSON (http-guard.ts).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { describeError, isMorrisError, MorrisError } from '../errors.ts';
import { childLog } from '../log.ts';
import { authenticate, notSignedIn, type AccessPolicy, type Principal } from './auth.ts';
import { checkHost, checkStateChange, setSecurityHeaders } from './http-guard.ts';

const log = childLog('web');

/** Request bodies above this are refused: the API only takes small JSON objects. */
export const MAX_BODY_BYTES = 64 * 1024;

export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  params: Record<string, string>;
  query: URLSearchParams;
  /** Who is asking (null only on public routes). */
  principal: Principal | null;
  /** Parsed JSON body ({} when empty). */
  body(): Promise<Record<string, unknown>>;
}

/** Return a value to send it as JSON; return RESPONDED when the handler wrote the response. */
export const RESPONDED = Symbol('responded');
export type Handler = (ctx: RequestContext) => Promise<unknown> | unknown;

export interface Route {
  method: 'GET' | 'POST';
  path: string;
  /** 'public': anyone may call it (login, health); default: a signed-in admin only. */
  access?: 'public';
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
  if (Number(req.headers['content-length'] ?? 0) > MAX_BODY_BYTES) {
    throw new MorrisError('BAD_INPUT', `Request body over ${MAX_BODY_BYTES} bytes.`, { status: 413, hint: 'The API takes small JSON objects.' });
  }
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

export interface RouterOptions {
  policy: AccessPolicy;
  /** Host names answered (null: any); see hostAllowList. */
  hosts: ((name: string) => boolean) | null;
  /** Tried when no route matches; true = handled. Gets the principal (null: not signed in). */
  fallback?: (req: IncomingMessage, res: ServerResponse, principal: Principal | null) => boolean;
}

export function createRouter(routes: Route[], opts: RouterOptions) {
  const compiled = routes.map(compile);
  return async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    setSecurityHeaders(res);
    try {
      checkHost(req, opts.hosts);
      let pathMatched = false;
      for (const r of compiled) {
        const m = r.re.exec(url.pathname);
        if (!m) continue;
        pathMatched = true;
        if (r.method !== req.method) continue;
        const principal = authenticate(req, opts.policy);
        if (r.access !== 'public' && !principal) throw notSignedIn(req, opts.policy);
        if (r.method === 'POST') checkStateChange(req);
        const params = Object.fromEntries(r.keys.map((k, i) => [k, decodeParam(m[i + 1]!)]));
        let bodyPromise: Promise<Record<string, unknown>> | undefined;
        const out = await r.handler({ req, res, params, query: url.searchParams, principal, body: () => (bodyPromise ??= readBody(req)) });
        if (out !== RESPONDED && !res.headersSent) sendJson(res, 200, out ?? { ok: true });
        return;
      }
      // Static pages may share a path with a route of another method (GET /login, POST /login).
      if (opts.fallback?.(req, res, authenticate(req, opts.policy))) return;
      if (pathMatched) throw new MorrisError('BAD_INPUT', `${req.method} is not allowed on ${url.pathname}.`, { status: 405 });
      throw new MorrisError('NOT_FOUND', `No such endpoint: ${req.method} ${url.pathname}`, { hint: 'See docs/api.md.' });
    } catch (e) {
      handleError(res, e, `${req.method} ${url.pathname}`);
    }
  };
}

/** A client that hung up while we read its body: its business, not a server error. */
function clientWentAway(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE' || (e instanceof Error && e.message === 'aborted');
}

/** The one error handler of the HTTP entry point. */
export function handleError(res: ServerResponse, e: unknown, what: string): void {
  const status = isMorrisError(e) ? e.status : 500;
  if (clientWentAway(e)) {
    log.debug({ what }, 'client went away mid-request');
    res.destroy();
    return;
  }
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
