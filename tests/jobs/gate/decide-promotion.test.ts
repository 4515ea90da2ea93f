/**
 * The promotion decision on its own: a pure function of three measures, so each case is one
 * table of numbers and one expected verdict.
 */
import { describe, expect, it } from 'vitest';
import { decidePromotion, MAX_VERBATIM_RUN, STYLE_TOLERANCE, type ModelMeasure } from '../../../src/jobs/gate/evaluate.ts';

function measure(adapterId: string | null, valLoss: number, style = 0.5, longestVerbatimRun = 0): ModelMeasure {
  return { adapterId, valLoss, perplexity: Math.exp(valLoss), style, longestVerbatimRun, samples: [] };
}

const base = measure(null, 3.0);
const margin = 0.01;

describe('decidePromotion', () => {
  it('promotes a candidate that beats the active adapter by the margin', () => {
    const d = decidePromotion(measure('new', 2.4), measure('act', 2.5), base, { margin });
    expect(d).toMatchObject({ promote: true, reject: false, against: 'act' });
    expect(d.reason).toContain('beats act');
  });

  it('keeps a worse candidate without rejecting it', () => {
    const d = decidePromotion(measure('new', 2.7), measure('act', 2.5), base, { margin });
    expect(d).toMatchObject({ promote: false, reject: false, against: 'act' });
    expect(d.reason).toContain('does not beat act');
  });

  it('keeps an equal candidate: no gain is below any positive margin', () => {
    expect(decidePromotion(measure('new', 2.5), measure('act', 2.5), base, { margin })).toMatchObject({ promote: false, reject: false });
  });

  it('compares with the base model when no adapter is active', () => {
    expect(decidePromotion(measure('new', 2.9), null, base, { margin })).toMatchObject({ promote: true, against: 'base' });
    expect(decidePromotion(measure('new', 3.1), null, base, { margin })).toMatchObject({ promote: false, reject: false, against: 'base' });
  });

  it('rejects a failed candidate: a validation loss that is not finite', () => {
    for (const loss of [NaN, Infinity]) {
      expect(decidePromotion(measure('new', loss), null, base, { margin })).toMatchObject({ promote: false, reject: true });
    }
  });

  it('rejects a candidate that copies training text, however good its loss', () => {
    const d = decidePromotion(measure('new', 1.0, 0.9, MAX_VERBATIM_RUN + 1), null, base, { margin });
    expect(d).toMatchObject({ promote: false, reject: true });
    expect(d.reason).toContain('copies training text');
    expect(decidePromotion(measure('new', 1.0, 0.9, MAX_VERBATIM_RUN), null, base, { margin }).promote).toBe(true);
  });

  it('keeps a better-loss candidate whose style falls behind by more than the tolerance', () => {
    const active = measure('act', 2.5, 0.6);
    expect(decidePromotion(measure('new', 2.0, 0.6 - STYLE_TOLERANCE - 0.01), active, base, { margin })).toMatchObject({ promote: false, reject: false });
    expect(decidePromotion(measure('new', 2.0, 0.55), active, base, { margin }).promote).toBe(true);
  });
});

describe("decidePromotion listens to readers' held-out preferences", () => {
  const withPref = (m: ModelMeasure, accuracy: number, pairs = 10): ModelMeasure => ({ ...m, preference: { accuracy, pairs } });
  const basePref = withPref(base, 0.5);

  it('does not promote a candidate that lowers preference accuracy below the active adapter, whatever its loss', () => {
    const d = decidePromotion(withPref(measure('new', 1.0), 0.6), withPref(measure('act', 2.5), 0.8), basePref, { margin });
    expect(d).toMatchObject({ promote: false, reject: false, against: 'act' });
    expect(d.reason).toBe("readers' held-out preferences: accuracy 0.600 is below act's 0.800 over 10 pairs (not promoted whatever its loss: validation loss 1.0000 vs 2.5000)");
  });

  it('with no active adapter, the base model (0.5: every pair a tie) is the bar', () => {
    expect(decidePromotion(withPref(measure('new', 2.0), 0.4), null, basePref, { margin })).toMatchObject({ promote: false, against: 'base' });
    const d = decidePromotion(withPref(measure('new', 2.0), 0.7), null, basePref, { margin });
    expect(d).toMatchObject({ promote: true, against: 'base' });
    expect(d.reason).toContain('preference accuracy 0.700 vs base 0.500 over 10 held-out reader pairs');
  });

  it('an SFT candidate keeping the preference accuracy is still judged on its loss', () => {
    expect(decidePromotion(withPref(measure('new', 2.4), 0.8), withPref(measure('act', 2.5), 0.8), basePref, { margin })).toMatchObject({ promote: true });
    expect(decidePromotion(withPref(measure('new', 2.6), 0.9), withPref(measure('act', 2.5), 0.8), basePref, { margin })).toMatchObject({ promote: false });
  });

  it('a DPO candidate must raise preference accuracy, and may give up only a little validation loss', () => {
    const act = withPref(measure('act', 2.5), 0.5);
    const up = decidePromotion(withPref(measure('dpo', 2.52), 0.9), act, basePref, { margin, method: 'dpo' });
    expect(up).toMatchObject({ promote: true });
    expect(up.reason).toMatch(/^DPO: validation loss 2\.5200 vs act 2\.5000 \(within 0\.05\); preference accuracy 0\.900 vs act 0\.500/);
    expect(decidePromotion(withPref(measure('dpo', 2.4), 0.5), act, basePref, { margin, method: 'dpo' }).reason).toMatch(/did not raise/);
    expect(decidePromotion(withPref(measure('dpo', 2.7), 0.95), act, basePref, { margin, method: 'dpo' }).reason).toMatch(/worse than act's 2\.5000 by more than 0\.05/);
    expect(decidePromotion(measure('dpo', 2.4), measure('act', 2.5), base, { margin, method: 'dpo' }).reason).toMatch(/there are none to measure on/);
  });
});
