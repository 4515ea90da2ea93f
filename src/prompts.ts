/**
 * Everything Morris says to a model, in one place: the columnist's system prompt (the style guide
 * file, or a short fallback), the instruction a topic becomes, the one chat message type, and the
 * one function that turns messages into the text a model reads (`renderChat`). Training data,
 * generation and token counting all go through it, so a model is served exactly the format it was
 * trained on, whether or not its checkpoint has a chat template.
 */
import fs from 'node:fs';
import type { PreTrainedTokenizer } from '@huggingface/transformers';

/** One turn of a conversation, as stored in datasets and given to a chat template. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** Used when a columnist's system-prompt.md is missing (the service still works, with a warning). */
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
 * The system prompt generation uses: the style guide, or the built-in short prompt when the file
 * is missing or empty (`fallback` says which, so a service can warn about it).
 */
export function servingSystemPrompt(file: string | null): { text: string; fallback: boolean } {
  const text = readSystemPrompt(file);
  return text === null ? { text: FALLBACK_SYSTEM_PROMPT, fallback: true } : { text, fallback: false };
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

/** The conversation that asks for one column: the style as system turn, the topic as user turn. */
export function articleMessages(systemPrompt: string, topic: string): ChatMessage[] {
  return [
    { role: 'system', content: systemPrompt },
    { role: 'user', content: articlePrompt(topic) },
  ];
}

/**
 * The conversation that asks for a revision (issue 16): the original ask and the article it got
 * stay in the context, so the instruction ("shorter, and more about spectrum costs") is read
 * against what was written rather than as a new topic.
 */
export function revisionMessages(systemPrompt: string, topic: string, previousArticle: string, instruction: string): ChatMessage[] {
  return [
    ...articleMessages(systemPrompt, topic),
    { role: 'assistant', content: previousArticle },
    { role: 'user', content: instruction.trim() },
  ];
}

// ---------------------------------------------------------------- chat templating

/**
 * The format used when a checkpoint has no chat template (a base model). Turns are separated by
 * a blank line; the system prompt is bare text, the others start with a `### User` or
 * `### Assistant` header line; an assistant turn ends with the tokenizer's EOS token (when it has
 * one) so the model learns where a column stops. The generation prompt is the assistant header:
 *
 *     <system prompt>
 *
 *     ### User
 *     Write a column about late trains.
 *
 *     ### Assistant
 *     <headline and body><eos>
 *
 * Jinja, rendered by transformers.js like a checkpoint's own template.
 */
export const PLAIN_CHAT_TEMPLATE =
  "{%- for message in messages -%}" +
  "{%- if not loop.first -%}{{ '\\n\\n' }}{%- endif -%}" +
  "{%- if message['role'] == 'system' -%}{{ message['content'] }}" +
  "{%- elif message['role'] == 'user' -%}{{ '### User\\n' + message['content'] }}" +
  "{%- else -%}{{ '### Assistant\\n' + message['content'] }}{%- if eos_token -%}{{ eos_token }}{%- endif -%}" +
  "{%- endif -%}" +
  "{%- endfor -%}" +
  "{%- if add_generation_prompt -%}{%- if messages | length > 0 -%}{{ '\\n\\n' }}{%- endif -%}{{ '### Assistant\\n' }}{%- endif -%}";

/** What chat templating needs of a tokenizer (a transformers.js tokenizer, or a stand-in). */
export type ChatTokenizer = Pick<PreTrainedTokenizer, 'chat_template' | 'apply_chat_template' | 'encode'>;

export interface RenderChatOptions {
  /** End with the opening of an assistant turn (inference, and the prompt half of a training example). */
  addGenerationPrompt: boolean;
}

/** True when the checkpoint brings its own chat template (tokenizer_config.json's chat_template). */
export function hasChatTemplate(tok: Pick<ChatTokenizer, 'chat_template'>): boolean {
  return Boolean(tok.chat_template);
}

/**
 * THE chat-templating function: messages → the text the model reads. With the checkpoint's chat
 * template when it has one (transformers.js's apply_chat_template, exactly as before), otherwise
 * with PLAIN_CHAT_TEMPLATE. Training data, inference and token counting all call this (through
 * `chatTokenIds`), so the same messages give the same text in each.
 */
export function renderChat(tok: ChatTokenizer, messages: readonly ChatMessage[], opts: RenderChatOptions): string {
  return tok.apply_chat_template(messages as ChatMessage[], {
    chat_template: hasChatTemplate(tok) ? null : PLAIN_CHAT_TEMPLATE,
    add_generation_prompt: opts.addGenerationPrompt,
    tokenize: false,
  }) as string;
}

/**
 * Token ids of `renderChat`'s text. A checkpoint's template writes its own special tokens, so its
 * text is tokenized without adding any (what apply_chat_template does); the plain format is
 * tokenized like any plain text, with the special tokens the tokenizer adds itself (a BOS for
 * Llama), as raw continuation and the model's pretraining saw text.
 */
export function chatTokenIds(tok: ChatTokenizer, messages: readonly ChatMessage[], opts: RenderChatOptions): number[] {
  return tok.encode(renderChat(tok, messages, opts), { add_special_tokens: !hasChatTemplate(tok) });
}
