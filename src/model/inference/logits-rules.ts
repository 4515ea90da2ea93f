/**
 * The logits rules a checkpoint's generation_config.json sets (min length, bad words, forced and
 * suppressed tokens, no repeated n-grams), applied to a row of logits before our sampler, with
 * transformers.js's (and Hugging Face's) semantics and in their order, so a checkpoint decodes as
 * it did under transformers.js's generate. A setting that changes logits in a way we do not
 * implement is refused at load rather than ignored.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { MorrisError } from '../../errors.ts';
import { readJson } from '../checkpoint/config.ts';

export interface LogitsRules {
  /** Stop tokens are banned while prompt + generated is shorter than this. */
  minLength: number;
  /** Stop tokens are banned while fewer tokens than this were generated. */
  minNewTokens: number;
  /** Token sequences never generated: the last id is banned where the ids before it were just produced. */
  badWordsIds: number[][];
  /** The only token allowed first after a one-token prompt. */
  forcedBosTokenId: number | null;
  /** The only tokens allowed as the last generated one (at maxNewTokens). */
  forcedEosTokenIds: number[] | null;
  /** Never generated. */
  suppressTokens: number[];
  /** Not generated as the first new token. */
  beginSuppressTokens: number[];
  /** No n-gram of this size occurs twice in prompt + generated (0: off). */
  noRepeatNgramSize: number;
}

export const NO_RULES: LogitsRules = {
  minLength: 0, minNewTokens: 0, badWordsIds: [], forcedBosTokenId: null, forcedEosTokenIds: null, suppressTokens: [], beginSuppressTokens: [], noRepeatNgramSize: 0,
};

/** Where the rules look: the ids so far, how many came from the prompt, the stop tokens and the token budget. */
export interface RuleContext {
  seen: readonly number[];
  promptLength: number;
  eos: readonly number[];
  maxNewTokens: number;
}

/** Settings transformers.js's generate applies that our rules do not, with what to do instead. */
const REFUSED: Record<string, { applies: (v: unknown) => boolean; hint: string }> = {
  guidance_scale: {
    applies: (v) => typeof v === 'number' && v > 1,
    hint: 'Classifier-free guidance needs a second, unconditioned batch row per step, which Morris does not run. Remove guidance_scale from generation_config.json (or set it to 1).',
  },
};

function invalid(key: string, want: string): MorrisError {
  return new MorrisError('MODEL_INVALID', `generation_config.json: ${key} must be ${want}.`, { hint: 'Fix or remove that key in the checkpoint\'s generation_config.json.' });
}

function tokenId(v: unknown, key: string, vocab: number): number {
  if (!Number.isInteger(v) || (v as number) < 0 || (v as number) >= vocab) throw invalid(key, `token ids below the vocabulary size ${vocab}`);
  return v as number;
}

function tokenIds(v: unknown, key: string, vocab: number): number[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw invalid(key, 'a list of token ids');
  return v.map((x) => tokenId(x, key, vocab));
}

function count(v: unknown, key: string): number {
  if (v === undefined || v === null) return 0;
  if (!Number.isInteger(v) || (v as number) < 0) throw invalid(key, 'a whole number ≥ 0');
  return v as number;
}

/** The rules of a generation_config.json object; refuses settings we do not apply (MODEL_UNSUPPORTED). */
export function parseLogitsRules(g: Record<string, unknown>, vocab: number): LogitsRules {
  for (const [key, { applies, hint }] of Object.entries(REFUSED)) {
    if (applies(g[key])) throw new MorrisError('MODEL_UNSUPPORTED', `generation_config.json sets ${key} = ${JSON.stringify(g[key])}, which Morris's decode loop does not apply.`, { hint });
  }
  const bad = g['bad_words_ids'];
  if (bad !== undefined && bad !== null && !(Array.isArray(bad) && bad.every((w) => Array.isArray(w) && w.length > 0))) throw invalid('bad_words_ids', 'a list of non-empty lists of token ids');
  const forcedEos = g['forced_eos_token_id'];
  return {
    minLength: count(g['min_length'], 'min_length'),
    minNewTokens: count(g['min_new_tokens'], 'min_new_tokens'),
    badWordsIds: ((bad ?? []) as unknown[][]).map((w) => tokenIds(w, 'bad_words_ids', vocab)),
    forcedBosTokenId: g['forced_bos_token_id'] === undefined || g['forced_bos_token_id'] === null ? null : tokenId(g['forced_bos_token_id'], 'forced_bos_token_id', vocab),
    forcedEosTokenIds: forcedEos === undefined || forcedEos === null ? null : Array.isArray(forcedEos) ? tokenIds(forcedEos, 'forced_eos_token_id', vocab) : [tokenId(forcedEos, 'forced_eos_token_id', vocab)],
    suppressTokens: tokenIds(g['suppress_tokens'], 'suppress_tokens', vocab),
    beginSuppressTokens: tokenIds(g['begin_suppress_tokens'], 'begin_suppress_tokens', vocab),
    noRepeatNgramSize: count(g['no_repeat_ngram_size'], 'no_repeat_ngram_size'),
  };
}

