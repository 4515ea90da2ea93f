import type { AnyNode, Element } from 'domhandler';
import { isElement, tagOf } from './dom.ts';
import { CONTAINER_TAGS } from './score.ts';
import { linkDensity, type StatMap } from './stats.ts';
import { blocksToText } from './text.ts';

/** Choosing the article: the best-scoring container, its continuations, and split-off chunks. */

function ancestors(el: Element): Element[] {
  const out: Element[] = [];
  for (let p = el.parent; p && isElement(p as AnyNode); p = p.parent) out.push(p as Element);
  return out;
}

/**
 * Readability's choice of the article container: the best score, moved up to a shared ancestor
 * when near-equal candidates sit side by side, up to a parent that scores better, and out of
 * single-child wrappers.
 */
export function pickTopCandidate(scores: Map<Element, number>): Element | null {
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
export function gatherSiblings(top: Element, scores: Map<Element, number>, stats: StatMap): Element[] {
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
    if (top.name === 'article' && sib.name === 'article') continue; // another story, not more of this one
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

/**
 * A distant look-alike needs this much prose, absolute and relative to the top candidate's, to
 * count as more of the article (a short quoted claim or teaser in the same markup does not).
 */
const MIN_DISTANT_PROSE = 100;
const MIN_DISTANT_SHARE = 0.15;

function onlyElementChild(el: Element): Element | undefined {
  const children = el.children.filter(isElement);
  return children.length === 1 ? children[0] : undefined;
}

const signature = (el: Element): string => `${el.name}.${(el.attribs.class ?? '').trim()}`;

/**
 * Articles split into several containers a few levels apart (chunks separated by ad rails or
 * pull-outs) lose the other chunks to sibling merging alone. Such chunks are built like the top
 * candidate (same tag and class), which teaser lists and widgets near the article are not: walk up
 * from the selection and take those look-alikes that hold prose, in document order.
 */
export function gatherDistantParts(parts: Element[], top: Element, prose: Map<Element, number>, stats: StatMap): Element[] {
  // An <article> around the selection bounds the search: infinite-scroll pages render the next
  // story below in identical markup, each in its own <article>.
  const boundary = [top, ...ancestors(top)].find((e) => e.name === 'article');
  if (top === boundary) return parts;
  // The top candidate may have climbed out of single-child wrappers; any of them can be the chunk's shape.
  const sigs = new Set<string>();
  for (let el: Element | undefined = top; el; el = onlyElementChild(el)) {
    if (el.attribs.class?.trim()) sigs.add(signature(el));
  }
  if (!sigs.size) return parts;
  const minProse = Math.max(MIN_DISTANT_PROSE, MIN_DISTANT_SHARE * (prose.get(top) ?? 0));
  const lookAlikes = (root: Element): Element[] => {
    const found: Element[] = [];
    const stack: Element[] = [root];
    while (stack.length) {
      const el = stack.pop()!;
      if (sigs.has(signature(el))) {
        const s = stats.get(el);
        if (s && (prose.get(el) ?? 0) >= minProse && linkDensity(s) < 0.25) found.push(el);
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
  const selected = new Set(parts);
  let out: Element[] = [];
  if (parent0) {
    for (const sib of parent0.children) {
      if (!isElement(sib)) continue;
      if (selected.has(sib)) out.push(sib);
      else out.push(...lookAlikes(sib));
    }
  } else out = parts;
  let anchor = top.parent as Element | null;
  for (let level = 0; level < DISTANT_LEVELS && anchor && isElement(anchor as AnyNode); level++) {
    const parent = anchor.parent;
    if (!parent || !isElement(parent as AnyNode) || tagOf(anchor) === 'body' || anchor === boundary) break;
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
