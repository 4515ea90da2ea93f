/**
 * Learning-rate schedule as one pure function of the optimizer step, like nanoGPT's get_lr:
 * 1) linear warmup from 0 to `lr` over `warmupSteps`; 2) after `totalSteps`, the floor;
 * 3) in between, cosine or linear decay from `lr` to `lr * minLrRatio`.
 */
export interface Schedule {
  readonly lr: number;
  readonly warmupSteps: number;
  readonly totalSteps: number;
  readonly kind: 'cosine' | 'linear' | 'constant';
  readonly minLrRatio: number;
}

/** `step` counts optimizer steps from 0 (the first update uses getLr(0)). */
export function getLr(step: number, s: Schedule): number {
  const floor = s.lr * s.minLrRatio;
  // 1) warmup: the first update already gets a non-zero rate (step + 1).
  if (step < s.warmupSteps) return (s.lr * (step + 1)) / (s.warmupSteps + 1);
  if (s.kind === 'constant') return s.lr;
  // 2) past the end
  if (step >= s.totalSteps) return floor;
  // 3) decay
  const decaySteps = Math.max(1, s.totalSteps - s.warmupSteps);
  const progress = (step - s.warmupSteps) / decaySteps;
  const coeff = s.kind === 'cosine' ? 0.5 * (1 + Math.cos(Math.PI * progress)) : 1 - progress;
  return floor + coeff * (s.lr - floor);
}
