/**
 * The max-length policy of the dataset build (pure): an example longer than the token limit is
 * truncated to whole paragraphs, or split into several that each continue the one before.
 */
import { MorrisError } from '../../errors.ts';
import type { ChatMessage } from '../../prompts.ts';
import type { TokenCounter } from './token-count.ts';

export type LengthPolicy = 'truncate' | 'split';

export interface LengthCounts {
  /** Examples that fitted as they were. */
  fitted: number;
  /** Examples cut to fit (policy truncate, or a single paragraph too long in split mode). */
  truncated: number;
  /** Articles split into several examples, and the examples that made. */
  split: number;
  splitParts: number;
}

/**
 * Applies the max-length policy to one conversation whose last turn is the assistant's text
 * (paragraphs separated by blank lines). `truncate` keeps the longest prefix of whole paragraphs
 * that fits; `split` packs paragraphs into several examples, each continuation asking to carry on
 * from where the previous part ended. A single paragraph too long for any example is cut by words.
 */
export function fitToLength(
  messages: ChatMessage[],
  title: string,
  counter: TokenCounter,
  settings: { maxTokens: number; policy: LengthPolicy },
  counts: LengthCounts,
): { messages: ChatMessage[]; nTokens: number }[] {
  const max = settings.maxTokens;
  const whole = counter.countChat(messages);
  if (whole <= max) {
    counts.fitted++;
    return [{ messages, nTokens: whole }];
  }
  const head = messages.slice(0, -1);
  const paragraphs = messages[messages.length - 1].content.split(/\n\s*\n/).filter((p) => p.trim());
  const build = (h: ChatMessage[], paras: string[]) => [...h, { role: 'assistant' as const, content: paras.join('\n\n') }];
  const emptyCost = counter.countChat(build(head, []));
  if (emptyCost >= max) {
    throw new MorrisError('BAD_INPUT', `--max-tokens ${max} leaves no room for an answer: the prompt alone takes ${emptyCost} tokens.`, {
      hint: 'Raise --max-tokens (MORRIS_MAX_SEQ_TOKENS) or shorten the columnist’s system-prompt.md (data/columnists/<name>/).',
    });
  }
  if (settings.policy === 'truncate') {
    counts.truncated++;
    return [fitPrefix(head, paragraphs, counter, max, build)];
  }

  const parts: { messages: ChatMessage[]; nTokens: number }[] = [];
  let rest = paragraphs;
  let h = head;
  while (rest.length) {
    const part = fitPrefix(h, rest, counter, max, build);
    if (part.cut) counts.truncated++;
    parts.push(part);
    rest = rest.slice(part.used);
    if (rest.length) {
      const last = part.messages[part.messages.length - 1].content.split(/\n\s*\n/).pop() ?? '';
      const tail = last.split(/(?<=[.!?])\s+/).pop()?.split(/\s+/).slice(-40).join(' ') ?? '';
      h = [
        head[0],
        { role: 'user', content: `Continue your column "${title}" from where it left off: "${tail}"` },
      ];
    }
  }
  counts.split++;
  counts.splitParts += parts.length;
  return parts;
}

/** The most leading paragraphs that fit (binary search: token counts grow with paragraphs). */
function fitPrefix(
  head: ChatMessage[],
  paragraphs: string[],
  counter: TokenCounter,
  max: number,
  build: (h: ChatMessage[], p: string[]) => ChatMessage[],
): { messages: ChatMessage[]; nTokens: number; used: number; cut: boolean } {
  let lo = 0;
  let hi = paragraphs.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (counter.countChat(build(head, paragraphs.slice(0, mid))) <= max) lo = mid;
    else hi = mid - 1;
  }
  if (lo > 0) {
    const msgs = build(head, paragraphs.slice(0, lo));
    return { messages: msgs, nTokens: counter.countChat(msgs), used: lo, cut: false };
  }
  // Not even one paragraph fits: keep as many of its words as do.
  const words = paragraphs[0].split(/\s+/);
  let wl = 0;
  let wh = words.length;
  while (wl < wh) {
    const mid = Math.ceil((wl + wh) / 2);
    if (counter.countChat(build(head, [words.slice(0, mid).join(' ')])) <= max) wl = mid;
    else wh = mid - 1;
  }
  const msgs = build(head, [words.slice(0, Math.max(1, wl)).join(' ')]);
  return { messages: msgs, nTokens: counter.countChat(msgs), used: 1, cut: true };
}
