/**
 * A small but realistic article site on 127.0.0.1, built from the bundled sample archive
 * (data/sample-archive/articles/*.md). The demo and the tests crawl it exactly as they would crawl
 * a publisher: paginated listings, an RSS feed, a sitemap index, robots.txt, article pages carrying
 * JSON-LD / OpenGraph metadata wrapped in the usual boilerplate (navigation, share buttons,
 * newsletter prompts, related links, footer), and ETag / Last-Modified validators with 304s.
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { SAMPLE_ARCHIVE_ROOT } from '../../paths.ts';
import { articlePage, listingPage, modified, rss, shell, SITE_NAME, slugify } from './sample-site-pages.ts';

export interface SampleArticle {
  slug: string;
  title: string;
  author: string;
  /** ISO date or date-time. */
  published: string;
  /** Markdown-ish body: paragraphs separated by blank lines, `## ` subheads, `> ` quotes. */
  body: string;
  /** When the article last changed (Last-Modified, sitemap lastmod); defaults to `published`. */
  updated?: string;
}

export interface SampleSiteOptions {
  port?: number;
  host?: string;
  /** Folder of front-matter markdown files, re-read when it changes (default: the bundled archive). */
  dir?: string;
  /** Articles to serve instead of a folder; a function is called on every request so tests can
   * change the site between crawls. */
  articles?: SampleArticle[] | (() => SampleArticle[]);
  /** Teasers per listing page. */
  pageSize?: number;
}

export interface SampleSite {
  url: string;
  /** Every request as "METHOD path status", in order: lets callers see what a crawl really fetched. */
  requests: string[];
  close(): Promise<void>;
}

export const SAMPLE_ARCHIVE_DIR = path.join(SAMPLE_ARCHIVE_ROOT, 'articles');

export async function startSampleSite(opts: SampleSiteOptions = {}): Promise<SampleSite> {
  const pageSize = opts.pageSize ?? 5;
  const load = opts.articles
    ? typeof opts.articles === 'function' ? opts.articles : () => opts.articles as SampleArticle[]
    : folderLoader(opts.dir ?? SAMPLE_ARCHIVE_DIR);
  const requests: string[] = [];

  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://localhost');
    const origin = `http://${req.headers.host}`;
    let reply: Reply;
    try {
      const articles = [...load()].sort((a, b) => b.published.localeCompare(a.published) || a.slug.localeCompare(b.slug));
      reply = route(u, origin, articles, pageSize);
    } catch (e) {
      reply = { status: 500, type: 'text/plain', body: `Internal error: ${(e as Error).message}` };
    }
    const status = send(req, res, reply);
    requests.push(`${req.method} ${u.pathname}${u.search} ${status}`);
  });
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', resolve));
  const addr = server.address() as AddressInfo;
  return {
    url: `http://${addr.address}:${addr.port}`,
    requests,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((e) => (e ? reject(e) : resolve()));
      }),
  };
}

interface Reply {
  status: number;
  type: string;
  body: string;
  lastModified?: string;
  location?: string;
}

function route(u: URL, origin: string, articles: SampleArticle[], pageSize: number): Reply {
  const p = u.pathname;
  // The most recent change anywhere: what the sitemap index and listings report as their own.
  const newest = articles.map((a) => modified(a)).reduce((m, x) => (x > m ? x : m), new Date(0).toISOString());
  if (p === '/robots.txt') {
    return {
      status: 200,
      type: 'text/plain; charset=utf-8',
      body: `User-agent: *\nDisallow: /admin/\nDisallow: /search\n\nSitemap: ${origin}/sitemap.xml\n`,
    };
  }
  if (p === '/') return { status: 301, type: 'text/plain', body: 'Moved', location: '/columns/' };
  if (p === '/columns' ) return { status: 301, type: 'text/plain', body: 'Moved', location: '/columns/' };
  const listing = p.match(/^\/columns\/(?:page\/(\d+)\/)?$/);
  if (listing) {
    const page = Number(listing[1] ?? 1);
    const pages = Math.max(1, Math.ceil(articles.length / pageSize));
    if (page < 1 || page > pages) return notFound();
    const items = articles.slice((page - 1) * pageSize, page * pageSize);
    return { status: 200, type: 'text/html; charset=utf-8', body: listingPage(items, page, pages), lastModified: newest };
  }
  const art = p.match(/^\/columns\/([a-z0-9-]+)\/$/);
  if (art) {
    const a = articles.find((x) => x.slug === art[1]);
    if (!a) return notFound();
    return { status: 200, type: 'text/html; charset=utf-8', body: articlePage(a, origin, articles), lastModified: modified(a) };
  }
  if (p === '/feed.xml') {
    return { status: 200, type: 'application/rss+xml; charset=utf-8', body: rss(articles.slice(0, 10), origin), lastModified: newest };
  }
  if (p === '/sitemap.xml') {
    const body = `<?xml version="1.0" encoding="UTF-8"?>
<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <sitemap><loc>${origin}/sitemap-columns.xml</loc><lastmod>${newest}</lastmod></sitemap>
  <sitemap><loc>${origin}/sitemap-pages.xml</loc></sitemap>
</sitemapindex>`;
    return { status: 200, type: 'application/xml; charset=utf-8', body, lastModified: newest };
  }
  if (p === '/sitemap-columns.xml') {
    const urls = articles
      .map((a) => `  <url><loc>${origin}/columns/${a.slug}/</loc><lastmod>${modified(a)}</lastmod></url>`)
      .join('\n');
    const body = `<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
${urls}
</urlset>`;
    return { status: 200, type: 'application/xml; charset=utf-8', body, lastModified: newest };
  }
  if (p === '/sitemap-pages.xml') {
    const body = `<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc>${origin}/about/</loc></url>
</urlset>`;
    return { status: 200, type: 'application/xml; charset=utf-8', body };
  }
  if (p === '/about/') {
    return {
      status: 200,
      type: 'text/html; charset=utf-8',
      body: shell('About us', `<h1>About us</h1><p>${SITE_NAME} has covered the telecom industry since the days when a megabit was a luxury.</p>`),
    };
  }
  return notFound();
}

