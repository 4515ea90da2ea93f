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

/**
 * `class` and `id` joined, the string boilerplate patterns are tested against; camelCase is split
 * ("newsCaption" → "news Caption") so word patterns see the words.
 */
export function classAndId(el: Element): string {
  const c = el.attribs.class ?? '';
  const id = el.attribs.id ?? '';
  const joined = c && id ? `${c} ${id}` : c || id;
  return joined.replace(/([a-z])([A-Z])/g, '$1 $2');
}

/** Sets `parent`'s children and relinks parent/prev/next pointers (domutils and css-select rely on them). */
export function setChildren(parent: ParentNode, children: AnyNode[]): void {
  parent.children = children as ParentNode['children'];
  children.forEach((c, i) => {
    c.parent = parent;
    c.prev = children[i - 1] ?? null;
    c.next = children[i + 1] ?? null;
  });
}

/**
 * Detaches all `nodes` from the tree, one pass per affected parent: removing nodes one by one
 * (indexOf + splice) is quadratic on pages with thousands of siblings.
 */
export function removeNodes(nodes: Iterable<AnyNode>): void {
  const byParent = new Map<ParentNode, Set<AnyNode>>();
  for (const n of nodes) {
    const parent = n.parent as ParentNode | null;
    if (!parent) continue;
    let set = byParent.get(parent);
    if (!set) byParent.set(parent, (set = new Set()));
    set.add(n);
  }
  for (const [parent, gone] of byParent) {
    setChildren(parent, parent.children.filter((c) => !gone.has(c)));
    for (const n of gone) {
      n.parent = null;
      n.prev = null;
      n.next = null;
    }
  }
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

export const squash = (s: string): string => s.replace(/\s+/g, ' ').trim();

/**
 * Flattens everything nested deeper than `maxDepth` into plain text under the element at that
 * depth. Real pages stay far below any sensible limit; a pathological one (thousands of unclosed
 * <div>s) would otherwise make every selector query quadratic in the depth.
 */
export function limitDepth(root: ParentNode, maxDepth: number): void {
  const stack: [ParentNode, number][] = [[root, 0]];
  while (stack.length) {
    const [node, depth] = stack.pop()!;
    if (depth >= maxDepth) {
      flattenToText(node);
      continue;
    }
    for (const child of node.children) if (isElement(child)) stack.push([child, depth + 1]);
  }
}

function flattenToText(el: ParentNode): void {
  const texts: AnyNode[] = [];
  const stack: AnyNode[] = [...el.children].reverse();
  while (stack.length) {
    const node = stack.pop()!;
    if (isText(node)) texts.push(node);
    else if (isElement(node) && node.type === 'tag') {
      for (let i = node.children.length - 1; i >= 0; i--) stack.push(node.children[i]!);
    }
  }
  setChildren(el, texts);
}
