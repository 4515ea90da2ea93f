import type { AnyNode, Element, ParentNode } from 'domhandler';

/**
 * Small helpers over htmlparser2's DOM (domhandler nodes). The extractor walks these nodes
 * directly instead of going through cheerio's wrapper objects: on a 100 kB page that is the
 * difference between a few milliseconds and a few tens of them.
 */

export function isElement(node: AnyNode): node is Element {
  return node.type === 'tag' || node.type === 'script' || node.type === 'style';
}

export function isText(node: AnyNode): node is AnyNode & { data: string } {
  return node.type === 'text';
}

/** Lower-case tag name, or '' for non-elements. */
export function tagOf(node: AnyNode): string {
  return isElement(node) ? node.name.toLowerCase() : '';
}

/** `class` and `id` joined, the string boilerplate patterns are tested against. */
export function classAndId(el: Element): string {
  const c = el.attribs.class ?? '';
  const id = el.attribs.id ?? '';
  return c && id ? `${c} ${id}` : c || id;
}

export function removeNode(node: AnyNode): void {
  const parent = node.parent as ParentNode | null;
  if (!parent) return;
  const i = parent.children.indexOf(node as never);
  if (i >= 0) parent.children.splice(i, 1);
  node.parent = null;
  // Keep sibling links consistent: domutils and css-select rely on them.
  if (node.prev) node.prev.next = node.next;
  if (node.next) node.next.prev = node.prev;
  node.prev = null;
  node.next = null;
}

/** Every element under `root` (excluding root), in document order. */
export function descendants(root: ParentNode): Element[] {
  const out: Element[] = [];
  const stack: AnyNode[] = [...root.children].reverse();
  while (stack.length) {
    const node = stack.pop()!;
    if (!isElement(node)) continue;
    out.push(node);
    for (let i = node.children.length - 1; i >= 0; i--) stack.push(node.children[i]!);
  }
  return out;
}

/** Raw concatenated text of a subtree (no whitespace normalisation). */
export function rawText(node: AnyNode): string {
  if (isText(node)) return node.data;
  if (!isElement(node) && node.type !== 'root') return '';
  let s = '';
  for (const child of (node as ParentNode).children) s += rawText(child);
  return s;
}

export const squash = (s: string): string => s.replace(/\s+/g, ' ').trim();
