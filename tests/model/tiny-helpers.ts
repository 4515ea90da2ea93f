/** Helpers for tests that need a variant of the generated tiny model. */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Makes a model folder look like a base model: tokenizer_config.json without chat_template. */
export function removeChatTemplate(modelDir: string): void {
  const file = join(modelDir, 'tokenizer_config.json');
  const cfg = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  delete cfg['chat_template'];
  writeFileSync(file, JSON.stringify(cfg, null, 2) + '\n');
}
