/**
 * A real HTTP server on 127.0.0.1 for the pipeline tests: each route is a handler, every request
 * is logged (method, path, status, headers) so tests can assert what a crawl really fetched.
 */
import http from 'node:http';
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';

export type Handler = (req: http.IncomingMessage, res: http.ServerResponse, hit: number) => void | Promise<void>;

export interface Fixture {
  url: string;
  log: { path: string; status: number; headers: http.IncomingHttpHeaders }[];
  /** Requests per path (with query). */
  hits(path: string): number;
  routes: Map<string, Handler>;
  close(): Promise<void>;
}

export async function startFixture(routes: Record<string, Handler>): Promise<Fixture> {
  const table = new Map(Object.entries(routes));
  const counts = new Map<string, number>();
  const log: Fixture['log'] = [];
  const server = http.createServer(async (req, res) => {
    const p = req.url ?? '/';
    const n = (counts.get(p) ?? 0) + 1;
    counts.set(p, n);
    res.on('close', () => log.push({ path: p, status: res.statusCode, headers: req.headers }));
    // '*' answers any path no other route names (generated sites: a 100,000-URL sitemap's pages).
    const h = table.get(p) ?? table.get(p.split('?')[0]) ?? table.get('*');
    if (!h) {
      res.writeHead(404, { 'content-type': 'text/html' }).end('<h1>Not found</h1>');
      return;
    }
    try {
      await h(req, res, n);
    } catch (e) {
      if (!res.headersSent) res.writeHead(500).end(String(e));
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    log,
    hits: (p) => counts.get(p) ?? 0,
    routes: table,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export const html = (body: string, type = 'text/html; charset=utf-8', extra: Record<string, string> = {}): Handler => (_req, res) => {
  res.writeHead(200, { 'content-type': type, ...extra }).end(body);
};

/** A 200 with an ETag that answers 304 to a matching If-None-Match. */
export const withEtag = (body: () => string, type = 'text/html; charset=utf-8'): Handler => (req, res) => {
  const b = body();
  const etag = `"${createHash('sha1').update(b).digest('hex').slice(0, 16)}"`;
  if (req.headers['if-none-match'] === etag) {
    res.writeHead(304, { etag }).end();
    return;
  }
  res.writeHead(200, { 'content-type': type, etag }).end(b);
};

/** Paragraphs long enough to count as an article. */
export function prose(seed: string, paragraphs = 6): string {
  const words = ['operators', 'vendors', 'spectrum', 'capex', 'doom', 'consultants', 'keynote', 'revenue', 'towers', 'fibre', 'slicing', 'hype', 'regulators', 'margins', 'layoffs', 'cloud'];
  let h = 0;
  for (const c of seed) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  const next = () => (h = (Math.imul(h, 1103515245) + 12345) >>> 0);
  return Array.from({ length: paragraphs }, (_, p) => {
    const sentences = Array.from({ length: 4 }, () => {
      const w = Array.from({ length: 10 }, () => words[(next() >>> 16) % words.length]);
      return `${w[0][0].toUpperCase()}${w[0].slice(1)} ${w.slice(1).join(' ')}.`;
    });
    return `${seed} paragraph ${p + 1}: ${sentences.join(' ')}`;
  }).join('\n\n');
}

export function articlePage(a: { title: string; body: string; author?: string; date?: string; canonical?: string }): string {
  const ld = { '@context': 'https://schema.org', '@type': 'NewsArticle', headline: a.title, author: { '@type': 'Person', name: a.author ?? 'Iain Morris' }, datePublished: a.date ?? '2024-03-01T09:00:00Z' };
  const paras = a.body.split(/\n\n/).map((p) => `<p>${p}</p>`).join('\n');
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${a.title}</title>
${a.canonical ? `<link rel="canonical" href="${a.canonical}">` : ''}
<script type="application/ld+json">${JSON.stringify(ld)}</script></head>
<body><nav><a href="/">Home</a> <a href="/list">Columns</a></nav>
<article><h1>${a.title}</h1><p class="byline">By ${a.author ?? 'Iain Morris'}</p>
<div class="body">${paras}</div></article>
<footer>Copyright 2024 Fixture Media</footer></body></html>`;
}
