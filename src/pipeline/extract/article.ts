import * as cheerio from 'cheerio';
import type { CheerioAPI } from 'cheerio';
import type { Document } from 'domhandler';
import { parseDocument } from 'htmlparser2';
import { childLog } from '../../log.ts';
import { extractBodyText, MIN_BODY_CHARS } from './body.ts';
import { limitDepth, squash } from './dom.ts';
import { extractMetadata, normaliseAuthors, normaliseDate } from './metadata.ts';
import { blocksToText } from './text.ts';

/**
 * HTML page → article (title, author, date, body text). Pure: no I/O, never throws. A page with
 * no article in it, or input that is not HTML at all, gives an empty body, which the pipeline
 * counts and skips.
 */

export interface Article {
  title: string | null;
  author: string | string[] | null;
  /** ISO 8601 (date, or date-time with the page's own offset), null when absent or invalid. */
  published: string | null;
  /** Plain text; paragraphs separated by one blank line. */
  body: string;
}

/** CSS selectors from a source profile; each one given wins over the generic extractor. */
export interface ExtractSelectors {
  title?: string;
  body?: string;
  author?: string;
  published?: string;
}

const log = childLog('extract');

const EMPTY: Article = Object.freeze({ title: null, author: null, published: null, body: '' });

/**
 * htmlparser2 rather than parse5: about eight times faster on real pages, and its
 * implied-end-tag rules cover what article markup needs (unclosed <p>, <li>, <td>).
 */
function parse(html: string): Document {
  const doc = parseDocument(html, { decodeEntities: true, lowerCaseTags: true, lowerCaseAttributeNames: true });
  limitDepth(doc, MAX_DEPTH);
  return doc;
}

/** Deeper nesting than this is flattened to text (real article pages stay well under 100). */
const MAX_DEPTH = 400;

/** Binary or mostly non-text input (an image or PDF served as text/html) has no article. */
function looksBinary(html: string): boolean {
  const sample = html.slice(0, 4096);
  if (!sample) return false;
  let bad = 0;
  for (let i = 0; i < sample.length; i++) {
    const c = sample.charCodeAt(i);
    if ((c < 9) || (c > 13 && c < 32) || c === 0xfffd) bad++;
  }
  return bad / sample.length > 0.05;
}

export function extractArticle(html: string, url: string, selectors: ExtractSelectors = {}): Article {
  if (typeof html !== 'string' || html.length === 0 || looksBinary(html)) return { ...EMPTY };
  try {
    return extractFromHtml(html, selectors);
  } catch (e) {
    // The heuristics walk arbitrary third-party markup; a bug there must cost one page, not the crawl.
    log.warn({ err: e, url }, 'extraction failed; returning an empty article');
    return { ...EMPTY };
  }
}

function extractFromHtml(html: string, selectors: ExtractSelectors): Article {
  const doc = parse(html);
  const $ = cheerio.load(doc);
  const meta = extractMetadata($);
  const fromSelectors = applySelectors($, selectors);

  let body = fromSelectors.body ?? '';
  if (selectors.body === undefined || !body) {
    body = extractBodyText(doc, { stripUnlikely: true, weightClasses: true }, meta.title);
    if (body.length < MIN_BODY_CHARS) {
      // Readability's retry: some sites wrap the whole article in "sidebar"-looking classes.
      const retry = extractBodyText(parse(html), { stripUnlikely: false, weightClasses: false }, meta.title);
      if (retry.length > body.length) body = retry;
    }
    if (meta.ldBody && meta.ldBody.length > 2 * body.length + MIN_BODY_CHARS) body = paragraphsOf(meta.ldBody);
  }

  return {
    title: fromSelectors.title ?? meta.title,
    author: fromSelectors.author !== undefined ? fromSelectors.author : meta.author,
    published: fromSelectors.published ?? meta.published,
    body,
  };
}

function paragraphsOf(text: string): string {
  return text.split(/\n\s*\n|\r\n\s*\r\n/).map(squash).filter(Boolean).join('\n\n');
}

interface SelectorResult {
  title?: string;
  body?: string;
  author?: string | string[] | null;
  published?: string;
}

/** Profile selectors; a selector that matches nothing (or is invalid CSS) falls back to the generic result. */
function applySelectors($: CheerioAPI, sel: ExtractSelectors): SelectorResult {
  const out: SelectorResult = {};
  const select = (css: string) => {
    try {
      return $(css);
    } catch (e) {
      log.warn({ err: e, selector: css }, 'invalid profile selector ignored');
      return null;
    }
  };
  if (sel.title) {
    const t = squash(select(sel.title)?.first().text() ?? '');
    if (t) out.title = t;
  }
  if (sel.author) {
    const names = select(sel.author)?.map((_, el) => $(el).text()).get() ?? [];
    if (names.some((n) => squash(n))) out.author = normaliseAuthors(names);
  }
  if (sel.published) {
    const el = select(sel.published)?.first();
    const raw = el?.attr('datetime') ?? el?.attr('content') ?? el?.text();
    const d = normaliseDate(raw);
    if (d) out.published = d;
  }
  if (sel.body) {
    const nodes = select(sel.body)?.get() ?? [];
    const text = blocksToText(nodes);
    if (text) out.body = text;
  }
  return out;
}
