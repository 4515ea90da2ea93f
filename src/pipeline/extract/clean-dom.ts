import type { Element } from 'domhandler';
import type { BodyOptions } from './body.ts';
import { descendants, isElement, removeNodes } from './dom.ts';
import { RELATED_HEADING } from './patterns.ts';
import { classWeight, linkDensity, type StatMap } from './stats.ts';
import { blocksToText } from './text.ts';

/** Inside the chosen article: widgets, link lists, galleries, the headline and teaser paragraphs go. */

const CONDITIONAL_TAGS = new Set(['form', 'fieldset', 'table', 'ul', 'ol', 'div', 'section', 'aside', 'dl']);

/** Readability's "clean conditionally": widgets, link lists and image galleries inside the article. */
function shouldDropBlock(el: Element, stats: StatMap, opts: BodyOptions): boolean {
  const tag = el.name.toLowerCase();
  const s = stats.get(el);
  if (!s) return false;
  // Embedded posts (tweets, Instagram) are quotations the article makes: kept whatever their class says.
  if (s.text > 0 && s.quoteText / s.text > 0.5) return false;
  const weight = classWeight(el, opts.weightClasses);
  // A negative class word ("media", "meta") on a block of real prose is a styling accident.
  const prose = s.paragraphs > 0 && s.text >= 100 && linkDensity(s) < 0.2;
  if (weight < 0 && !prose) return true;
  if (s.commas >= 10) return false;
  const isList = tag === 'ul' || tag === 'ol';
  if (tag === 'table' && isDataTable(el, stats)) return false;
  const p = s.paragraphs;
  const img = s.images;
  const li = s.listItems - 100; // Readability's offset: only lists of 100+ items count against a block
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

const nextElement = (el: Element): Element | null => {
  for (let n = el.next; n; n = n.next) if (isElement(n)) return n;
  return null;
};

/**
 * "More stories" / "Related" as a heading inside the article container, followed by a list of
 * links (or by nothing: the list itself was already dropped as a link list).
 */
function introducesRelatedList(el: Element, stats: StatMap): boolean {
  const s = stats.get(el);
  if (!s || s.text === 0 || s.text > 80 || s.hasBlock) return false;
  if (!RELATED_HEADING.test(blocksToText([el]))) return false;
  const next = nextElement(el);
  const ns = next && stats.get(next);
  return !next || next.name === 'ul' || next.name === 'ol' || (!!ns && linkDensity(ns) > 0.5);
}

function isDataTable(table: Element, stats: StatMap): boolean {
  if (table.attribs.role === 'presentation' || table.attribs.datatable === '0') return false;
  return !!table.attribs.summary || !!stats.get(table)?.tableMarkup;
}

export function cleanArticle(roots: Element[], stats: StatMap, opts: BodyOptions): void {
  for (const root of roots) {
    // Deepest first. Statistics are those of the block as the page had it: a container is judged
    // with whatever junk it held, which (measured) removes whole widgets better than re-counting.
    const blocks = descendants(root).filter((d) => CONDITIONAL_TAGS.has(d.name.toLowerCase())).reverse();
    removeNodes(blocks.filter((b) => shouldDropBlock(b, stats, opts)));
    const gone = new Set<Element>();
    for (const h of descendants(root)) {
      if (gone.has(h)) continue;
      // the headline is metadata, not body; a negatively weighted h2 is a widget title
      if (h.name === 'h1' || (h.name === 'h2' && classWeight(h, opts.weightClasses) < 0)) gone.add(h);
      else if (isLinkOnlyParagraph(h, stats)) gone.add(h);
      else if (introducesRelatedList(h, stats)) {
        gone.add(h);
        const list = nextElement(h);
        if (list) gone.add(list);
      }
    }
    removeNodes(gone);
  }
}

const HEADINGS = new Set(['h1', 'h2', 'h3', 'h4', 'h5', 'h6']);

/** Linked headings that make up this share of the blocks mean a list of stories, not a story. */
const LISTING_SHARE = 0.25;

/**
 * A listing page (section front, author archive, search results) has the shape of an article
 * to the scorer: prose in one container. What gives it away is a headline link per item.
 */
export function looksLikeListing(roots: Element[], stats: StatMap): boolean {
  let linkedHeadings = 0;
  let blocks = 0;
  for (const root of roots) {
    for (const el of [root, ...descendants(root)]) {
      if (el.name === 'p' || el.name === 'li') blocks++;
      else if (HEADINGS.has(el.name)) {
        blocks++;
        const s = stats.get(el);
        if (s && s.text > 0 && s.link >= 0.9 * s.text) linkedHeadings++;
      }
    }
  }
  return linkedHeadings >= 3 && linkedHeadings >= LISTING_SHARE * blocks;
}
