/**
 * The HTTP listeners of `morris serve`. What each one answers:
 *
 * - `all` (the default, one port): Slack's events (signed), `/healthz`, and the dashboard, its
 *   JSON API and the login page, behind auth.ts;
 * - `public` + `dashboard` (MORRIS_DASHBOARD_PORT set): the public port answers only Slack's
 *   events and `/healthz`, and the dashboard listens on its own address, loopback by default, so
 *   an operator can expose the Slack URL to the internet and keep the dashboard off it.
 *
 * Every listener has the same guards (http-guard.ts). Closing stops new connections at once and
 * lets open requests (streaming generations) finish within the grace period.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { childLog } from '../log.ts';
import { MorrisError } from '../errors.ts';
import { apiRoutes, type DashboardDeps } from './api.ts';
import { readerRoutes } from './api-readers.ts';
import { notSignedIn, type AccessPolicy, type Principal } from './auth.ts';
import { authRoutes } from './session-routes.ts';
import { createLimitedServer, DEFAULT_HTTP_LIMITS, hostAllowList, type HttpLimits } from './http-guard.ts';
import { createRouter, handleError, sendJson, type Route } from './router.ts';

const log = childLog('web');
const STATIC_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'static');
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};
/** Static files anyone may load: what the login page needs. Everything else needs a principal. */
const PUBLIC_FILES = new Set(['login.html', 'login.js', 'style.css']);
/** Slack's events endpoint (signed by Slack, verified by the bot adapter). */
export const SLACK_EVENTS_PATH = '/slack/events';

export type ListenerRole = 'all' | 'public' | 'dashboard';

export interface HttpListener {
  /** Where a client on this machine reaches it (0.0.0.0 → 127.0.0.1). */
  url: string;
  /** The address the socket is really bound to, e.g. http://0.0.0.0:3000. */
  bound: string;
  port: number;
  role: ListenerRole;
  /** Stops accepting connections; resolves when open requests ended or graceMs passed. */
  close(graceMs: number): Promise<void>;
}

export interface HealthReport {
  status: 'ok';
  /** Each configured platform's state: connected, starting, retrying, failed or off. */
  platforms: Record<string, string>;
}

export interface ListenerOptions {
  host: string;
  port: number;
  role: ListenerRole;
  policy: AccessPolicy;
  /** MORRIS_PUBLIC_URL: when set, other Host names are refused (421). */
  publicUrl?: string;
  limits?: Partial<HttpLimits>;
  /** POST /slack/events when Slack runs in HTTP mode; absent → 404 there. */
  slackHandler?: (req: IncomingMessage, res: ServerResponse) => void;
  health(): HealthReport;
}

function serveFile(req: IncomingMessage, res: ServerResponse, rel: string): boolean {
  const file = path.resolve(STATIC_DIR, rel);
  // Only files directly inside the static folder; no traversal, no sub-folders.
  if (path.dirname(file) !== STATIC_DIR || !TYPES[path.extname(file)] || !fs.existsSync(file)) return false;
  res.writeHead(200, { 'content-type': TYPES[path.extname(file)]!, 'cache-control': 'no-cache' });
  if (req.method === 'HEAD') res.end();
  else fs.createReadStream(file).pipe(res);
  return true;
}

/** Static pages: the login page for anyone; the dashboard for a principal, else a way to sign in. */
function serveStatic(req: IncomingMessage, res: ServerResponse, principal: Principal | null, policy: AccessPolicy): boolean {
  if (req.method !== 'GET' && req.method !== 'HEAD') return false;
  const url = new URL(req.url ?? '/', 'http://localhost');
  const rel = url.pathname === '/' ? 'index.html' : url.pathname === '/login' ? 'login.html' : url.pathname.slice(1);
  if (PUBLIC_FILES.has(rel) || principal) return serveFile(req, res, rel);
  if (rel === 'index.html' && policy.adminToken) {
    res.writeHead(302, { location: '/login', 'cache-control': 'no-store' });
    res.end();
    return true;
  }
  if (!fs.existsSync(path.join(STATIC_DIR, path.basename(rel)))) return false;
  throw notSignedIn(req, policy);
}

