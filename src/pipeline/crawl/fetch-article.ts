/**
 * Fetching one target article: conditionally (a 304 costs nothing), then extracting it and
 * upserting it with its page and frontier rows in one transaction. A failed or empty fetch never
 * replaces an article already stored, and an outcome is counted only once it has committed.
 */
import { createHash } from 'node:crypto';
import type { Store } from '../../store/db.ts';
import { articleByUrl, saveArticle, saveSkippedArticle } from '../../store/articles.ts';
import { markUrl } from '../../store/crawl-urls.ts';
import { pageValidators, savePage } from '../../store/crawl-pages.ts';
import { extractArticle, type Article } from '../extract/article.ts';
import { encodingProblem } from '../extract/quality.ts';
import type { Fetcher, FetchResult } from './fetch.ts';
import type { SourceProfile } from './profile.ts';
import { canonicalUrl, pageCanonical } from './discover.ts';
import type { CrawlSummary } from './crawl.ts';
import { contains, isCode, MAX_OFF_HOST_LISTED, reasonOf } from './outcomes.ts';
import type { Target } from './targets.ts';

export async function fetchArticle(
  store: Store,
  profile: SourceProfile,
  t: Target,
  fetcher: Fetcher,
  s: CrawlSummary,
  warn: (k: string) => void,
  /** The voice the articles are stored for (default: the default columnist). */
  columnist?: string,
): Promise<void> {
  const mark = (status: Parameters<typeof markUrl>[2], reason: string | null) => markUrl(store, t.url, status, reason, columnist);
  const prev = pageValidators(store, t.url, columnist);
  let res: FetchResult;
  try {
    res = await fetcher.get(t.url, { validators: prev ? { etag: prev.etag, lastModified: prev.last_modified } : undefined });
  } catch (e) {
    if (isCode(e, 'ROBOTS_DISALLOWED')) {
      mark('robots', 'disallowed by robots.txt');
      s.skippedRobots++;
    } else if (isCode(e, 'OFF_HOST')) {
      // Settled, not failed: retrying cannot make another host ours. Nothing of it is stored.
      mark('skipped', `off-host: ${reasonOf(e)}`);
      s.offHost++;
      if (s.offHostUrls.length < MAX_OFF_HOST_LISTED) s.offHostUrls.push({ url: t.url, reason: reasonOf(e) });
    } else {
      mark('failed', reasonOf(e));
      s.failed.push({ url: t.url, reason: reasonOf(e) });
    }
    return;
  }
  s.fetched++;
  if (res.notModified) {
    store.transaction(() => {
      savePage(store, res, columnist);
      mark('done', null);
    })();
    s.unchanged++;
    return;
  }
  if (res.status >= 400) {
    const reason = `HTTP ${res.status}`;
    store.transaction(() => {
      savePage(store, res, columnist);
      mark('failed', reason);
    })();
    s.failed.push({ url: t.url, reason });
    return;
  }
  if (res.truncated) warn('capped at size limit');

  let reason: string | null = null;
  let art: Article = { title: null, author: null, published: null, body: '' };
  if (res.binary) reason = `binary content (${res.contentType ?? 'unknown type'})`;
  else {
    // Checked on the whole page first: heavy damage makes the extractor see no article at all,
    // which would hide the real cause behind "no article found".
    reason = encodingProblem(res.text, res.charset);
    if (!reason) {
      art = extractArticle(res.text, res.finalUrl, profile.selectors ?? {});
      if (art.published === null && hasInvalidDate(res.text)) warn('invalid date dropped');
      reason = encodingProblem(`${art.title ?? ''}\n${art.body}`, res.charset) ?? articleProblem(art, profile, res);
    }
    if (reason?.startsWith('bad-encoding')) {
      s.badEncoding++;
      art = { title: null, author: null, published: null, body: '' };
    }
  }
  const canonical = (!res.binary && sameSite(pageCanonical(res.text, res.finalUrl), res.finalUrl)) || canonicalUrl(res.finalUrl, undefined, profile.stripParams) || t.url;
  const author = Array.isArray(art.author) ? art.author.join(', ') : art.author;
  const body = art.body.trim();
  const hash = body ? createHash('sha256').update(body.replace(/\s+/g, ' ')).digest('hex') : null;

  // The outcome is counted only once the transaction has committed: a commit that fails (a full
  // disk) must not leave an article counted as new that is not in the store.
  const outcome = store.transaction((): (() => void) => {
    savePage(store, res, columnist);
    const existing = articleByUrl(store, canonical, columnist);
    if (reason) {
      mark('skipped', reason);
      // Never replace a stored article with a non-article; remember the skip only for new URLs.
      if (!existing) saveSkippedArticle(store, { source: profile.name, url: canonical, title: art.title, reason, columnist });
      const why = existing?.status === 'ok' ? `${reason} (kept the stored version)` : reason;
      return () => s.skipped.push({ url: t.url, reason: why });
    }
    mark('done', null);
    const article = { source: profile.name, url: canonical, title: art.title, author, published: art.published, body, contentHash: hash, columnist };
    if (!existing || existing.status === 'skipped') {
      saveArticle(store, article);
      return () => s.new++;
    }
    if (existing.content_hash === hash) return () => s.unchanged++;
    saveArticle(store, article);
    return () => s.updated++;
  })();
  outcome();
}

/** Why an extracted page is not an article we keep, or null when it is. */
function articleProblem(a: Article, p: SourceProfile, res: FetchResult): string | null {
  const body = a.body.trim();
  const capped = res.truncated ? ` (page cut at ${res.bytes} bytes)` : '';
  if (!body) return `no article found: empty body${capped}`;
  if (body.length < p.minBodyChars) return `no article found: body only ${body.length} chars${capped}`;
  if (!a.title?.trim()) return 'no title';
  if (p.author) {
    const names = Array.isArray(a.author) ? a.author.join(', ') : (a.author ?? '');
    if (!contains(names, p.author)) return `other author (${names || 'none'})`;
  }
  return null;
}

/** A declared publication date the extractor had to drop because it does not parse. */
function hasInvalidDate(html: string): boolean {
  const m =
    html.match(/"datePublished"\s*:\s*"([^"]*)"/) ??
    html.match(/property=["']article:published_time["'][^>]*content=["']([^"']*)["']/i);
  return Boolean(m && Number.isNaN(Date.parse(m[1])));
}

function sameSite(canonical: string | null, pageUrl: string): string | null {
  if (!canonical) return null;
  return new URL(canonical).host === new URL(pageUrl).host ? canonical : null;
}
