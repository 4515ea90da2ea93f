import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AutoTokenizer } from '@huggingface/transformers';
import { afterAll, describe, expect, it } from 'vitest';
import { articleMessages, articlePrompt, chatTokenIds, columnInstruction, FALLBACK_SYSTEM_PROMPT, hasChatTemplate, renderChat, servingSystemPrompt, type ChatMessage } from '../src/prompts.ts';
import { initTinyModel } from '../src/model/tiny/index.ts';
import { tokenizeConversation } from '../src/model/train/data.ts';
import { loadTokenCounter } from '../src/pipeline/dataset/token-count.ts';
import { removeChatTemplate } from './model/tiny-helpers.ts';
import { INSTRUCTION_TEMPLATES } from '../src/pipeline/dataset/enhance.ts';

describe('column instruction', () => {
  it('ends in one full stop whatever the topic ends with', () => {
    expect(columnInstruction('  the death of 3G ')).toBe('Write a column about the death of 3G.');
    expect(columnInstruction('is 6G a joke?!')).toBe('Write a column about is 6G a joke.');
  });

  it('generation asks exactly as the first training template teaches', () => {
    const taught = INSTRUCTION_TEMPLATES[0]!({ title: 'x', topic: 'network slicing', open: '', words: 0 });
    expect(articlePrompt('network slicing')).toBe(taught);
  });
});

describe('the system prompt generation uses', () => {
  const dir = mkdtempSync(join(tmpdir(), 'morris-system-prompt-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('is the style guide without its editor notes, or the built-in prompt when the file is missing or empty', () => {
    const guide = join(dir, 'guide.md');
    writeFileSync(guide, '<!-- note to editors -->\n  Be gloomy.  \n');
    expect(servingSystemPrompt(guide)).toEqual({ text: 'Be gloomy.', fallback: false });
    writeFileSync(guide, '<!-- only a note -->\n');
    expect(servingSystemPrompt(guide)).toEqual({ text: FALLBACK_SYSTEM_PROMPT, fallback: true });
    expect(servingSystemPrompt(join(dir, 'missing.md'))).toEqual({ text: FALLBACK_SYSTEM_PROMPT, fallback: true });
    expect(servingSystemPrompt(null).fallback).toBe(true);
  });

  it('opens the conversation that asks for a column', () => {
    expect(articleMessages('Be gloomy.', 'fibre')).toEqual([
      { role: 'system', content: 'Be gloomy.' },
      { role: 'user', content: articlePrompt('fibre') },
    ]);
  });
});

describe('renderChat: the one chat format for training, inference and token counting', () => {
  const root = mkdtempSync(join(tmpdir(), 'morris-prompts-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  const withTemplate = join(root, 'chatml');
  const plain = join(root, 'plain');
  initTinyModel(withTemplate, { arch: 'llama', seed: 3 });
  initTinyModel(plain, { arch: 'llama', seed: 3 });
  removeChatTemplate(plain);

  const conversation: ChatMessage[] = [
    { role: 'system', content: 'Be dry.' },
    { role: 'user', content: 'Write a column about late trains.' },
    { role: 'assistant', content: 'Late again\n\nThe 7.42 was late.' },
  ];
  const prompt = conversation.slice(0, 2);
  const load = (dir: string) => AutoTokenizer.from_pretrained(dir, { local_files_only: true });

  it("uses the checkpoint's template exactly as apply_chat_template does", async () => {
    const tok = await load(withTemplate);
    expect(hasChatTemplate(tok)).toBe(true);
    for (const addGenerationPrompt of [false, true]) {
      const msgs = addGenerationPrompt ? prompt : conversation;
      expect(renderChat(tok, msgs, { addGenerationPrompt })).toBe(tok.apply_chat_template(msgs, { tokenize: false, add_generation_prompt: addGenerationPrompt }));
      expect(chatTokenIds(tok, msgs, { addGenerationPrompt })).toEqual(
        tok.apply_chat_template(msgs, { tokenize: true, return_tensor: false, return_dict: false, add_generation_prompt: addGenerationPrompt }),
      );
    }
  });

  it('falls back to the documented plain format when the checkpoint has no template', async () => {
    const tok = await load(plain);
    expect(hasChatTemplate(tok)).toBe(false);
    expect(renderChat(tok, conversation, { addGenerationPrompt: false })).toBe(
      'Be dry.\n\n### User\nWrite a column about late trains.\n\n### Assistant\nLate again\n\nThe 7.42 was late.<|im_end|>',
    );
    expect(renderChat(tok, prompt, { addGenerationPrompt: true })).toBe('Be dry.\n\n### User\nWrite a column about late trains.\n\n### Assistant\n');
    expect(renderChat(tok, [], { addGenerationPrompt: true })).toBe('### Assistant\n');
    // The assistant turn ends with EOS as one special token, so a trained model learns to stop.
    expect(chatTokenIds(tok, conversation, { addGenerationPrompt: false }).at(-1)).toBe(1023);
  });

  for (const [name, dir] of [['with a chat template', withTemplate], ['without a chat template', plain]] as const) {
    it(`${name}: training's prompt tokens are the inference prompt, and token counts agree`, async () => {
      const tok = await load(dir);
      const inference = chatTokenIds(tok, prompt, { addGenerationPrompt: true });
      const training = tokenizeConversation(tok, conversation);
      // The tokens before the first assistant token are exactly what the engine feeds the model.
      const firstAssistant = training.assistant.indexOf(1);
      expect(training.ids.slice(0, firstAssistant)).toEqual(inference);
      expect(tok.decode(training.ids.slice(firstAssistant))).toBe(`${conversation[2]!.content}<|im_end|>${dir === withTemplate ? '\n' : ''}`);
      const counter = await loadTokenCounter(dir);
      expect(counter.countChat(conversation)).toBe(training.ids.length);
      expect(counter.countChat(conversation)).toBe(chatTokenIds(tok, conversation, { addGenerationPrompt: false }).length);
    });
  }
});