/** The checkpoint's generation_config.json, or {} without one. */
export function readGenerationConfig(dir: string): Record<string, unknown> {
  const file = join(dir, 'generation_config.json');
  return existsSync(file) ? readJson(file, 'generation_config.json') : {};
}

/** generation_config.json's eos ids (e.g. stories260K also stops on BOS) plus config.json's. */
export function stopTokenIds(generationConfig: Record<string, unknown>, fromConfig: readonly number[]): number[] {
  const raw = generationConfig['eos_token_id'] as number | number[] | undefined;
  const fromGen = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw];
  return [...new Set([...fromGen, ...fromConfig])];
}

/** Tokens that would repeat an n-gram of `seen`: those that followed an earlier occurrence of its last n-1 ids. */
export function repeatedNgramTokens(seen: readonly number[], n: number): number[] {
  const len = seen.length;
  if (n <= 0 || len + 1 < n) return [];
  const banned: number[] = [];
  for (let j = 0; j + n <= len; j++) {
    let match = true;
    for (let k = 0; k < n - 1 && match; k++) match = seen[j + k] === seen[len - n + 1 + k];
    if (match) banned.push(seen[j + n - 1]!);
  }
  return banned;
}

/** Whether `seen` ends with every id of `word` but its last (so the last would complete it). */
function completes(seen: readonly number[], word: readonly number[]): boolean {
  if (seen.length < word.length - 1) return false;
  for (let j = 1; j < word.length; j++) if (word.at(-j - 1) !== seen.at(-j)) return false;
  return true;
}

/** Only `ids` stay possible. */
function force(logits: Float32Array, ids: readonly number[]): void {
  logits.fill(-Infinity);
  for (const t of ids) logits[t] = 0;
}

/**
 * Applies the rules to one row of logits in place, in transformers.js's order (a forced token
 * overrides the bans before it; suppression after it still applies). Idempotent: applying them
 * twice (transformers.js's generate, then ours on a GPU) gives the same row.
 */
export function applyLogitsRules(logits: Float32Array, rules: LogitsRules, ctx: RuleContext): void {
  const { seen, promptLength, eos } = ctx;
  if (rules.noRepeatNgramSize > 0) for (const t of repeatedNgramTokens(seen, rules.noRepeatNgramSize)) logits[t] = -Infinity;
  for (const word of rules.badWordsIds) if (completes(seen, word)) logits[word.at(-1)!] = -Infinity;
  if (seen.length < rules.minLength || seen.length - promptLength < rules.minNewTokens) for (const t of eos) logits[t] = -Infinity;
  if (rules.forcedBosTokenId !== null && seen.length === 1) force(logits, [rules.forcedBosTokenId]);
  if (rules.forcedEosTokenIds && seen.length === promptLength + ctx.maxNewTokens - 1) force(logits, rules.forcedEosTokenIds);
  for (const t of rules.suppressTokens) logits[t] = -Infinity;
  // A one-token prompt with a forced BOS suppresses at the token after that BOS, as transformers.js does.
  const beginAt = promptLength > 1 || rules.forcedBosTokenId === null ? promptLength : promptLength + 1;
  if (seen.length === beginAt) for (const t of rules.beginSuppressTokens) logits[t] = -Infinity;
}
