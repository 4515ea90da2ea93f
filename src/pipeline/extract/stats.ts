import type { AnyNode, Element, ParentNode } from 'domhandler';
import { isElement, isText, tagOf } from './dom.ts';
import { BLOCK_TAGS, COMMAS, NEGATIVE, POSITIVE } from './patterns.ts';

/** Text statistics of DOM subtrees, computed once per pass and shared by every heuristic. */

const TABLE_MARKUP = new Set(['caption', 'th', 'thead', 'tfoot', 'col', 'colgroup']);

export interface Stats {
  /** Characters of visible text (whitespace runs trimmed per text node). */
  text: number;
  /** Characters of text inside links. */
  link: number;
  commas: number;
  /** Number of <p> descendants. */
  paragraphs: number;
  /** Has a block-level descendant. */
  hasBlock: boolean;
  images: number;
  listItems: number;
  /** Characters of text inside headings, and inside blockquotes. */
  headingText: number;
  quoteText: number;
  /** Has caption/th/thead/tfoot/col markup (a data table rather than a layout table). */
  tableMarkup: boolean;
}

const emptyStats = (): Stats => ({ text: 0, link: 0, commas: 0, paragraphs: 0, hasBlock: false, images: 0, listItems: 0, headingText: 0, quoteText: 0, tableMarkup: false });

export type StatMap = Map<AnyNode, Stats>;

/**
 * Per-element text statistics in one pass. Iterative (reverse pre-order visits every child before
 * its parent) so that pathological nesting depth cannot overflow the stack.
 */
export function computeStats(root: ParentNode): StatMap {
  const stats: StatMap = new Map();
  const order: [ParentNode, boolean][] = [];
  const stack: [ParentNode, boolean][] = [[root, false]];
  while (stack.length) {
    const [node, inLink] = stack.pop()!;
    const link = inLink || tagOf(node as AnyNode) === 'a';
    order.push([node, link]);
    for (const child of node.children) if (isElement(child)) stack.push([child, link]);
  }
  for (let i = order.length - 1; i >= 0; i--) {
    const [node, link] = order[i]!;
    const s = emptyStats();
    for (const child of node.children) {
      if (isText(child)) {
        const t = child.data.trim();
        if (!t) continue;
        s.text += t.length;
        if (link) s.link += t.length;
        s.commas += t.match(COMMAS)?.length ?? 0;
      } else if (isElement(child)) {
        const c = stats.get(child)!;
        s.text += c.text;
        s.link += c.link;
        s.commas += c.commas;
        s.paragraphs += c.paragraphs;
        s.images += c.images;
        s.listItems += c.listItems;
        s.headingText += c.headingText;
        s.quoteText += c.quoteText;
        if (c.tableMarkup) s.tableMarkup = true;
        if (c.hasBlock || BLOCK_TAGS.has(child.name.toLowerCase())) s.hasBlock = true;
      }
    }
    const tag = tagOf(node as AnyNode);
    if (tag === 'p') s.paragraphs += 1;
    else if (tag === 'img') s.images += 1;
    else if (tag === 'li') s.listItems += 1;
    else if (/^h[1-6]$/.test(tag)) s.headingText = s.text;
    else if (tag === 'blockquote') s.quoteText = s.text;
    else if (TABLE_MARKUP.has(tag)) s.tableMarkup = true;
    stats.set(node as AnyNode, s);
  }
  return stats;
}

export const linkDensity = (s: Stats | undefined): number => (s && s.text > 0 ? s.link / s.text : 0);

/** Readability's class weight: ±25 for each of class and id that carries a positive / negative word. */
export function classWeight(el: Element, enabled: boolean): number {
  if (!enabled) return 0;
  let w = 0;
  for (const v of [el.attribs.class, el.attribs.id]) {
    if (!v) continue;
    if (NEGATIVE.test(v)) w -= 25;
    if (POSITIVE.test(v)) w += 25;
  }
  return w;
}

