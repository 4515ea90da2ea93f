/**
 * The HTTP server of `morris serve`: the dashboard's static pages, its JSON API, and (when Slack
 * runs in HTTP mode) Slack's events endpoint, all on one port. Closing stops new connections at
 * once and lets open requests (streaming generations) finish within the grace period.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { childLog } from '../log.ts';
import { MorrisError } from '../errors.ts';
import { apiRoutes, type DashboardDeps } from './api.ts';
import { createRouter } from './router.ts';

const log = childLog('web');
const STATIC_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'static');
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

export interface DashboardServer {
  url: string;
  port: number;
  /** Stops accepting connections; resolves when open requests ended or graceMs passed. */
  close(graceMs: number): Promise<void>;
}

export interface ServerOptions {
  host: string;
  port: number;
  adminToken?: string;
  /** Extra handler tried before the static files (e.g. Slack's POST /slack/events); true = handled. */
  extraHandler?: (req: IncomingMessage, res: ServerResponse) => boolean;
}

function serveStatic(req: IncomingMessage, res: ServerResponse): boolean {
  if (req.method !== 'GET' && req.method !== 'HEAD') return false;
  const url = new URL(req.url ?? '/', 'http://localhost');
  const rel = url.pathname === '/' ? 'index.html' : url.pathname.slice(1);
  const file = path.resolve(STATIC_DIR, rel);
  // Only files directly inside the static folder; no traversal, no sub-folders.
  if (path.dirname(file) !== STATIC_DIR || !TYPES[path.extname(file)] || !fs.existsSync(file)) return false;
  res.writeHead(200, { 'content-type': TYPES[path.extname(file)]!, 'cache-control': 'no-cache' });
  if (req.method === 'HEAD') res.end();
  else fs.createReadStream(file).pipe(res);
  return true;
}

/** A port in use or not ours to take is a setting to change, said in those words. */
function listenError(e: Error, opts: ServerOptions): Error {
  const code = (e as NodeJS.ErrnoException).code;
  if (code !== 'EADDRINUSE' && code !== 'EACCES' && code !== 'EADDRNOTAVAIL') return e;
  const why = code === 'EADDRINUSE' ? 'the port is in use' : code === 'EACCES' ? 'permission denied' : 'no such address on this machine';
  return new MorrisError('CONFIG_INVALID', `Cannot listen on ${opts.host}:${opts.port}: ${why}.`, {
    hint: 'Set PORT (or --port) to a free port, and HOST (or --host) to an address of this machine.',
    cause: e,
  });
}

export async function startDashboardServer(deps: DashboardDeps, opts: ServerOptions): Promise<DashboardServer> {
  const handle = createRouter(apiRoutes(deps), {
    adminToken: opts.adminToken,
    fallback: (req, res) => (opts.extraHandler?.(req, res) ?? false) || serveStatic(req, res),
  });
  const server = http.createServer((req, res) => void handle(req, res));
  // Streams (SSE) stay open for minutes; no request timeout.
  server.requestTimeout = 0;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(listenError(e, opts)));
    server.listen(opts.port, opts.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const shownHost = opts.host === '0.0.0.0' || opts.host === '::' ? '127.0.0.1' : opts.host;
  const url = `http://${shownHost}:${port}`;
  log.info({ url }, 'dashboard listening');
  return {
    url,
    port,
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