/** A port in use or not ours to take is a setting to change, said in those words. */
function listenError(e: Error, opts: ListenerOptions, keys: { host: string; port: string }): Error {
  const code = (e as NodeJS.ErrnoException).code;
  if (code !== 'EADDRINUSE' && code !== 'EACCES' && code !== 'EADDRNOTAVAIL' && code !== 'ENOTFOUND' && code !== 'EAI_AGAIN') return e;
  const why =
    code === 'EADDRINUSE' ? 'the port is in use' : code === 'EACCES' ? 'permission denied' : code === 'EADDRNOTAVAIL' ? 'no such address on this machine' : 'the host name does not resolve';
  return new MorrisError('CONFIG_INVALID', `Cannot listen on ${opts.host}:${opts.port}: ${why} (${keys.host}, ${keys.port}).`, {
    hint: `Set ${keys.port} to a free port, and ${keys.host} to an address of this machine.`,
    cause: e,
  });
}

function healthRoute(opts: ListenerOptions): Route {
  return { method: 'GET', path: '/healthz', access: 'public', handler: () => opts.health() };
}

function slackFallback(opts: ListenerOptions) {
  return (req: IncomingMessage, res: ServerResponse): boolean => {
    const pathname = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (req.method !== 'POST' || pathname !== SLACK_EVENTS_PATH) return false;
    if (!opts.slackHandler) {
      sendJson(res, 404, { error: { code: 'NOT_FOUND', message: 'Slack is not running in HTTP mode here.', hint: 'Set SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN.' } });
    } else opts.slackHandler(req, res);
    return true;
  };
}

function listenerHandler(deps: DashboardDeps | null, opts: ListenerOptions) {
  const routes: Route[] = [healthRoute(opts)];
  if (opts.role !== 'public' && deps) routes.push(...authRoutes(opts.policy), ...apiRoutes(deps), ...readerRoutes(deps.store));
  const slack = opts.role !== 'dashboard' ? slackFallback(opts) : null;
  const hosts = hostAllowList(opts.publicUrl, opts.role !== 'public' ? [opts.host] : []);
  return createRouter(routes, {
    policy: opts.policy,
    hosts,
    fallback: (req, res, principal) =>
      (slack?.(req, res) ?? false) || (opts.role !== 'public' && deps !== null && serveStatic(req, res, principal, opts.policy)),
  });
}

function shownUrl(a: AddressInfo): { url: string; bound: string } {
  const fmt = (h: string) => (h.includes(':') ? `[${h}]` : h);
  const local = a.address === '0.0.0.0' ? '127.0.0.1' : a.address === '::' ? '::1' : a.address;
  return { url: `http://${fmt(local)}:${a.port}`, bound: `http://${fmt(a.address)}:${a.port}` };
}

/** Starts one listener. `deps` may be null for a `public` listener. */
export async function startListener(deps: DashboardDeps | null, opts: ListenerOptions, keys = { host: 'HOST', port: 'PORT' }): Promise<HttpListener> {
  const handle = listenerHandler(deps, opts);
  const server: Server = createLimitedServer((req, res) => {
    handle(req, res).catch((e: unknown) => handleError(res, e, `${req.method} ${req.url}`));
  }, { ...DEFAULT_HTTP_LIMITS, ...opts.limits });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(listenError(e, opts, keys)));
    server.listen(opts.port, opts.host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const { url, bound } = shownUrl(address);
  log.info({ role: opts.role, bound, url }, `listening on ${bound} (${opts.role === 'all' ? 'Slack events, health and the dashboard' : opts.role === 'public' ? 'Slack events and health only' : 'the dashboard'})`);
  return {
    url,
    bound,
    port: address.port,
    role: opts.role,
    close: (graceMs) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.closeAllConnections();
          resolve();
        }, graceMs);
        timer.unref();
        server.close(() => {
          clearTimeout(timer);
          resolve();
        });
        // Idle keep-alive sockets would hold close() open until their timeout.
        server.closeIdleConnections();
      }),
  };
}
