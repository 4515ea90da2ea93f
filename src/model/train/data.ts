/**
 * Training data: dataset versions from the store → token ids with an assistant-token mask →
 * right-padded micro-batches. Only assistant tokens are predicted (labels elsewhere are ignored):
 * each assistant turn's tokens are found by rendering the conversation (prompts.ts `renderChat`:
 * the checkpoint's chat template, or the plain format when it has none) up to that turn with and
 * without the turn, so any template whose renderings are prefixes of each other works.
 */
import { AutoTokenizer, env, type PreTrainedTokenizer } from '@huggingface/transformers';
import { MorrisError } from '../../errors.ts';
import { chatTokenIds, type ChatMessage } from '../../prompts.ts';
import type { Store } from '../../store/db.ts';
import type { MicroBatch } from './step.ts';
import { datasetExampleRows, resolveDatasetRef } from '../../store/datasets.ts';

env.allowRemoteModels = false;

export interface DatasetExamples {
  readonly datasetId: string;
  readonly train: ChatMessage[][];
  readonly validation: ChatMessage[][];
}

/** A tokenized example: ids and, per position, whether that token is an assistant token. */
export interface TokenizedExample {
  readonly ids: number[];
  readonly assistant: Uint8Array;
}

export interface DataCounts {
  examples: number;
  kept: number;
  truncated: number;
  skippedTooLong: number;
  skippedNoAssistant: number;
  assistantTokens: number;
}

export async function loadTokenizer(modelDir: string): Promise<PreTrainedTokenizer> {
  try {
    return await AutoTokenizer.from_pretrained(modelDir, { local_files_only: true });
  } catch (e) {
    throw new MorrisError('MODEL_INVALID', `Cannot load the tokenizer of ${modelDir}: ${e instanceof Error ? e.message : String(e)}.`, {
      hint: 'The model folder needs tokenizer.json and tokenizer_config.json.',
      cause: e,
    });
  }
}

/** `latest` or a dataset id → its examples by split, in their stored order. */
export function loadDatasetExamples(store: Store, ref: string): DatasetExamples {
  const id = resolveDatasetRef(store, ref);
  if (!id) {
    throw new MorrisError('DATASET_EMPTY', ref === 'latest' ? 'There is no dataset yet.' : `No dataset ${ref}.`, {
      hint: 'Build one with `morris dataset build`, or import a JSONL file with `morris dataset import FILE.jsonl`.',
    });
  }
  const rows = datasetExampleRows(store, id);
  const out: DatasetExamples = { datasetId: id, train: [], validation: [] };
  for (const r of rows) {
    let messages: unknown;
    try {
      messages = JSON.parse(r.messages);
    } catch (e) {
      throw new MorrisError('BAD_INPUT', `Dataset ${id} has an example whose messages are not JSON.`, { cause: e });
    }
    out[r.split].push(messages as ChatMessage[]);
  }
  if (out.train.length === 0) {
    throw new MorrisError('DATASET_EMPTY', `Dataset ${id} has no training examples.`, {
      hint: 'Rebuild the dataset from more articles, or import examples with `morris dataset import`.',
    });
  }
  return out;
}

/** Token ids of a conversation with the positions of assistant tokens marked. */
export function tokenizeConversation(tok: PreTrainedTokenizer, messages: readonly ChatMessage[]): TokenizedExample {
  const ids = chatTokenIds(tok, messages, { addGenerationPrompt: false });
  const assistant = new Uint8Array(ids.length);
  for (let i = 0; i < messages.length; i++) {
    if (messages[i]!.role !== 'assistant') continue;
    const before = chatTokenIds(tok, messages.slice(0, i), { addGenerationPrompt: true });
    const upTo = chatTokenIds(tok, messages.slice(0, i + 1), { addGenerationPrompt: false });
    // The turn's tokens are those after the common prefix with the prompt rendering.
    let start = 0;
    while (start < before.length && start < upTo.length && before[start] === upTo[start]) start++;
    for (let k = start; k < Math.min(upTo.length, ids.length); k++) assistant[k] = 1;
  }
  return { ids, assistant };
}

/** What the length policy did to one tokenized conversation. */
export type LengthOutcome =
  | { readonly example: TokenizedExample; readonly truncated: boolean }
  | { readonly skipped: 'tooLong' | 'noAssistant'; readonly truncated: boolean };

/**
 * The one length rule for SFT examples and DPO sequences alike: longer than `maxSeqLen` is cut
 * ('truncate') or dropped ('skip'); what is left must still predict an assistant token.
 */
export function applyLengthRule(ex: TokenizedExample, maxSeqLen: number, overLong: 'truncate' | 'skip'): LengthOutcome {
  let truncated = false;
  if (ex.ids.length > maxSeqLen) {
    if (overLong === 'skip') return { skipped: 'tooLong', truncated: false };
    ex = { ids: ex.ids.slice(0, maxSeqLen), assistant: ex.assistant.slice(0, maxSeqLen) };
    truncated = true;
  }
  // Position 0 is never a target (nothing predicts it), so it does not count.
  if (targetCount(ex) === 0) return { skipped: 'noAssistant', truncated };
  return { example: ex, truncated };
}

/** Tokenizes and applies the length policy; counts what happened to every example. */
export function prepareExamples(
  tok: PreTrainedTokenizer,
  conversations: readonly ChatMessage[][],
  maxSeqLen: number,
  overLong: 'truncate' | 'skip',
): { examples: TokenizedExample[]; counts: DataCounts } {
  const counts: DataCounts = { examples: conversations.length, kept: 0, truncated: 0, skippedTooLong: 0, skippedNoAssistant: 0, assistantTokens: 0 };
  const examples: TokenizedExample[] = [];
  for (const conv of conversations) {
    const r = applyLengthRule(tokenizeConversation(tok, conv), maxSeqLen, overLong);
    if (r.truncated) counts.truncated++;
    if ('skipped' in r) {
      if (r.skipped === 'tooLong') counts.skippedTooLong++;
      else counts.skippedNoAssistant++;
      continue;
    }
    counts.assistantTokens += targetCount(r.example);
    counts.kept++;
    examples.push(r.example);
  }
  return { examples, counts };
}

/** Number of predicted tokens in an example (assistant tokens after position 0). */
export function targetCount(ex: TokenizedExample): number {
  return ex.assistant.subarray(1).reduce((a, b) => a + b, 0);
}

/**
 * Right-padded micro-batch: inputs are ids[0..L-2] and each position's target is the next id;
 * a position counts when its target is an assistant token. Padding uses `padId` and never counts.
 */
export function makeMicroBatch(examples: readonly TokenizedExample[], padId: number): MicroBatch {
  const seqLen = Math.max(...examples.map((e) => e.ids.length - 1));
  const B = examples.length;
  const ids = new Array<number>(B * seqLen).fill(padId);
  const targets = new Array<number>(B * seqLen).fill(padId);
  const counted = new Uint8Array(B * seqLen);
  examples.forEach((e, b) => {
    for (let t = 0; t < e.ids.length - 1; t++) {
      ids[b * seqLen + t] = e.ids[t]!;
      targets[b * seqLen + t] = e.ids[t + 1]!;
      counted[b * seqLen + t] = e.assistant[t + 1]!;
    }
  });
  return { batch: B, seqLen, ids, targets, counted };
}

export function padTokenId(tok: PreTrainedTokenizer): number {
  const t = tok as unknown as { pad_token_id?: number | null; eos_token_id?: number | null };
  return t.pad_token_id ?? t.eos_token_id ?? 0;
}
