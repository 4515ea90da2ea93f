/**
 * Token counts with the base model's own tokenizer (through transformers.js, local files only),
 * behind a small interface so dataset building stays a function of its inputs.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import type { PreTrainedTokenizer } from '@huggingface/transformers';
import { MorrisError } from '../errors.ts';
import type { ChatMessage } from '../prompts.ts';

export interface TokenCounter {
  /** Identifies the tokenizer (name + hash of its files): part of a dataset's id. */
  readonly id: string;
  countText(text: string): number;
  /** Tokens of a whole conversation as the model will see it (chat template applied). */
  countChat(messages: ChatMessage[]): number;
}

/** Per-message overhead assumed when a tokenizer has no chat template (role marker + separators). */
const NO_TEMPLATE_OVERHEAD = 4;

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
  const hasTemplate = Boolean((tokenizer as unknown as { chat_template?: unknown }).chat_template);
  const countText = (text: string) => tokenizer.encode(text, { add_special_tokens: false }).length;
  return {
    id,
    countText,
    countChat(messages) {
      if (!hasTemplate) return messages.reduce((n, m) => n + countText(m.content) + NO_TEMPLATE_OVERHEAD, 0);
      // transformers.js v4 returns {input_ids, attention_mask}; older versions a bare id array.
      const out = tokenizer.apply_chat_template(messages as never, { tokenize: true, return_tensor: false }) as unknown as
        | number[]
        | { input_ids: number[] };
      return Array.isArray(out) ? out.length : out.input_ids.length;
    },
  };
}
