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
const SITE_NAME = 'The Telecom Gloom Gazette';

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

function modified(a: SampleArticle): string {
  const d = new Date(a.updated ?? a.published);
  return Number.isNaN(d.getTime()) ? new Date(0).toISOString() : d.toISOString();
}

const esc = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function shell(title: string, main: string, head = ''): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)} | ${SITE_NAME}</title>
${head}
<link rel="alternate" type="application/rss+xml" title="${SITE_NAME}" href="/feed.xml">
</head>
<body>
<div class="cookie-banner">We use cookies to improve your experience. <button>Accept all</button> <a href="/privacy/">Manage preferences</a></div>
<header class="site-header">
  <a class="logo" href="/columns/">${SITE_NAME}</a>
  <nav class="main-nav"><ul>
    <li><a href="/columns/">Columns</a></li><li><a href="/topics/5g/">5G</a></li><li><a href="/topics/open-ran/">Open RAN</a></li>
    <li><a href="/topics/ai/">AI</a></li><li><a href="/events/">Events</a></li><li><a href="/about/">About</a></li>
    <li><a href="/search?q=">Search</a></li>
  </ul></nav>
</header>
<main id="content">
${main}
</main>
<footer class="site-footer">
  <div class="footer-links"><a href="/about/">About us</a> · <a href="/contact/">Contact</a> · <a href="/privacy/">Privacy policy</a> · <a href="/terms/">Terms of use</a></div>
  <p>Copyright © ${new Date().getUTCFullYear()} ${SITE_NAME}. All rights reserved.</p>
</footer>
</body>
</html>`;
}

function listingPage(items: SampleArticle[], page: number, pages: number): string {
  const teasers = items
    .map(
      (a) => `<article class="teaser">
  <h2 class="teaser-title"><a href="/columns/${a.slug}/">${esc(a.title)}</a></h2>
  <p class="teaser-meta">By ${esc(a.author)} · <time datetime="${esc(a.published)}">${esc(a.published.slice(0, 10))}</time></p>
  <p class="teaser-dek">${esc(firstSentence(a.body))}</p>
</article>`,
    )
    .join('\n');
  const prev = page > 1 ? `<a class="pager-prev" rel="prev" href="/columns/${page === 2 ? '' : `page/${page - 1}/`}">Newer columns</a>` : '';
  const next = page < pages ? `<a class="pager-next" rel="next" href="/columns/page/${page + 1}/">Older columns</a>` : '';
  return shell(
    page === 1 ? 'Columns' : `Columns – page ${page}`,
    `<h1>Columns</h1>\n<section class="teasers">\n${teasers}\n</section>\n<nav class="pager">${prev} <span>Page ${page} of ${pages}</span> ${next}</nav>`,
  );
}

function articlePage(a: SampleArticle, origin: string, all: SampleArticle[]): string {
  const url = `${origin}/columns/${a.slug}/`;
  const ld = {
    '@context': 'https://schema.org',
    '@type': 'NewsArticle',
    headline: a.title,
    author: { '@type': 'Person', name: a.author },
    datePublished: a.published,
    dateModified: modified(a),
    mainEntityOfPage: url,
    publisher: { '@type': 'Organization', name: SITE_NAME },
  };
  const head = `<link rel="canonical" href="${url}">
