/** generation_config.json's logits rules (logits-rules.ts), each against transformers.js's semantics. */
import { describe, expect, it } from 'vitest';
import { applyLogitsRules, NO_RULES, parseLogitsRules, repeatedNgramTokens, type LogitsRules, type RuleContext } from '../../src/model/inference/logits-rules.ts';

const V = 10;
const EOS = [9];

/** Which ids are still possible after the rules, for `seen` with a prompt of `promptLength`. */
function allowed(rules: Partial<LogitsRules>, seen: number[], promptLength: number, maxNewTokens = 50): number[] {
  const logits = Float32Array.from({ length: V }, (_, i) => i / 10);
  const ctx: RuleContext = { seen, promptLength, eos: EOS, maxNewTokens };
  applyLogitsRules(logits, { ...NO_RULES, ...rules }, ctx);
  const once = logits.slice();
  applyLogitsRules(logits, { ...NO_RULES, ...rules }, ctx);
  expect(Array.from(logits)).toEqual(Array.from(once)); // idempotent: generate's pass and ours agree
  return [...logits.keys()].filter((i) => logits[i]! > -Infinity);
}
const all = [...Array(V).keys()];
const except = (...ids: number[]) => all.filter((i) => !ids.includes(i));

describe('logits rules', () => {
  it('no rules change nothing', () => {
    expect(allowed({}, [1, 2, 3], 2)).toEqual(all);
  });

  it('min_length bans the stop tokens while prompt + generated is shorter; min_new_tokens counts generated only', () => {
    expect(allowed({ minLength: 4 }, [1, 2, 3], 2)).toEqual(except(9));
    expect(allowed({ minLength: 4 }, [1, 2, 3, 4], 2)).toEqual(all);
    expect(allowed({ minNewTokens: 2 }, [1, 2, 3], 2)).toEqual(except(9)); // one generated so far
    expect(allowed({ minNewTokens: 2 }, [1, 2, 3, 4], 2)).toEqual(all);
  });

  it('bad_words_ids bans a single token always, and the last of a sequence only right after the rest', () => {
    expect(allowed({ badWordsIds: [[4]] }, [1], 1)).toEqual(except(4));
    expect(allowed({ badWordsIds: [[2, 3, 5]] }, [1, 2, 3], 1)).toEqual(except(5));
    expect(allowed({ badWordsIds: [[2, 3, 5]] }, [2, 3, 1], 1)).toEqual(all);
    expect(allowed({ badWordsIds: [[7, 5]] }, [], 0)).toEqual(all); // not enough ids to match
  });

  it('forced_bos_token_id allows only BOS after a one-token prompt; forced_eos_token_id only the stop ids as the last token', () => {
    expect(allowed({ forcedBosTokenId: 1 }, [0], 1)).toEqual([1]);
    expect(allowed({ forcedBosTokenId: 1 }, [0, 5], 2)).toEqual(all);
    expect(allowed({ forcedEosTokenIds: [8, 9] }, [1, 2, 3, 4], 2, 3)).toEqual([8, 9]); // the 3rd and last new token comes next
    expect(allowed({ forcedEosTokenIds: [8, 9] }, [1, 2, 3], 2, 3)).toEqual(all);
  });

  it('suppress_tokens always; begin_suppress_tokens at the first new token (after a forced BOS for a one-token prompt)', () => {
    expect(allowed({ suppressTokens: [0, 3] }, [1, 2, 3, 4], 2)).toEqual(except(0, 3));
    expect(allowed({ beginSuppressTokens: [6] }, [1, 2], 2)).toEqual(except(6));
    expect(allowed({ beginSuppressTokens: [6] }, [1, 2, 3], 2)).toEqual(all);
    expect(allowed({ beginSuppressTokens: [6], forcedBosTokenId: 1 }, [0], 1)).toEqual([1]);
    expect(allowed({ beginSuppressTokens: [6], forcedBosTokenId: 1 }, [0, 1], 1)).toEqual(except(6));
  });

  it('no_repeat_ngram_size bans what would repeat an n-gram of prompt + generated', () => {
    expect(allowed({ noRepeatNgramSize: 2 }, [1, 2, 3, 1], 2)).toEqual(except(2));
    expect(allowed({ noRepeatNgramSize: 3 }, [1, 2, 3, 1, 2], 2)).toEqual(except(3));
    expect(repeatedNgramTokens([4, 5, 4], 1).sort()).toEqual([4, 4, 5]); // size 1: nothing seen comes again
    expect(repeatedNgramTokens([1, 2], 4)).toEqual([]);
    // against a brute force: t is banned when the n-gram it would end occurred before
    const seen = [3, 1, 3, 1, 2, 3, 1, 3];
    for (const n of [2, 3]) {
      const brute = all.filter((t) => {
        const s = [...seen, t];
        const grams = s.slice(0, s.length - n + 1).map((_, i) => s.slice(i, i + n).join());
        return grams.slice(0, -1).includes(grams.at(-1)!);
      });
      expect([...new Set(repeatedNgramTokens(seen, n))].sort()).toEqual(brute);
    }
  });
});

describe('parseLogitsRules', () => {
  it('reads a Llama-family generation_config.json', () => {
    const r = parseLogitsRules({ bos_token_id: 1, eos_token_id: 2, min_new_tokens: 3, bad_words_ids: [[4], [5, 6]], forced_eos_token_id: 2, suppress_tokens: [7], temperature: 0.6, top_p: 0.9 }, V);
    expect(r).toEqual({ ...NO_RULES, minNewTokens: 3, badWordsIds: [[4], [5, 6]], forcedEosTokenIds: [2], suppressTokens: [7] });
    expect(parseLogitsRules({}, V)).toEqual(NO_RULES);
  });

  it('refuses guidance_scale > 1 (MODEL_UNSUPPORTED, naming it) and malformed rules (MODEL_INVALID)', () => {
    expect(() => parseLogitsRules({ guidance_scale: 3 }, V)).toThrow(expect.objectContaining({ code: 'MODEL_UNSUPPORTED', message: expect.stringContaining('guidance_scale'), hint: expect.stringContaining('generation_config.json') }));
    expect(parseLogitsRules({ guidance_scale: 1 }, V)).toEqual(NO_RULES);
    expect(() => parseLogitsRules({ bad_words_ids: [4] }, V)).toThrow(expect.objectContaining({ code: 'MODEL_INVALID', message: expect.stringContaining('bad_words_ids') }));
    expect(() => parseLogitsRules({ suppress_tokens: [V] }, V)).toThrow(expect.objectContaining({ code: 'MODEL_INVALID', message: expect.stringContaining('suppress_tokens') }));
    expect(() => parseLogitsRules({ min_new_tokens: -1 }, V)).toThrow(expect.objectContaining({ code: 'MODEL_INVALID' }));
  });
});
