import type { Document, Element, ParentNode } from 'domhandler';
import type { BodyOptions } from './body.ts';
import type { AnyNode } from 'domhandler';
import { classAndId, descendants, isElement, setChildren } from './dom.ts';
import {
  DROP_TAGS, FURNITURE_ROLES, FURNITURE_TAGS, MAYBE_CANDIDATE, STRONGLY_UNLIKELY, UNLIKELY, UNLIKELY_FRAGMENT,
} from './patterns.ts';
import { computeStats, type StatMap } from './stats.ts';

function isHidden(el: Element): boolean {
  const a = el.attribs;
  if (a.hidden !== undefined) return true;
  const style = a.style;
  return !!style && /display\s*:\s*none|visibility\s*:\s*hidden/i.test(style);
}

/**
 * Removes what is never article text: scripts and embeds, hidden blocks, page furniture (nav,
 * aside, footer, header, figure), and blocks whose class or id says boilerplate. Removal is skipped for a block that holds most of the page's paragraph text: a wrapper
 * that happens to carry "hidden" or a "comments-open" class must not take the article with it.
 */
export function prune(doc: Document, opts: BodyOptions): void {
  const before = computeStats(doc);
  const totalParagraphText = paragraphTextTotal(doc, before);
  const holdsArticle = (el: Element): boolean => {
    const s = before.get(el);
    return !!s && s.paragraphs >= 3 && s.text - s.link > 0.5 * totalParagraphText;
  };

  const pending: ParentNode[] = [doc];
  while (pending.length) {
    const parent = pending.pop()!;
    const kept: AnyNode[] = [];
    for (const node of parent.children) {
      if (!isElement(node)) {
        if (node.type === 'text') kept.push(node); // comments, doctype and CDATA go
        continue;
      }
      const tag = node.name.toLowerCase();
      if (DROP_TAGS.has(tag)) continue;
      if (tag !== 'body' && tag !== 'html' && shouldPrune(node, tag, opts) && !holdsArticle(node)) continue;
      kept.push(node);
      pending.push(node);
    }
    if (kept.length !== parent.children.length) setChildren(parent, kept);
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
