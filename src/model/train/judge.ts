/**
 * What a finished training may become. Only an adapter whose validation loss beat the untrained
 * model's is registered as a 'candidate' for the evaluation gate: without a validation split
 * nothing can judge it (saved, not registered); a loss that did not improve, or one sitting at
 * ln(vocab) — every token equally likely, the model has forgotten language — is 'failed' with the
 * reason. A collapsed run once reported itself as an improvement and reached the gate.
 */

/**
 * How close to ln(vocab) a validation loss counts as the uniform distribution, as a fraction of
 * ln(vocab). A collapse lands on it to float rounding (~1e-6). A random tiny model starts within
 * a few thousandths of ln(vocab) and a few steps of real learning move it further than this, so
 * the window is kept that narrow; a real model (loss 2–3 against ln 49k ≈ 10.8) is nowhere near.
 */
export const COLLAPSE_TOLERANCE = 1e-4;

export type TrainVerdict =
  | { readonly status: 'candidate'; readonly reason: string }
  | { readonly status: 'failed'; readonly reason: string; readonly hint: string }
  | { readonly status: 'unregistered'; readonly reason: string; readonly hint: string };

export interface TrainOutcome {
  readonly datasetId: string;
  /** Validation loss of the untrained adapter (B = 0: the base model); null without validation. */
  readonly initialValLoss: number | null;
  /** Validation loss of the weights that are saved (the best evaluation); null without validation. */
  readonly finalValLoss: number | null;
  readonly vocabSize: number;
  /** The learning rate, for the hint. */
  readonly lr: number;
}

/** Pure: the verdict on a finished run, with the reason and (unless a candidate) what to do next. */
export function judgeTraining(o: TrainOutcome): TrainVerdict {
  if (o.initialValLoss === null || o.finalValLoss === null) {
    return {
      status: 'unregistered',
      reason: `dataset ${o.datasetId} has no usable validation example, so nothing can judge the adapter`,
      hint:
        'Give the dataset a validation split: import a JSONL file with some lines marked "split": "validation" ' +
        '(`morris dataset import FILE.jsonl`; any file of two or more conversations gets at least one), or rebuild ' +
        'from more articles with `morris dataset build` (about 10 % are held out for validation), then train again.',
    };
  }
  const uniform = Math.log(o.vocabSize);
  const lrHint = `Lower the learning rate (now ${o.lr}; LoRA usually trains at 1e-5 to 1e-3) and train again.`;
  if (Math.abs(o.finalValLoss - uniform) <= COLLAPSE_TOLERANCE * uniform) {
    return {
      status: 'failed',
      reason: `collapsed to the uniform distribution: validation loss ${o.finalValLoss.toFixed(4)} ≈ ln(vocab ${o.vocabSize}) = ${uniform.toFixed(4)}, every token equally likely (untrained: ${o.initialValLoss.toFixed(4)})`,
      hint: lrHint,
    };
  }
  if (!(o.finalValLoss < o.initialValLoss)) {
    return {
      status: 'failed',
      reason: `no improvement: validation loss ${o.finalValLoss.toFixed(4)} is not below the untrained model's ${o.initialValLoss.toFixed(4)}`,
      hint: `${lrHint} More steps or more data can help too.`,
    };
  }
  return { status: 'candidate', reason: `validation loss ${o.initialValLoss.toFixed(4)} → ${o.finalValLoss.toFixed(4)}` };
}
