/**
 * Clean stage (pure): normalise whitespace and typography, strip the boilerplate lines that slip
 * through extraction (newsletter prompts, related links, bylines, image credits, share prompts),
 * and drop what is too short to teach a voice or is not an article, each with a counted reason.
 */
import type { ArticleText } from '../../store/articles.ts';

/** An article as the build reads it from the store. */
export type ArticleInput = ArticleText;

export interface CleanOptions {
  /** Articles with fewer words than this after cleaning are dropped. */
  minWords: number;
}

export const DEFAULT_CLEAN_OPTIONS: CleanOptions = { minWords: 150 };

export interface CleanResult {
  articles: ArticleInput[];
  dropped: { id: number; url: string; reason: string }[];
  counts: {
    input: number;
    kept: number;
    dropped: Record<string, number>;
    /** Boilerplate lines removed, by kind. */
    linesStripped: Record<string, number>;
  };
}

/** Whole lines (short ones) that are site furniture, not the columnist's writing. */
const BOILERPLATE: { kind: string; re: RegExp }[] = [
  { kind: 'subscribe', re: /^(subscribe|sign up|signup|register|join)\b.{0,120}\b(newsletter|updates|inbox|free|today|daily|weekly|now)\b/i },
  { kind: 'subscribe', re: /^(sign up|subscribe( now)?|get the newsletter|newsletter sign-?up)[.!]?$/i },
  { kind: 'subscribe', re: /^(want|like) (more|to read more).{0,80}\?\s*(subscribe|sign up)/i },
  { kind: 'related', re: /^(related|read more|see also|also read|more from|you (may|might) also like|recommended( for you)?|further reading|related (articles|columns|stories|content))\s*[:\-–—]?/i },
  { kind: 'byline', re: /^(By|BY|Written by)\s+[A-Z][\p{L}'’.-]+(\s+[A-Z][\p{L}'’.-]+){1,3}(\s*[,|–—-]\s*.{0,60})?$/u },
  { kind: 'byline', re: /^[—–-]\s*[A-Z][\p{L}'’.-]+(\s+[A-Z][\p{L}'’.-]+){1,3},\s*(international |senior |managing |deputy |contributing )?(editor|analyst|reporter|correspondent|writer|columnist)\b.{0,60}$/iu },
  { kind: 'image credit', re: /^(\(?\s*)?(image|photo|picture|illustration|graphic|chart|source|credit|photograph)s?( credit| by| source)?\s*:\s*.{1,120}$/i },
  { kind: 'image credit', re: /^\(?(image|photo)s? (courtesy of|by|via)\b.{1,100}\)?$/i },
  { kind: 'image credit', re: /^.{0,80}\((source|image|photo): [^)]{1,80}\)$/i },
  { kind: 'share', re: /^(share( this( article| story)?)?( on (x|twitter|facebook|linkedin))?|tweet|email|print|copy link|click to share.*)[:.]?$/i },
  { kind: 'advert', re: /^(advertisement|sponsored( content)?|promoted|ad)$/i },
  { kind: 'comments', re: /^((log in|sign in|register) to (post|comment|leave)|comments?( \(\d+\))?|leave a (comment|reply))\b.{0,60}$/i },
  { kind: 'copyright', re: /^(copyright\s*)?©.{0,120}$|^all rights reserved\.?$/i },
];

/** Typography to one consistent form, so the tokenizer sees one spelling of each mark. */
export function normaliseText(text: string): string {
  return (
    text
      .normalize('NFC')
      .replace(/\r\n?/g, '\n')
      .replace(/[\u200B-\u200D\u2060\uFEFF\u00AD]/g, '') // zero-width characters, soft hyphens
      .replace(/[\u00A0\u2000-\u200A\u202F\u205F\u3000\t]/g, ' ') // exotic spaces
      .replace(/[\u2018\u2019\u201A\u201B\u2032]/g, "'")
      .replace(/[\u201C\u201D\u201E\u201F\u2033]/g, '"')
      .replace(/\u2026/g, '...')
      // " -- " and spaced hyphens used as dashes become a proper em dash.
      .replace(/ (--|–|-) /g, ' — ')
      .replace(/ {2,}/g, ' ')
      .split('\n')
      .map((l) => l.trim())
      .join('\n')
      .replace(/\n{3,}/g, '\n\n')
      .trim()
  );
}

/** Removes boilerplate lines; returns the text and what was removed, by kind. */
export function stripBoilerplate(text: string, stripped: Record<string, number> = {}): string {
  const paragraphs = text.split(/\n\s*\n/);
  const kept = paragraphs.filter((p) => {
    const line = p.trim();
    if (!line) return false;
    if (line.length > 240) return true; // real paragraphs are long; furniture is short
    const hit = BOILERPLATE.find((b) => b.re.test(line));
    if (hit) stripped[hit.kind] = (stripped[hit.kind] ?? 0) + 1;
    return !hit;
  });
  return kept.join('\n\n');
}

export const countWords = (s: string) => (s.match(/[\p{L}\p{N}]+(?:['’][\p{L}]+)?/gu) ?? []).length;

export function cleanArticles(input: ArticleInput[], opts: CleanOptions = DEFAULT_CLEAN_OPTIONS): CleanResult {
  const res: CleanResult = {
    articles: [],
    dropped: [],
    counts: { input: input.length, kept: 0, dropped: {}, linesStripped: {} },
  };
  const drop = (a: ArticleInput, reason: string) => {
    res.dropped.push({ id: a.id, url: a.url, reason });
    res.counts.dropped[reason] = (res.counts.dropped[reason] ?? 0) + 1;
  };
  for (const a of input) {
    const title = a.title ? normaliseText(a.title).replace(/\s+/g, ' ') : '';
    let body = stripBoilerplate(normaliseText(a.body ?? ''), res.counts.linesStripped);
    // The headline repeated as the first line adds nothing to the body.
    if (title && body.split('\n', 1)[0].trim() === title) body = body.slice(title.length).trim();
    if (!title) drop(a, 'no title');
    else if (!body) drop(a, 'empty body');
    else if (countWords(body) < opts.minWords) drop(a, `too short (< ${opts.minWords} words)`);
    else if (looksLikeIndex(body)) drop(a, 'not an article (list of links or headlines)');
    else res.articles.push({ ...a, title, body });
  }
  res.counts.kept = res.articles.length;
  return res;
}

/** Index pages, tag pages and the like: many short lines and few sentences. */
function looksLikeIndex(body: string): boolean {
  const paras = body.split(/\n\n/);
  if (paras.length < 8) return false;
  const short = paras.filter((p) => p.length < 80 && !/[.!?]["')]?$/.test(p)).length;
  return short / paras.length > 0.6;
}