<meta name="description" content="${esc(firstSentence(a.body))}">
<meta name="author" content="${esc(a.author)}">
<meta property="og:type" content="article">
<meta property="og:title" content="${esc(a.title)}">
<meta property="og:url" content="${url}">
<meta property="og:site_name" content="${SITE_NAME}">
<meta property="article:published_time" content="${esc(a.published)}">
<script type="application/ld+json">${JSON.stringify(ld).replace(/</g, '\\u003c')}</script>`;
  const paras = markdownToHtml(a.body);
  // Newsletter box mid-article, as real sites do, so extraction has to step around it.
  const mid = Math.min(3, paras.length);
  const body = [
    ...paras.slice(0, mid),
    `<aside class="newsletter-signup"><p>Subscribe to our daily newsletter for the latest telecom news and analysis.</p><form><input type="email" placeholder="Your email"><button>Sign up</button></form></aside>`,
    ...paras.slice(mid),
  ].join('\n');
  const related = all
    .filter((x) => x.slug !== a.slug)
    .slice(0, 3)
    .map((x) => `<li><a href="/columns/${x.slug}/?utm_source=related&utm_medium=web">${esc(x.title)}</a></li>`)
    .join('');
  return shell(
    a.title,
    `<nav class="breadcrumbs"><a href="/">Home</a> › <a href="/columns/">Columns</a></nav>
<article class="article">
  <header class="article-header">
    <h1 class="article-title">${esc(a.title)}</h1>
    <p class="byline">By <a rel="author" href="/author/${slugify(a.author)}/">${esc(a.author)}</a>, International Editor</p>
    <time class="published" datetime="${esc(a.published)}">${esc(a.published.slice(0, 10))}</time>
    <div class="share-buttons"><a href="#">Share on X</a> <a href="#">Share on LinkedIn</a> <a href="#">Email</a></div>
  </header>
  <div class="article-body">
${body}
  </div>
  <footer class="article-footer">
    <p class="tags">Tags: <a href="/topics/5g/">5G</a>, <a href="/topics/operators/">Operators</a></p>
    <div class="share-buttons"><span>Share this article:</span> <a href="#">X</a> <a href="#">LinkedIn</a> <a href="#">Facebook</a></div>
  </footer>
</article>
<aside class="related"><h2>Related columns</h2><ul>${related}</ul></aside>
<section class="comments"><h2>Comments</h2><p>Log in or register to post comments.</p></section>`,
    head,
  );
}

function rss(items: SampleArticle[], origin: string): string {
  const entries = items
    .map(
      (a) => `  <item>
    <title>${esc(a.title)}</title>
    <link>${origin}/columns/${a.slug}/?utm_source=rss&amp;utm_medium=feed</link>
    <guid isPermaLink="false">${a.slug}</guid>
    <dc:creator>${esc(a.author)}</dc:creator>
    <pubDate>${new Date(modified({ ...a, updated: a.published })).toUTCString()}</pubDate>
    <description>${esc(firstSentence(a.body))}</description>
  </item>`,
    )
    .join('\n');
  return `<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel>
  <title>${SITE_NAME}: Columns</title>
  <link>${origin}/columns/</link>
  <description>Columns from ${SITE_NAME}</description>
${entries}
</channel>
</rss>`;
}

function markdownToHtml(md: string): string[] {
  return md
    .split(/\n\s*\n/)
    .map((b) => b.trim())
    .filter(Boolean)
    .map((b) => {
      const inline = (s: string) =>
        esc(s.replace(/\s*\n\s*/g, ' '))
          .replace(/\*\*(.+?)\*\*/g, '<strong>$1</strong>')
          .replace(/\*(.+?)\*/g, '<em>$1</em>')
          .replace(/\[(.+?)\]\((https?:[^)\s]+)\)/g, '<a href="$2">$1</a>');
      if (b.startsWith('## ')) return `<h2>${inline(b.slice(3))}</h2>`;
      if (b.startsWith('> ')) return `<blockquote><p>${inline(b.replace(/^>\s?/gm, ''))}</p></blockquote>`;
      return `<p>${inline(b)}</p>`;
    });
}

function firstSentence(body: string): string {
  const text = body.replace(/^#+ .*$/gm, '').replace(/[*_>]/g, '').replace(/\s+/g, ' ').trim();
  const m = text.match(/^.{20,240}?[.!?](?=\s|$)/);
  return m ? m[0] : text.slice(0, 200);
}

const slugify = (s: string) => s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');

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
