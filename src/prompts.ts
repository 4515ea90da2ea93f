/**
 * Everything Morris says to a model, in one place: the columnist's system prompt (the style guide
 * file, or a short fallback), the instruction a topic becomes, and the one chat message type that
 * training data, generation and token counting share.
 */
import fs from 'node:fs';

/** One turn of a conversation, as stored in datasets and given to a chat template. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** Used when data/style/system-prompt.md is missing (the service still works, with a warning). */
export const FALLBACK_SYSTEM_PROMPT =
  'You are Morris, a newspaper columnist. Write an opinion column on the topic you are given: a headline on its own line, then five to eight short paragraphs in a dry, sceptical British voice. Plain text only.';

/**
 * The style guide as the model sees it, in training examples and at generation alike: HTML
 * comments (notes to editors) dropped, trimmed; null when the file is missing or empty.
 */
export function readSystemPrompt(file: string | null): string | null {
  if (!file || !fs.existsSync(file)) return null;
  const text = fs.readFileSync(file, 'utf8').replace(/<!--[\s\S]*?-->/g, '').trim();
  return text || null;
}

/**
 * The instruction a person's topic becomes. Training examples use this phrasing (among others)
 * and generation uses exactly this one, so the model is asked the way it was taught.
 */
export function columnInstruction(topic: string): string {
  return `Write a column about ${topic.trim().replace(/[.!?…]+$/u, '')}.`;
}

/** The user turn for a topic (phrased as in training); the system prompt carries the style. */
export function articlePrompt(topic: string): string {
  return columnInstruction(topic);
}
