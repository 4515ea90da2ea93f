/**
 * Token counts with the base model's own tokenizer (through transformers.js, local files only),
 * behind a small interface so dataset building stays a function of its inputs.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import type { PreTrainedTokenizer } from '@huggingface/transformers';
import { MorrisError } from '../../errors.ts';
import { chatTokenIds, type ChatMessage } from '../../prompts.ts';

export interface TokenCounter {
  /** Identifies the tokenizer (name + hash of its files): part of a dataset's id. */
  readonly id: string;
  countText(text: string): number;
  /** Tokens of a whole conversation as the model will see it in training (prompts.ts `renderChat`). */
  countChat(messages: ChatMessage[]): number;
}

export async function loadTokenCounter(modelDir: string): Promise<TokenCounter> {
  const dir = path.resolve(modelDir);
  const tokFile = path.join(dir, 'tokenizer.json');
  if (!fs.existsSync(tokFile)) {
    throw new MorrisError('MODEL_MISSING', `No tokenizer at ${tokFile}: token counts need the base model's tokenizer.`, {
      hint: 'Pass --model DIR (a model folder with tokenizer.json), download the base model with `morris model pull`, or create a tiny one with `morris model init-tiny`.',
    });
  }
  let tokenizer: PreTrainedTokenizer;
  try {
    // Loaded on use: transformers.js is heavy and most commands that import this never count tokens.
    const { AutoTokenizer } = await import('@huggingface/transformers');
    tokenizer = await AutoTokenizer.from_pretrained(dir, { local_files_only: true });
  } catch (e) {
    throw new MorrisError('MODEL_INVALID', `Cannot load the tokenizer in ${dir}: ${(e as Error).message}`, { cause: e });
  }
  const h = createHash('sha256').update(fs.readFileSync(tokFile));
  const cfg = path.join(dir, 'tokenizer_config.json');
  if (fs.existsSync(cfg)) h.update(fs.readFileSync(cfg));
  const id = `${path.basename(dir)}@${h.digest('hex').slice(0, 12)}`;
  const countText = (text: string) => tokenizer.encode(text, { add_special_tokens: false }).length;
  return {
    id,
    countText,
    countChat: (messages) => chatTokenIds(tokenizer, messages, { addGenerationPrompt: false }).length,
  };
}
