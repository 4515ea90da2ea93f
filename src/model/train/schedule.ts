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

/** The run's length and rate schedule for `items` training items (SFT examples or DPO pairs). */
export function planSteps(
  cfg: { batchSize: number; gradAccum: number; epochs: number; maxSteps: number; lr: number; schedule: Schedule['kind']; minLrRatio: number; warmupSteps: number; warmupRatio: number },
  items: number,
): { perStep: number; totalExamples: number; totalSteps: number; schedule: Schedule } {
  const perStep = cfg.batchSize * cfg.gradAccum;
  const totalExamples = Math.ceil(cfg.epochs * items);
  let totalSteps = Math.ceil(totalExamples / perStep);
  if (cfg.maxSteps > 0) totalSteps = Math.min(totalSteps, cfg.maxSteps);
  const schedule: Schedule = {
    lr: cfg.lr,
    kind: cfg.schedule,
    minLrRatio: cfg.minLrRatio,
    totalSteps,
    warmupSteps: cfg.warmupSteps > 0 ? cfg.warmupSteps : Math.floor(cfg.warmupRatio * totalSteps),
  };
  return { perStep, totalExamples, totalSteps, schedule };
}
