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
