/**
 * Text quality gates applied to decoded pages before they become articles. Pure.
 */

/**
 * Share of U+FFFD replacement characters above which a page's text is judged mis-decoded (bytes
 * that are not in the charset the page declared, typically windows-1252 served as UTF-8). One in a
 * hundred is far above what a real page carries (a stray bad byte or two) and far below what a
 * wrong charset produces; training on such text teaches the model to emit �.
 */
export const MAX_REPLACEMENT_SHARE = 0.01;

const REPLACEMENT = 0xfffd;

/** Fraction of the string's characters that are U+FFFD (0 for an empty string). */
export function replacementShare(text: string): number {
  if (!text) return 0;
  let n = 0;
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === REPLACEMENT) n++;
  return n / text.length;
}

/**
 * Why `text` is not usable because of its decoding (a reason starting with `bad-encoding`), or
 * null when it is fine.
 */
export function encodingProblem(text: string, charset: string | null): string | null {
  const share = replacementShare(text);
  if (share <= MAX_REPLACEMENT_SHARE) return null;
  const pct = (share * 100).toFixed(1);
  return `bad-encoding: ${pct}% of the text is U+FFFD replacement characters (decoded as ${charset ?? 'utf-8'}; over ${MAX_REPLACEMENT_SHARE * 100}% means the page's bytes do not match its charset)`;
}
