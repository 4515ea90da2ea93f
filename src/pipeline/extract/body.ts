import type { AnyNode, Document, Element, ParentNode } from 'domhandler';
import { classAndId, descendants, isElement, isText, removeNode, tagOf } from './dom.ts';
import {
  BLOCK_TAGS, COMMAS, DROP_TAGS, FURNITURE_ROLES, FURNITURE_TAGS, MAYBE_CANDIDATE, NEGATIVE, POSITIVE,
  RELATED_HEADING, STRONGLY_UNLIKELY, UNLIKELY, UNLIKELY_FRAGMENT,
} from './patterns.ts';
import { dropBoilerplateParagraphs } from './boilerplate.ts';
import { blocksToParagraphs, blocksToText } from './text.ts';

/**
 * Content-scoring body extraction in the Readability / boilerpipe tradition:
 *  1. prune what is never article text (scripts, hidden blocks, nav/aside/footer, blocks whose
 *     class or id says "comments", "related", "share"…);
 *  2. score every paragraph (length, commas) and hand the score up to its ancestors, so the
 *     container holding most prose wins; class/id words and link density adjust the scores;
 *  3. take the best container plus the siblings that look like continuations of it;
 *  4. drop link lists, widgets and forms inside it, and write it out as plain paragraphs.
 */

export interface BodyOptions {
  /** Remove blocks whose class/id looks like boilerplate before scoring (off in the retry pass). */
  stripUnlikely: boolean;
  /** Use class/id words when weighting containers. */
  weightClasses: boolean;
}

/** Text this short is not an article body; the extractor retries with laxer settings. */
export const MIN_BODY_CHARS = 250;

