/**
 * What every request to Morris's HTTP port passes before any route sees it: security headers on
 * every response, a Host allow-list, JSON-only state changes from our own origin, and socket-level
 * limits against slow or greedy clients (timeouts for headers, bodies and idle sockets; a cap on
 * open connections per client address).
 */
import http, { type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { MorrisError } from '../errors.ts';
import { childLog } from '../log.ts';
import { hostName, isLoopbackHostName } from './auth.ts';

const log = childLog('web');

/** Pages load only this server's own scripts and styles; nothing may frame them. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
});

export interface HttpLimits {
  /** The whole request head must arrive within this (slowloris). */
  headersTimeoutMs: number;
  /** The whole request, body included, must arrive within this. Responses (SSE) are not limited. */
  requestTimeoutMs: number;
  /** A socket with no traffic either way for this long is closed (streams send heartbeats). */
  idleTimeoutMs: number;
  /** Open connections one client address may hold; more are closed at once. */
  maxConnectionsPerAddress: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = Object.freeze({
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  idleTimeoutMs: 120_000,
  maxConnectionsPerAddress: 64,
});

/** A node:http server with the limits applied. */
export function createLimitedServer(listener: RequestListener, limits: HttpLimits): Server {
  // Node checks the header and request timeouts on this interval: a quarter of the shortest.
  const checkEvery = Math.max(100, Math.min(30_000, Math.floor(Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs) / 4)));
  const server = http.createServer({ connectionsCheckingInterval: checkEvery }, listener);
  server.headersTimeout = limits.headersTimeoutMs;
  server.requestTimeout = limits.requestTimeoutMs;
  server.keepAliveTimeout = Math.min(5_000, limits.idleTimeoutMs);
  server.setTimeout(limits.idleTimeoutMs);
  const open = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const addr = socket.remoteAddress ?? '?';
    const n = (open.get(addr) ?? 0) + 1;
    if (n > limits.maxConnectionsPerAddress) {
      log.debug({ addr, open: n - 1 }, 'connection refused: too many open from this address');
      socket.destroy();
      return;
    }
    open.set(addr, n);
    socket.once('close', () => {
      const left = (open.get(addr) ?? 1) - 1;
      if (left > 0) open.set(addr, left);
      else open.delete(addr);
    });
  });
  // A client that hangs up or sends garbage is the client's business: debug, not an error stack.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    log.debug({ code: err.code, addr: socket.remoteAddress }, 'client connection error');
    if (socket.writable && err.code !== 'ECONNRESET') {
      const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
      // Say why, then close for good: a half-closed socket would stay open while the client drips.
      socket.write(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`, () => socket.destroy());
      setTimeout(() => socket.destroy(), 1000).unref();
    } else socket.destroy();
  });
  return server;
}

export function setSecurityHeaders(res: ServerResponse): void {
  for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
}

/**
 * Host names this server answers to. With MORRIS_PUBLIC_URL set: its host, plus loopback names
 * (health checks and the operator on the machine itself). Without it, any Host (the operator has
 * not told us the public name); loopback-only access has its own Host check in auth.ts.
 */
export function hostAllowList(publicUrl: string | undefined, extra: readonly string[] = []): ((name: string) => boolean) | null {
  if (!publicUrl) return null;
  const allowed = new Set([new URL(publicUrl).hostname.toLowerCase().replace(/^\[|\]$/g, ''), ...extra.map((h) => h.toLowerCase())]);
  return (name) => allowed.has(name) || isLoopbackHostName(name);
}

export function checkHost(req: IncomingMessage, allowed: ((name: string) => boolean) | null): void {
  if (!allowed) return;
  const name = hostName(req.headers.host);
  if (!allowed(name)) {
    throw new MorrisError('FORBIDDEN', `This server does not answer to the host "${name.slice(0, 100)}".`, {
      status: 421,
      hint: 'Use the address in MORRIS_PUBLIC_URL.',
    });
  }
}

/**
 * State changes must be JSON (a cross-site form or `text/plain` fetch cannot send that without a
 * CORS preflight, which this server never approves) and must not come from another origin.
 */
export function checkStateChange(req: IncomingMessage): void {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') {
    throw new MorrisError('BAD_INPUT', `Send JSON: Content-Type must be application/json${type ? `, not ${type.slice(0, 80)}` : ''}.`, {
      status: 415,
      hint: 'Set "Content-Type: application/json" and send a JSON object ({} when there is nothing to say).',
    });
  }
  const site = req.headers['sec-fetch-site'];
  const origin = req.headers.origin;
  let crossOrigin = site === 'cross-site';
  if (origin && origin !== 'null') {
    try {
      crossOrigin ||= new URL(origin).host.toLowerCase() !== (req.headers.host ?? '').toLowerCase();
    } catch {
      crossOrigin = true; // an unparseable Origin is no origin of ours
    }
  } else if (origin === 'null') crossOrigin = true;
  if (crossOrigin) {
    throw new MorrisError('FORBIDDEN', 'Cross-site request refused.', { hint: 'Use the dashboard itself or call the API from a script with the bearer token.' });
  }
}
