/**
 * The evaluation gate. A new adapter, the active one and the base model are measured on the same
 * held-out validation set (loss, perplexity), on generations for fixed topics (style score), and
 * against the training articles (longest verbatim word run), and on readers' held-out preference
 * pairs (preference accuracy: the share of pairs whose implicit reward log π − log πbase is higher
 * for the chosen text; the base model scores 0.5, every pair a tie). `decidePromotion` is a pure
 * function of those measures. It never promotes a candidate that copies training text or whose
 * preference accuracy is below the reference's (the active adapter, or the base model when none is
 * active), whatever its loss: readers are the best judges of a voice. Then an SFT candidate must
 * beat the reference's validation loss by the margin; a DPO candidate (trained to move
 * preferences, not loss) must raise the preference accuracy and may give up at most
 * DPO_LOSS_TOLERANCE of validation loss. Neither may fall clearly behind in style.
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

/**
 * A DPO candidate may lose this much validation loss (nats per token) against the reference: DPO
 * moves probability between readers' pairs and a little away from the dataset, but a model that
 * degenerates (DPO run too long) loses far more than this.
 */
export const DPO_LOSS_TOLERANCE = 0.05;

/** Held-out preference accuracy and how many pairs it is over. */
export interface PreferenceMeasure {
  accuracy: number;
  pairs: number;
}

/** What the gate needs from the ML side; measured in the job worker, not the serve process. */
export interface EvaluationBackend {
  /** Mean token cross-entropy (nats) over the dataset's validation split; adapterDir null = base. */
  validationLoss(adapterDir: string | null, signal?: AbortSignal): Promise<number>;
  generate(adapterDir: string | null, topic: string, signal?: AbortSignal): Promise<string>;
  /** Held-out preference accuracy against the base model; null when there are no held-out pairs. */
  preference?(adapterDir: string | null, signal?: AbortSignal): Promise<PreferenceMeasure | null>;
}

export interface ModelMeasure {
  /** null = base model */
  adapterId: string | null;
  valLoss: number;
  perplexity: number;
  style: number;
  longestVerbatimRun: number;
  samples: { topic: string; text: string; style: number }[];
  /** Readers' held-out pairs (absent or null: none to measure on). */
  preference?: PreferenceMeasure | null;
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
  const preference = backend.preference ? await backend.preference(m.adapterDir, m.signal) : null;
  return { adapterId: m.adapterId, valLoss, perplexity: Math.exp(valLoss), style, longestVerbatimRun: longest, samples, preference };
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
  opts: { margin: number; maxVerbatimRun?: number; styleTolerance?: number; method?: 'sft' | 'dpo' },
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
  const cp = candidate.preference;
  const rp = ref.preference ?? (active ? null : base.preference);
  const prefText = cp && rp ? `; preference accuracy ${cp.accuracy.toFixed(3)} vs ${against} ${rp.accuracy.toFixed(3)} over ${cp.pairs} held-out reader pairs` : '';
  if (cp && rp && cp.accuracy < rp.accuracy) {
    return {
      promote: false,
      reject: false,
      against,
      reason: `readers' held-out preferences: accuracy ${cp.accuracy.toFixed(3)} is below ${against}'s ${rp.accuracy.toFixed(3)} over ${cp.pairs} pairs (not promoted whatever its loss: validation loss ${f(candidate.valLoss)} vs ${f(ref.valLoss)})`,
    };
  }
  const gain = ref.valLoss - candidate.valLoss;
  if (opts.method === 'dpo') {
    if (!cp || !rp) return { promote: false, reject: false, against, reason: 'a DPO adapter is judged on readers\' held-out preference pairs, and there are none to measure on' };
    if (!(cp.accuracy > rp.accuracy)) {
      return { promote: false, reject: false, against, reason: `DPO did not raise readers' held-out preference accuracy: ${cp.accuracy.toFixed(3)} vs ${against} ${rp.accuracy.toFixed(3)} over ${cp.pairs} pairs` };
    }
    if (-gain > DPO_LOSS_TOLERANCE) {
      return { promote: false, reject: false, against, reason: `validation loss ${f(candidate.valLoss)} is worse than ${against}'s ${f(ref.valLoss)} by more than ${DPO_LOSS_TOLERANCE} (the DPO stage went too far)${prefText}` };
    }
  } else if (gain < opts.margin) {
    return {
      promote: false,
      reject: false,
      against,
      reason: `validation loss ${f(candidate.valLoss)} does not beat ${against} (${f(ref.valLoss)}) by the margin ${opts.margin} (gain ${f(gain)})${prefText}`,
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
  const lossText = opts.method === 'dpo' ? `validation loss ${f(candidate.valLoss)} vs ${against} ${f(ref.valLoss)} (within ${DPO_LOSS_TOLERANCE})` : `validation loss ${f(candidate.valLoss)} beats ${against} (${f(ref.valLoss)}) by ${f(gain)} ≥ margin ${opts.margin}`;
  return {
    promote: true,
    reject: false,
    against,
    reason: `${opts.method === 'dpo' ? 'DPO: ' : ''}${lossText}${prefText}; style ${candidate.style.toFixed(3)} vs ${ref.style.toFixed(3)}; longest verbatim run ${candidate.longestVerbatimRun} words`,
  };
}
