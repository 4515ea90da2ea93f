import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { decidePromotion, measureModel, type EvaluationBackend, type ModelMeasure } from '../../src/jobs/gate/evaluate.ts';
import { longestCommonRun, signaturePhrases, styleScore, verbatimCopy, wordTokens } from '../../src/jobs/gate/style-score.ts';

const guide = fs.readFileSync('data/columnists/morris/system-prompt.md', 'utf8');

describe('style score', () => {
  it('reads the signature phrases from the style guide', () => {
    const p = signaturePhrases(guide);
    expect(p).toContain('What could possibly go wrong');
    expect(p).toContain('Cue the consultants');
    expect(p.length).toBeGreaterThanOrEqual(4);
  });

  it('scores a text in the voice above a plain one', () => {
    const p = signaturePhrases(guide);
    const voiced =
      'The strategy is heading for the rocks. The operator (which has never met a buzzword it did not like) will optimise its programme again. Cue the consultants. What could possibly go wrong?';
    const plain = 'The company announced a new program. It will optimize its network. Revenue grew last year.';
    const a = styleScore(voiced, p);
    const b = styleScore(plain, p);
    expect(a.score).toBeGreaterThan(b.score);
    expect(a.doomOpening).toBe(1);
    expect(a.stingQuestion).toBe(1);
    expect(a.british).toBe(1);
    expect(b.british).toBe(0);
    expect(styleScore('', p).score).toBe(0);
  });
});

describe('verbatim copy check', () => {
  it('longest common run over word tokens', () => {
    expect(longestCommonRun(wordTokens('a b c d e'), wordTokens('x b c d y'))).toBe(3);
    expect(longestCommonRun(wordTokens('a b'), wordTokens('c d'))).toBe(0);
    expect(longestCommonRun([], ['a'])).toBe(0);
    // Punctuation and case do not hide a copy.
    expect(longestCommonRun(wordTokens('The Cat, sat on the mat.'), wordTokens('the cat sat on the mat'))).toBe(6);
  });

  it('finds which article was copied', () => {
    const arts = ['one two three four', 'alpha beta gamma delta epsilon'];
    expect(verbatimCopy('zeta beta gamma delta omega', arts)).toEqual({ longestRun: 3, articleIndex: 1 });
  });
});

function m(adapterId: string | null, valLoss: number, style = 0.3, run = 5): ModelMeasure {
  return { adapterId, valLoss, perplexity: Math.exp(valLoss), style, longestVerbatimRun: run, samples: [] };
}

describe('decidePromotion', () => {
  const base = m(null, 3.0);
  it('promotes over the base model when no adapter is active and the margin is met', () => {
    const d = decidePromotion(m('c', 2.5), null, base, { margin: 0.01 });
    expect(d).toMatchObject({ promote: true, against: 'base' });
  });
  it('keeps a worse (or not better enough) adapter as a candidate, with the reason', () => {
    const d = decidePromotion(m('c', 2.495), m('act', 2.5), base, { margin: 0.01 });
    expect(d).toMatchObject({ promote: false, reject: false, against: 'act' });
    expect(d.reason).toMatch(/does not beat act \(2\.5000\) by the margin 0\.01/);
    expect(decidePromotion(m('c', 2.9), m('act', 2.5), base, { margin: 0.01 }).promote).toBe(false);
  });
  it('rejects copying and non-finite loss; holds back a clear style regression', () => {
    expect(decidePromotion(m('c', 1.0, 0.3, 80), null, base, { margin: 0.01 })).toMatchObject({ promote: false, reject: true });
    expect(decidePromotion(m('c', NaN), null, base, { margin: 0.01 })).toMatchObject({ promote: false, reject: true });
    expect(decidePromotion(m('c', 2.0, 0.05), m('act', 2.5, 0.4), base, { margin: 0.01 })).toMatchObject({ promote: false, reject: false });
  });
});

describe('measureModel', () => {
  it('measures loss, style on the fixed topics and copying with the same backend for every model', async () => {
    const article = 'the network sharing deal is a sinking ship of epic proportions and nobody on the board has noticed yet';
    const backend: EvaluationBackend = {
      validationLoss: async (dir) => (dir ? 2 : 3),
      generate: async (dir, topic) => (dir ? `Doom. ${article}. What could possibly go wrong?` : `${topic}.`),
    };
    const withAdapter = await measureModel(backend, { adapterId: 'a', adapterDir: '/x', styleGuide: guide, trainingArticles: [article] });
    const base = await measureModel(backend, { adapterId: null, adapterDir: null, styleGuide: guide, trainingArticles: [article] });
    expect(withAdapter.samples).toHaveLength(3);
    expect(withAdapter.longestVerbatimRun).toBe(wordTokens(article).length);
    expect(base.longestVerbatimRun).toBeLessThan(5);
    expect(withAdapter.perplexity).toBeCloseTo(Math.exp(2));
    expect(withAdapter.style).toBeGreaterThan(base.style);
  });
});
