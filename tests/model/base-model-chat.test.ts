/**
 * A base model (no chat_template in tokenizer_config.json) trains and then serves chat requests
 * through the engine, both in the plain format of prompts.ts: the prompt the engine feeds is the
 * prompt half of every training example, token for token.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AutoTokenizer } from '@huggingface/transformers';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModel } from '../../src/model/inference/engine.ts';
import { initTinyModel } from '../../src/model/tiny/index.ts';
import { tokenizeConversation } from '../../src/model/train/data.ts';
import { trainAdapter } from '../../src/model/train/trainer.ts';
import { importDataset } from '../../src/pipeline/dataset/import.ts';
import { chatTokenIds, type ChatMessage } from '../../src/prompts.ts';
import { openStore } from '../../src/store/db.ts';
import { removeChatTemplate } from './tiny-helpers.ts';

const root = mkdtempSync(join(tmpdir(), 'morris-base-chat-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const SYSTEM = 'You write short columns.';
const ANSWER = 'Late again. The morning train was late.';
const conversation = (i: number): ChatMessage[] => [
  { role: 'system', content: SYSTEM },
  { role: 'user', content: `Write about the ${i}th morning train.` },
  { role: 'assistant', content: ANSWER },
];

describe('a model without a chat template', () => {
  it('trains a few steps and generates through the engine in the same format', async () => {
    const modelDir = join(root, 'base');
    initTinyModel(modelDir, { seed: 5, dims: { hidden: 32, intermediate: 64, layers: 2, heads: 4, kvHeads: 2 } });
    removeChatTemplate(modelDir);
    const store = openStore(join(root, 'morris.db'));
    writeFileSync(join(root, 'ds.jsonl'), Array.from({ length: 10 }, (_, i) => JSON.stringify({ messages: conversation(i) })).join('\n'));
    const datasetId = importDataset(store, join(root, 'ds.jsonl')).id;
    const r = await trainAdapter({
      store,
      modelDir,
      dataset: datasetId,
      runsDir: join(root, 'runs'),
      adaptersDir: join(root, 'adapters'),
      cacheDir: join(root, 'cache'),
      settings: { threads: 1, rank: 4, alpha: 8, gradAccum: 1, lr: 3e-2, maxSteps: 12, evalEvery: 12, saveEvery: 100 },
    });
    store.close();
    const m = r.metrics as { eval_loss_initial: number; eval_loss: number };
    expect(m.eval_loss).toBeLessThan(m.eval_loss_initial);

    const tok = await AutoTokenizer.from_pretrained(modelDir, { local_files_only: true });
    const messages = conversation(3).slice(0, 2);
    const promptIds = chatTokenIds(tok, messages, { addGenerationPrompt: true });
    const trained = tokenizeConversation(tok, conversation(3));
    expect(trained.ids.slice(0, trained.assistant.indexOf(1))).toEqual(promptIds);

    const model = await loadModel({ modelDir, adapterDir: r.adapterDir, device: 'cpu', cacheDir: join(root, 'cache') });
    try {
      let text = '';
      for await (const piece of model.stream({ messages }, { maxNewTokens: 24, temperature: 0, topP: 1, topK: 0, repetitionPenalty: 1 })) text += piece;
      expect(model.lastStats!.promptTokens).toBe(promptIds.length);
      expect(model.lastStats!.generatedTokens).toBeGreaterThan(0);
      expect(text.length).toBeGreaterThan(0);
    } finally {
      await model.dispose();
    }
  });
});
