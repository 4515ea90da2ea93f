/**
 * Pure measures used by the evaluation gate: how much a text carries the style guide's signature
 * features, and the longest run of words it shares with any training article (verbatim copying).
 */

/** Signature phrases are the quoted phrases on the guide's "signature phrases" line. */
export function signaturePhrases(guideMarkdown: string): string[] {
  const line = guideMarkdown.split('\n').find((l) => /signature phrases/i.test(l));
  if (!line) return [];
  const found = [...line.matchAll(/["“]([^"”]+)["”]/g)].map((m) => m[1]!.trim().replace(/[.?!,]+$/, ''));
  return [...new Set(found)].filter((p) => p.length > 3);
}

/** Stems spelled -our in British English and -or in American. */
const OUR_STEMS = 'colo|favo|behavio|hono|labo|neighbo|humo|rumo|harbo|flavo|endeavo|savo|vigo|clamo';
/** British spellings the guide asks for, and their American counterparts (same word list). */
const BRITISH = new RegExp(
  `\\b(?:\\w{3,}(?:is(?:e|ed|es|ing|ation|ations))|(?:${OUR_STEMS})ur\\w*|cent(?:re|res)|theatre|metre|litre|catalogue|dialogue|programme|licence|per cent)\\b`,
  'gi',
);
const AMERICAN = new RegExp(
  `\\b(?:\\w{3,}(?:iz(?:e|ed|es|ing|ation|ations))|(?:${OUR_STEMS})r(?:s|ed|ing|able|ite|ites)?|cent(?:er|ers)|theater|meter|liter|catalog|dialog|program|license|percent)\\b`,
  'gi',
);
/** Words a doom-laden opening reaches for. */
const DOOM = /\b(doom|doomed|disaster|sinking|sink|wreck|obituary|rocks|zombie|lemmings?|hostage|funeral|collapse|ruin|grim|bleak|death|dying|iceberg|titanic)\b/i;

export interface StyleReport {
  /** 0..1, the mean of the feature scores below. */
  score: number;
  words: number;
  /** Fraction of signature phrases that appear at least once (case-insensitive). */
  phraseHits: number;
  /** Parenthetical asides per 100 words, scored 1 at ≥ 1 per 100 words. */
  parentheticals: number;
  /** Share of British forms among British + American spellings seen (0.5 when none). */
  british: number;
  /** 1 when the first sentence carries a doom word. */
  doomOpening: number;
  /** 1 when the last sentence is a question (the signature sting). */
  stingQuestion: number;
}

export function styleScore(text: string, phrases: readonly string[]): StyleReport {
  const lower = text.toLowerCase();
  const words = (text.match(/[\p{L}\p{N}']+/gu) ?? []).length;
  const phraseHits = phrases.length ? phrases.filter((p) => lower.includes(p.toLowerCase())).length / phrases.length : 0;
  const parens = (text.match(/\([^()]{3,}\)/g) ?? []).length;
  const parentheticals = words ? Math.min(1, (parens * 100) / words) : 0;
  // Words spelled -ise in both (rise, wise, promise, exercise) are too common to count as British.
  const brit = (text.match(BRITISH) ?? []).filter((w) => !/^(?:\w{0,2}rise|\w*wise|promise\w*|exercis\w*|advertis\w*|premise\w*|expertise|surprise\w*|compris\w*|supervis\w*|televis\w*|revis\w*|advis\w*|devis\w*|concise|precise|franchise\w*|merchandis\w*|enterprise\w*|otherwise|noise\w*|raise\w*|praise\w*|cruise\w*|poise\w*|disguise\w*|demise)$/i.test(w)).length;
  const amer = (text.match(AMERICAN) ?? []).length;
  const british = brit + amer ? brit / (brit + amer) : 0.5;
  const sentences = text.split(/(?<=[.!?])\s+/).map((s) => s.trim()).filter(Boolean);
  const doomOpening = sentences.length && DOOM.test(sentences[0]!) ? 1 : 0;
  const stingQuestion = sentences.length && sentences[sentences.length - 1]!.endsWith('?') ? 1 : 0;
  const parts = [phraseHits, parentheticals, british, doomOpening, stingQuestion];
  const score = words ? parts.reduce((a, b) => a + b, 0) / parts.length : 0;
  return { score, words, phraseHits, parentheticals, british, doomOpening, stingQuestion };
}

/** Lower-cased word tokens; punctuation is dropped so copying cannot hide behind a comma. */
export function wordTokens(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}\p{N}']+/gu) ?? [];
}

/**
 * Longest run of consecutive tokens that `a` shares with `b` (longest common substring over
 * tokens), by dynamic programming over one row at a time: O(|a|·|b|) time, O(|b|) memory.
 */
export function longestCommonRun(a: readonly string[], b: readonly string[]): number {
  if (!a.length || !b.length) return 0;
  // Map tokens to ints once so the inner loop compares numbers.
  const ids = new Map<string, number>();
  const id = (t: string) => {
    let v = ids.get(t);
    if (v === undefined) ids.set(t, (v = ids.size));
    return v;
  };
  const ai = Int32Array.from(a, id);
  const bi = Int32Array.from(b, id);
  let prev = new Int32Array(bi.length + 1);
  let cur = new Int32Array(bi.length + 1);
  let best = 0;
  for (let i = 1; i <= ai.length; i++) {
    const x = ai[i - 1]!;
    for (let j = 1; j <= bi.length; j++) {
      const v = x === bi[j - 1]! ? prev[j - 1]! + 1 : 0;
      cur[j] = v;
      if (v > best) best = v;
    }
    [prev, cur] = [cur, prev];
  }
  return best;
}

export interface CopyReport {
  /** Longest shared word run between the text and any one article. */
  longestRun: number;
  /** Which article (index into the list) it came from; -1 when nothing is shared. */
  articleIndex: number;
}

export function verbatimCopy(text: string, articles: readonly string[]): CopyReport {
  const t = wordTokens(text);
  let best = 0;
  let articleIndex = -1;
  articles.forEach((body, i) => {
    const run = longestCommonRun(t, wordTokens(body));
    if (run > best) {
      best = run;
      articleIndex = i;
    }
  });
  return { longestRun: best, articleIndex };
}
