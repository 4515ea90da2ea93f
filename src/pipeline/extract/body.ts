import type { Document } from 'domhandler';
import { dropBoilerplateParagraphs } from './boilerplate.ts';
import { cleanArticle, looksLikeListing } from './clean-dom.ts';
import { prune } from './prune.ts';
import { scoreCandidates } from './score.ts';
import { gatherDistantParts, gatherSiblings, pickTopCandidate } from './select.ts';
import { computeStats } from './stats.ts';
import { blocksToParagraphs } from './text.ts';

/**
 * Content-scoring body extraction in the Readability / boilerpipe tradition:
 *  1. prune what is never article text (scripts, hidden blocks, nav/aside/footer, blocks whose
 *     class or id says "comments", "related", "share"…);
 *  2. score every paragraph (length, commas) and hand the score up to its ancestors, so the
 *     container holding most prose wins; class/id words and link density adjust the scores;
 *  3. take the best container, the siblings that look like continuations of it, and chunks of
 *     the same article split off a few levels away;
 *  4. drop link lists, widgets and forms inside it, write it out as plain paragraphs, and drop
 *     the paragraphs that are boilerplate on their own (ad labels, datelines, "Follow us…").
 */

export interface BodyOptions {
  /** Remove blocks whose class/id looks like boilerplate before scoring (off in the retry pass). */
  stripUnlikely: boolean;
  /** Use class/id words when weighting containers. */
  weightClasses: boolean;
}

/** Text this short is not an article body; the extractor retries with laxer settings. */
export const MIN_BODY_CHARS = 250;

/** Body text of a parsed page (mutates the DOM), or '' when nothing looks like an article. */
export function extractBodyText(doc: Document, opts: BodyOptions, title: string | null = null): string {
  prune(doc, opts);
  const stats = computeStats(doc);
  const { score, prose } = scoreCandidates(doc, stats, opts);
  const top = pickTopCandidate(score);
  if (!top) return '';
  const parts = gatherDistantParts(gatherSiblings(top, score, stats), top, prose, stats);
  if (looksLikeListing(parts, stats)) return '';
  cleanArticle(parts, stats, opts);
  return dropBoilerplateParagraphs(blocksToParagraphs(parts), title).join('\n\n');
}
