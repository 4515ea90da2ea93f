/**
 * Enhance stage: turns cleaned articles into chat examples in the columnist's voice. The system
 * prompt is the hand-written style guide (data/columnists/<name>/system-prompt.md); each article's user turn
 * is an instruction derived deterministically from its headline and opening, using one of several
 * templates (chosen by a hash of the URL, so the same article always gets the same instruction);
 * hand-written examples on non-telecom topics (data/columnists/<name>/extra-examples.jsonl) are mixed in at a
 * ratio so the voice does not collapse into "only writes about telcos". `loadStyle` is the only
 * I/O here.
 */
import { columnInstruction, readSystemPrompt, type ChatMessage } from '../../prompts.ts';
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { MorrisError } from '../../errors.ts';
import { STYLE_DIR } from '../../paths.ts';
import { countWords, type ArticleInput } from './clean-text.ts';

export { STYLE_DIR };

export interface Style {
  systemPrompt: string;
  /** Hand-written user/assistant pairs (no system turn; it is added here). */
  extras: ChatMessage[][];
}

const extraLine = z.object({
  messages: z
    .array(z.object({ role: z.enum(['user', 'assistant']), content: z.string().min(1) }))
    .min(2)
    .refine((m) => m[0].role === 'user' && m[m.length - 1].role === 'assistant', 'must start with user and end with assistant'),
});

export function loadStyle(dir: string = STYLE_DIR): Style {
  const promptFile = path.join(dir, 'system-prompt.md');
  const extrasFile = path.join(dir, 'extra-examples.jsonl');
  const systemPrompt = readSystemPrompt(promptFile);
  if (systemPrompt === null) {
    throw new MorrisError('NOT_FOUND', `Style system prompt missing or empty: ${promptFile}`);
  }
  const extras: ChatMessage[][] = [];
  if (fs.existsSync(extrasFile)) {
    const lines = fs.readFileSync(extrasFile, 'utf8').split('\n');
    lines.forEach((line, i) => {
      if (!line.trim()) return;
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch (e) {
        throw new MorrisError('BAD_INPUT', `${extrasFile}:${i + 1} is not JSON: ${(e as Error).message}`);
      }
      const r = extraLine.safeParse(parsed);
      if (!r.success) throw new MorrisError('BAD_INPUT', `${extrasFile}:${i + 1}: ${r.error.issues[0].message}`);
      extras.push(r.data.messages);
    });
  }
  return { systemPrompt, extras };
}

export const stableHash = (s: string) => createHash('sha256').update(s).digest('hex');

/** 32-bit number from a stable hash: picks templates and splits deterministically. */
export const hashNumber = (s: string) => parseInt(stableHash(s).slice(0, 8), 16);

/** First sentence of the body (a headline-like first line is skipped), at most `maxWords` words. */
export function opening(body: string, maxWords = 40): string {
  const firstPara = body.split(/\n\s*\n/).find((p) => countWords(p) >= 6) ?? body;
  const sentence = firstPara.match(/^[\s\S]{15,}?[.!?](?=\s|$)/)?.[0] ?? firstPara;
  const words = sentence.trim().split(/\s+/);
  return words.length > maxWords ? `${words.slice(0, maxWords).join(' ')} …` : words.join(' ');
}

/** Headline as a topic phrase: trailing punctuation off, a leading capital lowered unless an acronym or name. */
function topicOf(title: string): string {
  const t = title.trim().replace(/[.!?:;]+$/, '');
  return /^[A-Z][a-z]/.test(t) && !/^[A-Z][a-z]+\s+[A-Z]/.test(t) ? t[0].toLowerCase() + t.slice(1) : t;
}

const roundTo50 = (n: number) => Math.max(100, Math.round(n / 50) * 50);

type Template = (a: { title: string; topic: string; open: string; words: number }) => string;

/** Several phrasings, so the model learns the task and not one sentence. */
export const INSTRUCTION_TEMPLATES: Template[] = [
  ({ topic }) => columnInstruction(topic),
  ({ title }) => `Write a column headlined "${title}".`,
  ({ title, open }) => `Write an opinion piece titled "${title}". Start from this: ${open}`,
  ({ title, words }) => `Give me about ${words} words on "${title}", in your usual style.`,
  ({ open }) => `Here is the news hook: ${open} Write the column.`,
  ({ topic, open }) => `Write a column about ${topic}. The angle: ${open}`,
];

export function instructionFor(article: Pick<ArticleInput, 'url' | 'title' | 'body'>): string {
  const title = (article.title ?? '').trim();
  const t = INSTRUCTION_TEMPLATES[hashNumber(`instruction:${article.url}`) % INSTRUCTION_TEMPLATES.length];
  return t({ title, topic: topicOf(title), open: opening(article.body), words: roundTo50(countWords(article.body)) });
}

/** The assistant turn: headline on its own line, then the body — the shape the style guide asks for. */
export function assistantText(article: Pick<ArticleInput, 'title' | 'body'>): string {
  return `${(article.title ?? '').trim()}\n\n${article.body.trim()}`;
}

export function articleMessages(article: ArticleInput, systemPrompt: string): ChatMessage[] {
  return [
    { role: 'system', content: systemPrompt },
    { role: 'user', content: instructionFor(article) },
    { role: 'assistant', content: assistantText(article) },
  ];
}

/**
 * Which extra examples to mix in: round(ratio × article examples), at most all of them, picked
 * by a stable hash of their text so adding one article does not reshuffle the rest.
 */
export function selectExtras(extras: ChatMessage[][], articleCount: number, ratio: number): ChatMessage[][] {
  const n = Math.min(extras.length, Math.round(ratio * articleCount));
  return [...extras]
    .map((m) => ({ m, h: stableHash(`extra:${JSON.stringify(m)}`) }))
    .sort((a, b) => (a.h < b.h ? -1 : a.h > b.h ? 1 : 0))
    .slice(0, n)
    .map((x) => x.m);
}

export function withSystem(messages: ChatMessage[], systemPrompt: string): ChatMessage[] {
  return [{ role: 'system', content: systemPrompt }, ...messages.filter((m) => m.role !== 'system')];
}
