import type { AnyNode } from 'domhandler';
import { isElement, isText } from './dom.ts';
import { BLOCK_TAGS } from './patterns.ts';

/**
 * Plain text of DOM subtrees: each block element starts a new paragraph, paragraphs are separated
 * by one blank line, `<br>` is a line break inside a paragraph, whitespace inside a line is
 * collapsed the way a browser renders it.
 */
/** Zero-width spaces and joiners, word joiner, BOM and soft hyphen: invisible, and they split words. */
const INVISIBLE = /[\u00ad\u200b-\u200d\u2060\ufeff]/g;

/** Raw-text elements whose content is code or markup, not prose (they survive in selector output). */
const NEVER_TEXT = new Set(['script', 'style', 'noscript', 'template', 'head', 'title']);

export function blocksToText(nodes: AnyNode[]): string {
  return blocksToParagraphs(nodes).join('\n\n');
}

/** The paragraphs of `blocksToText`, one string each (lines inside joined by '\n'). */
export function blocksToParagraphs(nodes: AnyNode[]): string[] {
  const paragraphs: string[] = [];
  let lines: string[] = [];
  let line = '';

  const endLine = (): void => {
    const t = line.replace(INVISIBLE, '').replace(/\s+/g, ' ').trim();
    if (t) lines.push(t);
    line = '';
  };
  const endParagraph = (): void => {
    endLine();
    if (lines.length) paragraphs.push(lines.join('\n'));
    lines = [];
  };

  // Iterative walk (a stack of nodes and block-end markers) so deep nesting cannot overflow.
  const BLOCK_END = null;
  const stack: (AnyNode | null)[] = [...nodes].reverse();
  while (stack.length) {
    const node = stack.pop()!;
    if (node === BLOCK_END) {
      endParagraph();
      continue;
    }
    if (isText(node)) {
      line += node.data;
      continue;
    }
    if (!isElement(node)) continue;
    const tag = node.name.toLowerCase();
    if (NEVER_TEXT.has(tag)) continue;
    if (tag === 'br') {
      endLine();
      continue;
    }
    const block = BLOCK_TAGS.has(tag);
    if (block) {
      endParagraph();
      stack.push(BLOCK_END);
    } else if (tag === 'td' || tag === 'th') line += ' ';
    for (let i = node.children.length - 1; i >= 0; i--) stack.push(node.children[i]!);
  }
  endParagraph();
  return paragraphs;
}
