import type { AnyNode, Document, Element, ParentNode } from 'domhandler';
import type { BodyOptions } from './body.ts';
import { descendants, isElement, isText, tagOf } from './dom.ts';
import { BLOCK_TAGS, COMMAS } from './patterns.ts';
import { classWeight, linkDensity, type StatMap } from './stats.ts';

/**
 * Readability's content score: every paragraph earns points for its length and commas and hands
 * them to its parent (in full), grandparent (half) and three more ancestors (less and less), so the
 * container that holds most of the prose ends up on top; link density scales every score down.
 * Alongside, the prose (paragraph text outside links) under each element, for chunk gathering.
 */

/** Elements scored as paragraphs of their own (Readability's DEFAULT_TAGS_TO_SCORE). */
const SCORE_TAGS = new Set(['p', 'pre', 'td', 'h2', 'h3', 'h4', 'h5', 'h6']);
/** Generic containers: a paragraph when they hold no blocks, a candidate when they hold paragraphs. */
export const CONTAINER_TAGS = new Set(['div', 'section', 'article', 'main', 'span', 'font', 'center', 'form']);

function initialScore(el: Element, opts: BodyOptions): number {
  let score = 0;
  switch (tagOf(el)) {
    case 'div': case 'article': case 'main': case 'section':
      score = 5; break;
    case 'pre': case 'td': case 'blockquote':
      score = 3; break;
    case 'address': case 'ol': case 'ul': case 'dl': case 'dd': case 'dt': case 'li': case 'form':
      score = -3; break;
    case 'h1': case 'h2': case 'h3': case 'h4': case 'h5': case 'h6': case 'th':
      score = -5; break;
  }
  return score + classWeight(el, opts.weightClasses);
}

/** Text, link text and commas of the inline content directly inside `el` (nested blocks excluded). */
function inlineRuns(el: Element, stats: StatMap): { text: number; link: number; commas: number } {
  let text = 0, link = 0, commas = 0;
  for (const child of el.children) {
    if (isText(child)) {
      text += child.data.trim().length;
      commas += child.data.match(COMMAS)?.length ?? 0;
    } else if (isElement(child) && !BLOCK_TAGS.has(child.name.toLowerCase())) {
      const s = stats.get(child);
      if (s) {
        text += s.text;
        link += child.name === 'a' ? s.text : s.link;
        commas += s.commas;
      }
    }
  }
  return { text, link, commas };
}

export interface Scores {
  /** Readability-style content score of containers near paragraphs. */
  score: Map<Element, number>;
  /** Characters of prose (paragraph text outside links, in paragraphs that are not link lists) under each element. */
  prose: Map<Element, number>;
}

export function scoreCandidates(doc: Document, stats: StatMap, opts: BodyOptions): Scores {
  const scores = new Map<Element, number>();
  const prose = new Map<Element, number>();
  const add = (el: ParentNode | null, amount: number): void => {
    if (!el || !isElement(el as AnyNode)) return;
    const e = el as Element;
    scores.set(e, (scores.get(e) ?? initialScore(e, opts)) + amount);
  };
  const credit = (first: ParentNode | null, score: number): void => {
    let node = first;
    for (let level = 0; node && level < 5; level++, node = node.parent) {
      const tag = tagOf(node as AnyNode);
      if (tag === 'html' || tag === '') break;
      add(node, score / (level === 0 ? 1 : level === 1 ? 2 : level * 3));
    }
  };

  for (const el of descendants(doc)) {
    const tag = el.name.toLowerCase();
    let text = 0, link = 0, commas = 0, first: ParentNode | null = null;
    if (SCORE_TAGS.has(tag)) {
      const s = stats.get(el);
      if (!s) continue;
      ({ text, link, commas } = s);
      first = el.parent;
    } else if (CONTAINER_TAGS.has(tag)) {
      const s = stats.get(el);
      if (!s) continue;
      // a div with no blocks inside is a paragraph; a div mixing text and blocks scores its loose text
      ({ text, link, commas } = s.hasBlock ? inlineRuns(el, stats) : s);
      first = s.hasBlock ? el : el.parent;
    } else continue;
    if (text < 25) continue;
    credit(first, 1 + commas + Math.min(Math.floor(text / 100), 3));
    if (link < 0.5 * text) {
      for (let node: ParentNode | null = el; node && isElement(node as AnyNode); node = node.parent) {
        prose.set(node as Element, (prose.get(node as Element) ?? 0) + text - link);
      }
    }
  }

  for (const [el, score] of scores) scores.set(el, score * (1 - linkDensity(stats.get(el))));
  return { score: scores, prose };
}