interface Stats {
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

type StatMap = Map<AnyNode, Stats>;

/**
 * Per-element text statistics in one pass. Iterative (reverse pre-order visits every child before
 * its parent) so that pathological nesting depth cannot overflow the stack.
 */
function computeStats(root: ParentNode): StatMap {
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

const linkDensity = (s: Stats | undefined): number => (s && s.text > 0 ? s.link / s.text : 0);

function classWeight(el: Element, opts: BodyOptions): number {
  if (!opts.weightClasses) return 0;
  let w = 0;
  for (const v of [el.attribs.class, el.attribs.id]) {
    if (!v) continue;
    if (NEGATIVE.test(v)) w -= 25;
    if (POSITIVE.test(v)) w += 25;
  }
  return w;
}

function isHidden(el: Element): boolean {
  const a = el.attribs;
  if (a.hidden !== undefined) return true;
  const style = a.style;
  return !!style && /display\s*:\s*none|visibility\s*:\s*hidden/i.test(style);
}

/**
 * Step 1. Removal is skipped for a block that holds most of the page's paragraph text: a wrapper
 * that happens to carry "hidden" or a "comments-open" class must not take the article with it.
 */
function prune(doc: Document, opts: BodyOptions): void {
  const before = computeStats(doc);
  const totalParagraphText = paragraphTextTotal(doc, before);
  const holdsArticle = (el: Element): boolean => {
    const s = before.get(el);
    return !!s && s.paragraphs >= 3 && s.text - s.link > 0.5 * totalParagraphText;
  };

  const pending: ParentNode[] = [doc];
  while (pending.length) {
    const parent = pending.pop()!;
    for (const node of [...parent.children]) {
      if (!isElement(node)) {
        if (node.type !== 'text') removeNode(node); // comments, doctype, CDATA
        continue;
      }
      const tag = node.name.toLowerCase();
      if (DROP_TAGS.has(tag)) {
        removeNode(node);
        continue;
      }
      if (tag !== 'body' && tag !== 'html' && shouldPrune(node, tag, opts) && !holdsArticle(node)) {
        removeNode(node);
        continue;
      }
      pending.push(node);
    }
  }
}

function shouldPrune(el: Element, tag: string, opts: BodyOptions): boolean {
  if (isHidden(el)) return true;
  if (el.attribs['aria-hidden'] === 'true') return true;
  if (FURNITURE_TAGS.has(tag) || tag === 'header') return true;
  const role = el.attribs.role;
  if (role && FURNITURE_ROLES.has(role.toLowerCase())) return true;
  if (!opts.stripUnlikely || tag === 'a' || tag === 'article' || tag === 'main') return false;
  const ci = classAndId(el);
  if (!ci) return false;
  if (STRONGLY_UNLIKELY.test(ci) || UNLIKELY_FRAGMENT.test(ci)) return true;
  return UNLIKELY.test(ci) && !MAYBE_CANDIDATE.test(ci);
}

function paragraphTextTotal(doc: Document, stats: StatMap): number {
  let total = 0;
  for (const el of descendants(doc)) {
    if (el.name === 'p') {
      const s = stats.get(el);
      if (s) total += s.text - s.link;
    }
  }
  return total;
}

// --------------------------------------------------------------------------- step 2: scoring

const SCORE_TAGS = new Set(['p', 'pre', 'td', 'h2', 'h3', 'h4', 'h5', 'h6']);
const CONTAINER_TAGS = new Set(['div', 'section', 'article', 'main', 'span', 'font', 'center', 'form']);

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
  return score + classWeight(el, opts);
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

interface Scores {
  /** Readability-style content score of containers near paragraphs. */
  score: Map<Element, number>;
  /** Characters of prose (paragraph text outside links, in paragraphs that are not link lists) under each element. */
  prose: Map<Element, number>;
}

function scoreCandidates(doc: Document, stats: StatMap, opts: BodyOptions): Scores {
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

// --------------------------------------------------------------------------- step 3: selection

function ancestors(el: Element): Element[] {
  const out: Element[] = [];
  for (let p = el.parent; p && isElement(p as AnyNode); p = p.parent) out.push(p as Element);
  return out;
}

function pickTopCandidate(scores: Map<Element, number>): Element | null {
  const ranked = [...scores.entries()].sort((a, b) => b[1] - a[1]).slice(0, 5);
  if (!ranked.length) return null;
  let [top, topScore] = ranked[0]!;

  // Several near-equal candidates that share an ancestor: the article is that ancestor
  // (e.g. paragraphs split across sibling divs by inline ads).
  const alternatives = ranked.slice(1).filter(([, s]) => s / topScore >= 0.75).map(([e]) => ancestors(e));
  if (alternatives.length >= 3) {
    for (let p = top.parent; p && tagOf(p as AnyNode) !== 'body' && isElement(p as AnyNode); p = p.parent) {
      const shared = alternatives.filter((anc) => anc.includes(p as Element)).length;
      if (shared >= 3) {
        top = p as Element;
        break;
      }
    }
  }

  // Climb while the parent scores at least a third as well and eventually better.
  let lastScore = scores.get(top) ?? topScore;
  const threshold = lastScore / 3;
  for (let p = top.parent; p && isElement(p as AnyNode) && tagOf(p as AnyNode) !== 'body'; p = p.parent) {
    const ps = scores.get(p as Element);
    if (ps === undefined) continue;
    if (ps < threshold) break;
    if (ps > lastScore) {
      top = p as Element;
      break;
    }
    lastScore = ps;
  }
  while (top.parent && isElement(top.parent as AnyNode) && tagOf(top.parent as AnyNode) !== 'body'
    && (top.parent as Element).children.filter(isElement).length === 1) {
    top = top.parent as Element;
  }
  return top;
}

/** The top candidate plus siblings that score well or read like prose. */
function gatherSiblings(top: Element, scores: Map<Element, number>, stats: StatMap): Element[] {
  const parent = top.parent;
  if (!parent || !isElement(parent as AnyNode)) return [top];
  const topScore = scores.get(top) ?? 0;
  const threshold = Math.max(10, topScore * 0.2);
  const out: Element[] = [];
  for (const sib of parent.children) {
    if (!isElement(sib)) continue;
    if (sib === top) {
      out.push(sib);
      continue;
    }
    const bonus = top.attribs.class && sib.attribs.class === top.attribs.class ? topScore * 0.2 : 0;
    const score = scores.get(sib);
    if (score !== undefined && score + bonus >= threshold) {
      out.push(sib);
      continue;
    }
    const s = stats.get(sib);
    if (!s || !(sib.name === 'p' || (!s.hasBlock && CONTAINER_TAGS.has(sib.name)))) continue;
    const ld = linkDensity(s);
    if (s.text > 80 && ld < 0.25) out.push(sib);
    else if (s.text > 0 && s.text < 80 && ld === 0 && /\.( |$)/.test(blocksToText([sib]))) out.push(sib);
  }
  return out;
}

/** How many ancestor levels above the top candidate's parent are searched for more of the article. */
const DISTANT_LEVELS = 5;

/** A distant block needs at least this much prose to count as more of the article. */
const MIN_DISTANT_PROSE = 100;

const signature = (el: Element): string => `${el.name}.${(el.attribs.class ?? '').trim()}`;

/**
 * Articles split into several containers a few levels apart (chunks separated by ad rails or
 * pull-outs) lose the other chunks to sibling merging alone. Such chunks are built like the top
 * candidate (same tag and class), which teaser lists and widgets near the article are not: walk up
 * from the selection and take those look-alikes that hold prose, in document order.
 */
function gatherDistantParts(parts: Element[], top: Element, prose: Map<Element, number>, stats: StatMap): Element[] {
  if (!top.attribs.class?.trim()) return parts;
  const sig = signature(top);
  const lookAlikes = (root: Element): Element[] => {
    const found: Element[] = [];
    const stack: Element[] = [root];
    while (stack.length) {
      const el = stack.pop()!;
      if (signature(el) === sig) {
        const s = stats.get(el);
        if (s && (prose.get(el) ?? 0) >= MIN_DISTANT_PROSE && linkDensity(s) < 0.25) found.push(el);
        continue; // a look-alike nested in a look-alike is already inside it
      }
      for (let k = el.children.length - 1; k >= 0; k--) {
        const c = el.children[k]!;
        if (isElement(c)) stack.push(c);
      }
    }
    return found;
  };

  // Level 0: the top candidate's own siblings that sibling merging left out.
  const parent0 = top.parent;
  let out: Element[] = [];
  if (parent0) {
    for (const sib of parent0.children) {
      if (!isElement(sib)) continue;
      if (parts.includes(sib)) out.push(sib);
      else out.push(...lookAlikes(sib));
    }
  } else out = parts;
  let anchor = top.parent as Element | null;
  for (let level = 0; level < DISTANT_LEVELS && anchor && isElement(anchor as AnyNode); level++) {
    const parent = anchor.parent;
    if (!parent || !isElement(parent as AnyNode) || tagOf(anchor) === 'body') break;
    const before: Element[] = [];
    const after: Element[] = [];
    let seen = false;
    for (const sib of parent.children) {
      if (sib === anchor) seen = true;
      else if (isElement(sib)) (seen ? after : before).push(...lookAlikes(sib));
    }
    out = [...before, ...out, ...after];
    anchor = parent as Element;
  }
  return out;
}

// --------------------------------------------------------------------------- step 4: cleaning

const CONDITIONAL_TAGS = new Set(['form', 'fieldset', 'table', 'ul', 'ol', 'div', 'section', 'aside', 'dl']);

/** Readability's "clean conditionally": widgets, link lists and image galleries inside the article. */
function shouldDropBlock(el: Element, stats: StatMap, opts: BodyOptions): boolean {
  const tag = el.name.toLowerCase();
  const s = stats.get(el);
  if (!s) return false;
  // Embedded posts (tweets, Instagram) are quotations the article makes: kept whatever their class says.
  if (s.text > 0 && s.quoteText / s.text > 0.5) return false;
  const weight = classWeight(el, opts);
  // A negative class word ("media", "meta") on a block of real prose is a styling accident.
  const prose = s.paragraphs > 0 && s.text >= 100 && linkDensity(s) < 0.2;
  if (weight < 0 && !prose) return true;
  if (s.commas >= 10) return false;
  const isList = tag === 'ul' || tag === 'ol';
  if (tag === 'table' && isDataTable(el, stats)) return false;
  const p = s.paragraphs;
  const img = s.images;
  const li = s.listItems - 100;
  const ld = linkDensity(s);
  const headingDensity = s.text ? s.headingText / s.text : 0;
  return (
    (img > 1 && p / img < 0.5) ||
    (!isList && li > p) ||
    (!isList && headingDensity < 0.9 && s.text < 25 && (img === 0 || img > 2) && ld > 0) ||
    (!isList && weight < 25 && ld > 0.2) ||
    (weight >= 25 && ld > 0.5) ||
    (isList && ld > 0.5) ||
    (img === 0 && s.text === 0)
  );
}

/** A short paragraph that is entirely a link: a teaser to another story placed inside the text. */
function isLinkOnlyParagraph(el: Element, stats: StatMap): boolean {
  if (el.name !== 'p') return false;
  const s = stats.get(el);
  return !!s && s.text > 0 && s.text < 200 && s.link >= 0.9 * s.text;
}

const TABLE_MARKUP = new Set(['caption', 'th', 'thead', 'tfoot', 'col', 'colgroup']);

const nextElement = (el: Element): Element | null => {
  for (let n = el.next; n; n = n.next) if (isElement(n)) return n;
  return null;
};

/** "More stories" / "Related" as a heading followed by a list of links, inside the article container. */
function introducesRelatedList(el: Element, stats: StatMap): boolean {
  const s = stats.get(el);
  if (!s || s.text === 0 || s.text > 80 || s.hasBlock) return false;
  const next = nextElement(el);
  if (!next || !RELATED_HEADING.test(blocksToText([el]))) return false;
  const ns = stats.get(next);
  return next.name === 'ul' || next.name === 'ol' || (!!ns && linkDensity(ns) > 0.5);
}

function isDataTable(table: Element, stats: StatMap): boolean {
  if (table.attribs.role === 'presentation' || table.attribs.datatable === '0') return false;
  return !!table.attribs.summary || !!stats.get(table)?.tableMarkup;
}

function cleanArticle(roots: Element[], stats: StatMap, opts: BodyOptions): void {
  for (const root of roots) {
    // Deepest first. Statistics are those of the block as the page had it: a container is judged
    // with whatever junk it held, which (measured) removes whole widgets better than re-counting.
    const blocks = descendants(root).filter((d) => CONDITIONAL_TAGS.has(d.name.toLowerCase())).reverse();
    for (const b of blocks) if (shouldDropBlock(b, stats, opts)) removeNode(b);
    for (const h of descendants(root)) {
      // the headline is metadata, not body; a negatively weighted h2 is a widget title
      if (h.name === 'h1' || (h.name === 'h2' && classWeight(h, opts) < 0)) removeNode(h);
      else if (isLinkOnlyParagraph(h, stats)) removeNode(h);
      else if (introducesRelatedList(h, stats)) {
        removeNode(nextElement(h)!);
        removeNode(h);
      }
    }
  }
}

// --------------------------------------------------------------------------- entry point

/** Body text of a parsed page (mutates the DOM), or '' when nothing looks like an article. */
export function extractBodyText(doc: Document, opts: BodyOptions, title: string | null = null): string {
  prune(doc, opts);
  const stats = computeStats(doc);
  const { score, prose } = scoreCandidates(doc, stats, opts);
  const top = pickTopCandidate(score);
  if (!top) return '';
  const parts = gatherDistantParts(gatherSiblings(top, score, stats), top, prose, stats);
  cleanArticle(parts, stats, opts);
  return dropBoilerplateParagraphs(blocksToParagraphs(parts), title).join('\n\n');
}
