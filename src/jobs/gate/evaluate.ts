/**
 * The evaluation gate. A new adapter, the active one and the base model are measured on the same
 * held-out validation set (loss, perplexity), on generations for fixed topics (style score), and
 * against the training articles (longest verbatim word run). `decidePromotion` is a pure function
 * of those measures: promote only when the candidate's validation loss beats the reference (the
 * active adapter, or the base model when none is active) by at least the margin, its style does not
 * fall clearly behind, and it does not copy training text.
 */
import { signaturePhrases, styleScore, verbatimCopy } from './style-score.ts';

/** Fixed topics: every model answers the same prompts, so style scores compare like with like. */
export const EVAL_TOPICS = [
  'A mobile operator announces yet another network sharing deal',
  'The metaverse strategy of a telecoms equipment vendor',
  'Why 5G standalone revenues keep slipping a year to the right',
] as const;

/** A generation sharing this many consecutive words with one training article counts as copying. */
export const MAX_VERBATIM_RUN = 40;
/** The candidate's style score may trail the reference by at most this much (0..1 scale). */
export const STYLE_TOLERANCE = 0.1;

/** What the gate needs from the ML side; measured in the job worker, not the serve process. */
export interface EvaluationBackend {
  /** Mean token cross-entropy (nats) over the dataset's validation split; adapterDir null = base. */
  validationLoss(adapterDir: string | null, signal?: AbortSignal): Promise<number>;
  generate(adapterDir: string | null, topic: string, signal?: AbortSignal): Promise<string>;
}

export interface ModelMeasure {
  /** null = base model */
  adapterId: string | null;
  valLoss: number;
  perplexity: number;
  style: number;
  longestVerbatimRun: number;
  samples: { topic: string; text: string; style: number }[];
}

export interface MeasureInput {
  adapterId: string | null;
  adapterDir: string | null;
  styleGuide: string;
  trainingArticles: readonly string[];
  topics?: readonly string[];
  signal?: AbortSignal;
}

export async function measureModel(backend: EvaluationBackend, m: MeasureInput): Promise<ModelMeasure> {
  const valLoss = await backend.validationLoss(m.adapterDir, m.signal);
  const phrases = signaturePhrases(m.styleGuide);
  const samples: ModelMeasure['samples'] = [];
  let longest = 0;
  for (const topic of m.topics ?? EVAL_TOPICS) {
    const text = await backend.generate(m.adapterDir, topic, m.signal);
    samples.push({ topic, text, style: styleScore(text, phrases).score });
    longest = Math.max(longest, verbatimCopy(text, m.trainingArticles).longestRun);
  }
  const style = samples.length ? samples.reduce((a, s) => a + s.style, 0) / samples.length : 0;
  return { adapterId: m.adapterId, valLoss, perplexity: Math.exp(valLoss), style, longestVerbatimRun: longest, samples };
}

export interface Decision {
  promote: boolean;
  /** Failing a hard check (copying) rejects; merely not better keeps it as a candidate. */
  reject: boolean;
  reason: string;
  /** Whom it was compared with: the active adapter's id, or 'base'. */
  against: string;
}

export function decidePromotion(
  candidate: ModelMeasure,
  active: ModelMeasure | null,
  base: ModelMeasure,
  opts: { margin: number; maxVerbatimRun?: number; styleTolerance?: number },
): Decision {
  const ref = active ?? base;
  const against = active?.adapterId ?? 'base';
  const maxRun = opts.maxVerbatimRun ?? MAX_VERBATIM_RUN;
  const tol = opts.styleTolerance ?? STYLE_TOLERANCE;
  const f = (x: number) => x.toFixed(4);
  if (!Number.isFinite(candidate.valLoss)) {
    return { promote: false, reject: true, against, reason: `validation loss is not finite (${candidate.valLoss})` };
  }
  if (candidate.longestVerbatimRun > maxRun) {
    return {
      promote: false,
      reject: true,
      against,
      reason: `copies training text: a ${candidate.longestVerbatimRun}-word run matches an article (limit ${maxRun})`,
    };
  }
  const gain = ref.valLoss - candidate.valLoss;
  if (gain < opts.margin) {
    return {
      promote: false,
      reject: false,
      against,
      reason: `validation loss ${f(candidate.valLoss)} does not beat ${against} (${f(ref.valLoss)}) by the margin ${opts.margin} (gain ${f(gain)})`,
    };
  }
  if (candidate.style < ref.style - tol) {
    return {
      promote: false,
      reject: false,
      against,
      reason: `style score ${candidate.style.toFixed(3)} falls behind ${against} (${ref.style.toFixed(3)}) by more than ${tol}`,
    };
  }
  return {
    promote: true,
    reject: false,
    against,
    reason: `validation loss ${f(candidate.valLoss)} beats ${against} (${f(ref.valLoss)}) by ${f(gain)} ≥ margin ${opts.margin}; style ${candidate.style.toFixed(3)} vs ${ref.style.toFixed(3)}; longest verbatim run ${candidate.longestVerbatimRun} words`,
  };
}
