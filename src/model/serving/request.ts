/**
 * What the generation service is asked (a topic for an article, or raw text to continue) and its
 * checks: bad input is refused with BAD_INPUT before anything is queued.
 */
import { MorrisError } from '../../errors.ts';
import type { SamplingOptions } from '../inference/engine.ts';
import type { AdapterRef } from './load.ts';

/** Raw continuation text is for base-model checks from the CLI; this only guards memory. */
export const MAX_RAW_CHARS = 20_000;

/**
 * A revision keeps its topic (the original ask) and adds the article being revised and the
 * reader's instruction; the service builds the conversation with prompts.ts `revisionMessages`,
 * because only the loaded model knows its system prompt.
 */
export interface RevisionInput {
  previousArticle: string;
  instruction: string;
}

export type GenerationInput =
  | { topic: string; revision?: RevisionInput; rawText?: never }
  | { rawText: string; topic?: never; revision?: never };

/** One request to the service (the bots' GenerationRequest reaches it through serve/). */
export type ServiceRequest = GenerationInput & {
  sampling?: Partial<SamplingOptions>;
  /** Overrides the service's time limit for this request (seconds of generation, load excluded). */
  timeoutS?: number;
  /**
   * Background requests wait behind every foreground one (a foreground arrival goes ahead of
   * them) and have their own cap, so they can never fill the foreground queue.
   */
  background?: boolean;
  signal?: AbortSignal;
  /**
   * The adapter this request runs with (null: the plain base model), e.g. another columnist's
   * active one; undefined → the service's current adapter. A model with an adapter pool serves
   * requests of several adapters in one batch.
   */
  adapter?: AdapterRef | null;
  /** The style guide this request is written with (its columnist's); undefined → the one the model loaded with. */
  systemPrompt?: string;
};

/** The topic cleaned (whitespace collapsed) or the raw text, or BAD_INPUT. */
export function validateInput(req: ServiceRequest, maxTopicChars: number): GenerationInput {
  if (typeof req.rawText === 'string') {
    if (!req.rawText.trim()) throw new MorrisError('BAD_INPUT', 'Nothing to continue: the text is empty.', { hint: 'Usage: morris generate --raw "Once upon a time"' });
    if (req.rawText.length > MAX_RAW_CHARS) throw new MorrisError('BAD_INPUT', `Text is ${req.rawText.length} characters; the limit is ${MAX_RAW_CHARS}.`);
    return { rawText: req.rawText };
  }
  const topic = typeof req.topic === 'string' ? req.topic : '';
  // Length first, so a 100 kB topic costs one comparison.
  if (topic.length > maxTopicChars) {
    throw new MorrisError('BAD_INPUT', `Topic is ${topic.length} characters; the limit is ${maxTopicChars}.`, {
      hint: 'Give a shorter topic: a phrase or a sentence is enough.',
    });
  }
  const clean = topic.replace(/\s+/g, ' ').trim();
  if (!clean) {
    throw new MorrisError('BAD_INPUT', 'No topic given.', { hint: 'Usage: give a topic to write about, e.g. "the joy of late trains".' });
  }
  return req.revision ? { topic: clean, revision: validateRevision(req.revision, maxTopicChars) } : { topic: clean };
}

/** A revision's instruction is capped like a topic and its previous article like raw text. */
function validateRevision(r: RevisionInput, maxTopicChars: number): RevisionInput {
  const instruction = typeof r.instruction === 'string' ? r.instruction.trim() : '';
  const previousArticle = typeof r.previousArticle === 'string' ? r.previousArticle : '';
  if (!instruction) throw new MorrisError('BAD_INPUT', 'No revision instruction given.', { hint: 'Say what to change, e.g. "shorter, and more about spectrum costs".' });
  if (instruction.length > maxTopicChars) {
    throw new MorrisError('BAD_INPUT', `Revision instruction is ${instruction.length} characters; the limit is ${maxTopicChars}.`, { hint: 'Say what to change in a sentence or two.' });
  }
  if (previousArticle.length > MAX_RAW_CHARS) {
    throw new MorrisError('BAD_INPUT', `The article to revise is ${previousArticle.length} characters; the limit is ${MAX_RAW_CHARS}.`);
  }
  return { previousArticle, instruction };
}

/** The request's sampling over the service's defaults, each value checked, or BAD_INPUT. */
export function resolveSampling(over: Partial<SamplingOptions> | undefined, d: Omit<SamplingOptions, 'seed'>): SamplingOptions {
  const s: SamplingOptions = {
    maxNewTokens: over?.maxNewTokens ?? d.maxNewTokens,
    temperature: over?.temperature ?? d.temperature,
    topP: over?.topP ?? d.topP,
    topK: over?.topK ?? d.topK,
    repetitionPenalty: over?.repetitionPenalty ?? d.repetitionPenalty,
    ...(over?.seed !== undefined ? { seed: over.seed } : {}),
  };
  const bad = (what: string) => new MorrisError('BAD_INPUT', `Invalid sampling option: ${what}.`);
  if (!Number.isInteger(s.maxNewTokens) || s.maxNewTokens < 1) throw bad(`max new tokens ${s.maxNewTokens} (a positive integer)`);
  if (!(s.temperature >= 0)) throw bad(`temperature ${s.temperature} (0 = greedy, or positive)`);
  if (!(s.topP > 0 && s.topP <= 1)) throw bad(`top-p ${s.topP} (in (0, 1])`);
  if (!Number.isInteger(s.topK) || s.topK < 0) throw bad(`top-k ${s.topK} (0 = off, or a positive integer)`);
  if (!(s.repetitionPenalty > 0)) throw bad(`repetition penalty ${s.repetitionPenalty} (positive; 1 = off)`);
  if (s.seed !== undefined && !Number.isInteger(s.seed)) throw bad(`seed ${s.seed} (an integer)`);
  return s;
}
