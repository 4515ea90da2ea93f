/**
 * The sample site's pages (sample-site.ts serves them): publisher-like HTML around each article —
 * navigation, share buttons, newsletter prompts, related links, JSON-LD and OpenGraph metadata —
 * the paginated listings and the RSS feed, so extraction is tested against the usual clutter.
 */
import type { SampleArticle } from './sample-site.ts';

export const SITE_NAME = 'The Telecom Gloom Gazette';

export function modified(a: SampleArticle): string {
  const d = new Date(a.updated ?? a.published);
  return Number.isNaN(d.getTime()) ? new Date(0).toISOString() : d.toISOString();
}

const esc = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

export function shell(title: string, main: string, head = ''): string {
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

export function listingPage(items: SampleArticle[], page: number, pages: number): string {
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

export function articlePage(a: SampleArticle, origin: string, all: SampleArticle[]): string {
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

export function rss(items: SampleArticle[], origin: string): string {
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

export const slugify = (s: string) => s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