function notFound(): Reply {
  return { status: 404, type: 'text/html; charset=utf-8', body: shell('Not found', '<h1>Page not found</h1>') };
}

/** Writes the reply, answering 304 when the client's validators still match. */
function send(req: http.IncomingMessage, res: http.ServerResponse, r: Reply): number {
  const headers: Record<string, string> = { 'content-type': r.type };
  if (r.location) headers.location = r.location;
  if (r.status === 200) {
    const etag = `"${createHash('sha1').update(r.body).digest('hex').slice(0, 20)}"`;
    headers.etag = etag;
    if (r.lastModified) headers['last-modified'] = new Date(r.lastModified).toUTCString();
    const inm = req.headers['if-none-match'];
    const ims = req.headers['if-modified-since'];
    const fresh = inm
      ? inm.split(',').some((t) => t.trim().replace(/^W\//, '') === etag)
      : Boolean(ims && r.lastModified && Date.parse(ims) >= Math.floor(Date.parse(r.lastModified) / 1000) * 1000);
    if (fresh) {
      res.writeHead(304, { etag, ...(headers['last-modified'] ? { 'last-modified': headers['last-modified'] } : {}) });
      res.end();
      return 304;
    }
  }
  res.writeHead(r.status, headers);
  res.end(req.method === 'HEAD' ? undefined : r.body);
  return r.status;
}


/** Parses `---`-delimited front matter (flat `key: value` lines) followed by the body. */
export function parseFrontMatter(text: string): { meta: Record<string, string>; body: string } {
  const m = text.replace(/^\uFEFF/, '').match(/^---\r?\n([\s\S]*?)\r?\n---\r?\n?([\s\S]*)$/);
  if (!m) return { meta: {}, body: text };
  const meta: Record<string, string> = {};
  for (const line of m[1].split(/\r?\n/)) {
    const kv = line.match(/^([A-Za-z_][\w-]*)\s*:\s*(.*)$/);
    if (!kv) continue;
    let v = kv[2].trim();
    if (v.startsWith('"') && v.endsWith('"')) {
      try {
        v = JSON.parse(v) as string;
      } catch {
        v = v.slice(1, -1);
      }
    } else if (v.startsWith("'") && v.endsWith("'")) v = v.slice(1, -1).replace(/''/g, "'");
    meta[kv[1]] = v;
  }
  return { meta, body: m[2].trim() };
}

/** Loads a folder of front-matter markdown articles. */
export function readArticleFolder(dir: string): SampleArticle[] {
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => {
      const file = path.join(dir, f);
      const { meta, body } = parseFrontMatter(fs.readFileSync(file, 'utf8'));
      const slug = meta.slug || f.replace(/\.md$/, '');
      return {
        slug: slugify(slug),
        title: meta.title ?? slug,
        author: meta.author ?? 'Unknown',
        published: meta.published ?? fs.statSync(file).mtime.toISOString(),
        updated: meta.updated ?? fs.statSync(file).mtime.toISOString(),
        body,
      };
    });
}

/** Re-reads the folder only when a file was added, removed or edited. */
function folderLoader(dir: string): () => SampleArticle[] {
  let key = '';
  let cached: SampleArticle[] = [];
  return () => {
    const files = fs.readdirSync(dir).filter((f) => f.endsWith('.md')).sort();
    const k = files.map((f) => `${f}:${fs.statSync(path.join(dir, f)).mtimeMs}`).join('|');
    if (k !== key) {
      cached = readArticleFolder(dir);
      key = k;
    }
    return cached;
  };
}
