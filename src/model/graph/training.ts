/**
 * The training graph: the decoder forward without cache (the same `buildDecoderForward` the
 * inference graph uses), a masked cross-entropy over the assistant's tokens, and — for the train
 * graph — the gradients of every LoRA A/B tensor from our autodiff. The eval graph is the same
 * forward + loss with dropout off and no gradients.
 *
 * Inputs
 *   input_ids      int64   [B, S]   right-padded: padding comes after every real token, so the
 *   position_ids   int64   [B, S]   causal mask alone keeps it out of the real tokens' attention
 *   loss_rows      int64   [M]      the positions (of B·S, row-major) whose next token is an
 *                                   assistant token: only they get the LM head and a loss — prompt
 *                                   and padding never reach the vocabulary-wide part
 *   targets        int64   [M]      the next token at each of those positions
 *   loss_weights   float32 [M]      1/(tokens counted in the whole optimizer step), so summing
 *                                   micro-batch losses/gradients gives the step's mean (0 for the
 *                                   padding rows that make M a multiple of the loss chunks)
 *   <PEFT key>     float32 A [r, in], B [out, r] for each (layer, target module)
 *   dropmask:<layer>.<module>  uint8 [B·S, in]   (train graph with dropout > 0) 1 = keep
 *   dropout_scale  float32 []       1/(1-p) (1 to evaluate through the train graph)
 * Outputs: loss (float32 scalar) and `grad:<PEFT key>` per LoRA tensor (train graph).
 *
 * The DPO objective (objective 'dpo') reads the same sequences as Q = 2P rows, the P chosen
 * completions then the P rejected ones, and replaces loss_weights with
 *   seq_rows       float32 [Q, M]   1 where loss row m belongs to sequence q: summing a sequence's
 *                                   token log-probs is one MatMul, so no new gradient rule is needed
 *   pair_signs     float32 [P, Q]   +1 at (p, chosen), −1 at (p, rejected)
 *   ref_margin     float32 [P]      log πref(c) − log πref(r), computed once per pair before training
 *   pair_weights   float32 [P]      1/(pairs in the optimizer step) (0 for a padding pair)
 *   dpo_beta       float32 []       β
 * loss = Σ_p w_p · softplus(−β·((log πθ(c) − log πθ(r)) − ref_margin_p))  (= −log σ(·), stable)
 * and also outputs seq_logp float32 [Q, 1]: each sequence's summed log-prob under these weights
 * (the reference's, when fed the reference adapter; the policy's for preference accuracy).
 * Its LM head is the plain op-by-op one over the counted rows (no chunked composite): the loss
 * is not a weighted sum of token losses, so the composite's fused gradient does not apply.
 */
import { lmHeadCrossEntropy } from '../autodiff/composites.ts';
import { addGradients } from '../autodiff/gradients.ts';
import type { DecoderConfig } from '../checkpoint/config.ts';
import { moduleShape, peftKey } from '../checkpoint/lora.ts';
import { buildDecoderForward, type LoraModule, type WeightProvider } from './llama.ts';
import { DTYPE_CODE, GraphBuilder } from './builder.ts';

export interface TrainingGraphOptions {
  readonly rank: number;
  readonly alpha: number;
  readonly targets: readonly LoraModule[];
  /** LoRA dropout probability; masks are graph inputs (ONNX Dropout with a seed repeats its mask). */
  readonly dropout: number;
  /** true: loss + gradients (+ dropout); false: loss only, dropout off. */
  readonly train: boolean;
  /**
   * > 0: the LM head + loss as one composite (own gradient) over this many equal row chunks —
   * M must be a multiple; 0: the plain op-by-op loss (the reference it is tested against).
   */
  readonly lossChunks: number;
  /** 'sft' (default): weighted cross-entropy; 'dpo': the preference loss above. */
  readonly objective?: 'sft' | 'dpo';
}

export interface LoraInput {
  /** PEFT key, also the graph input name. */
  readonly name: string;
  readonly layer: number;
  readonly module: LoraModule;
  readonly which: 'A' | 'B';
  readonly shape: readonly [number, number];
}

export interface DropoutInput {
  readonly name: string;
  readonly inFeatures: number;
}

export interface TrainingGraph {
  readonly g: GraphBuilder;
  readonly lora: readonly LoraInput[];
  readonly dropoutMasks: readonly DropoutInput[];
  /** Output name of each LoRA tensor's gradient (train graph only). */
  readonly gradOutputs: ReadonlyMap<string, string>;
}

export const gradName = (key: string): string => `grad:${key}`;
export const DROPOUT_SCALE = 'dropout_scale';
export const dropoutMaskName = (layer: number, m: LoraModule): string => `dropmask:${layer}.${m}`;

/** Every LoRA tensor of a configuration, in a fixed order (layer, module, A then B). */
export function loraInputs(cfg: DecoderConfig, rank: number, targets: readonly LoraModule[]): LoraInput[] {
  const out: LoraInput[] = [];
  for (let layer = 0; layer < cfg.numLayers; layer++) {
    for (const m of targets) {
      const { inF, outF } = moduleShape(cfg, m);
      out.push({ name: peftKey(layer, m, 'A'), layer, module: m, which: 'A', shape: [rank, inF] });
      out.push({ name: peftKey(layer, m, 'B'), layer, module: m, which: 'B', shape: [outF, rank] });
    }
  }
  return out;
}

export function buildTrainingGraph(cfg: DecoderConfig, weights: (g: GraphBuilder) => WeightProvider, o: TrainingGraphOptions): TrainingGraph {
  const g = new GraphBuilder({ name: o.train ? 'morris_lora_train' : 'morris_lora_eval' });
  const B = 'batch_size';
  const S = 'sequence_length';
  const inputIds = g.input('input_ids', 'int64', [B, S]);
  const positionIds = g.input('position_ids', 'int64', [B, S]);
  const M = 'loss_rows';
  const lossRows = g.input('loss_rows', 'int64', [M]);
  const targets = g.input('targets', 'int64', [M]);
  const dpo = o.objective === 'dpo';
  const lossWeights = dpo ? '' : g.input('loss_weights', 'float32', [M]);

  const lora = loraInputs(cfg, o.rank, o.targets);
  for (const t of lora) g.input(t.name, 'float32', t.shape);
  const dropoutMasks: DropoutInput[] = [];
  const useDropout = o.train && o.dropout > 0;
  // 1/(1-p) in training; fed rather than constant so the train graph can also evaluate
  // (all-ones masks, scale 1) when memory has no room for a second session.
  const keepScale = useDropout ? g.input(DROPOUT_SCALE, 'float32', []) : '';

  const w = weights(g);
  const fwd = buildDecoderForward(g, cfg, w, {
    inputIds,
    positionIds,
    skipLmHead: o.lossChunks > 0 || dpo,
    lora: (layer, m) => {
      if (!o.targets.includes(m)) return undefined;
      const { inF } = moduleShape(cfg, m);
      const name = dropoutMaskName(layer, m);
      const dropout = useDropout
        ? (x: string) => {
            g.input(name, 'uint8', ['tokens', inF]);
            dropoutMasks.push({ name, inFeatures: inF });
            const keep = g.op('Mul', [g.op('Cast', [name], { to: DTYPE_CODE.float32 }), keepScale]); // [N, in]: 0 or 1/(1-p)
            return g.op('Mul', [x, keep]);
          }
        : undefined;
      return { a: peftKey(layer, m, 'A'), b: peftKey(layer, m, 'B'), scale: o.alpha / o.rank, dropout };
    },
  });

  const loraNames = lora.map((t) => t.name);
  const targets2d = g.op('Unsqueeze', [targets, g.ints([1])]); // [M, 1]
  const gradOutputs = new Map<string, string>();
  const outputGrads = (grads: Map<string, string>) => {
    for (const t of lora) gradOutputs.set(t.name, g.output(grads.get(t.name)!, gradName(t.name)));
  };
  if (dpo) {
    const head = w.get(cfg.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight');
    const loss = dpoLoss(g, fwd.hidden, head, lossRows, targets2d, cfg.hiddenSize);
    if (o.train) outputGrads(addGradients(g, loss, loraNames));
    return { g, lora, dropoutMasks, gradOutputs };
  }
  const weights2d = g.op('Unsqueeze', [lossWeights, g.ints([1])]); // [M, 1]
  if (o.lossChunks > 0) {
    // The LM head + loss as one composite with its own gradient, in row chunks, over the counted
    // rows only; the autodiff's Gather rule scatters their gradient back into the sequence.
    const hidden2d = g.op('Reshape', [fwd.hidden, g.ints([-1, cfg.hiddenSize])]); // [N, H]
    const rows = g.op('Gather', [hidden2d, lossRows], { axis: 0 }); // [M, H]
    const head = w.get(cfg.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight');
    const ce = lmHeadCrossEntropy(g, rows, head, targets2d, weights2d, o.lossChunks, o.train);
    g.output(ce.loss, 'loss');
    if (o.train) outputGrads(addGradients(g, new Map([[rows, ce.dHidden!]]), loraNames));
  } else {
    // Plain masked cross-entropy, differentiated op by op: loss = −Σ_m w_m · log softmax(logits_m)[target_m]
    const logits2d = g.op('Reshape', [fwd.logits, g.ints([-1, cfg.vocabSize])]); // [N, V]
    const logp = g.op('LogSoftmax', [g.op('Gather', [logits2d, lossRows], { axis: 0 })], { axis: -1 }); // [M, V]
    const picked = g.op('GatherElements', [logp, targets2d], { axis: 1 }); // [M, 1]
    const loss = g.op('Neg', [g.op('ReduceSum', [g.op('Mul', [picked, weights2d])], { keepdims: 0 })]);
    g.setInfo(loss, 'float32', []);
    g.output(loss, 'loss');
    if (o.train) outputGrads(addGradients(g, 'loss', loraNames));
  }
  return { g, lora, dropoutMasks, gradOutputs };
}

/** Names of the DPO graph's extra inputs and its per-sequence output. */
export const DPO_IO = {
  seqRows: 'seq_rows',
  pairSigns: 'pair_signs',
  refMargin: 'ref_margin',
  pairWeights: 'pair_weights',
  beta: 'dpo_beta',
  seqLogp: 'seq_logp',
} as const;

/** The DPO loss over the counted rows of `hidden` [B, S, H]; outputs `loss` and `seq_logp`. */
function dpoLoss(g: GraphBuilder, hidden: string, head: string, lossRows: string, targets2d: string, hiddenSize: number): string {
  const seqRows = g.input(DPO_IO.seqRows, 'float32', ['sequences', 'loss_rows']);
  const pairSigns = g.input(DPO_IO.pairSigns, 'float32', ['pairs', 'sequences']);
  const refMargin = g.input(DPO_IO.refMargin, 'float32', ['pairs']);
  const pairWeights = g.input(DPO_IO.pairWeights, 'float32', ['pairs']);
  const beta = g.input(DPO_IO.beta, 'float32', []);
  const hidden2d = g.op('Reshape', [hidden, g.ints([-1, hiddenSize])]); // [N, H]
  const rows = g.op('Gather', [hidden2d, lossRows], { axis: 0 }); // [M, H]
  const logits = g.op('Gemm', [rows, head], { transB: 1 }); // [M, V]
  const logp = g.op('LogSoftmax', [logits], { axis: -1 }); // [M, V]
  const tokenLogp = g.op('GatherElements', [logp, targets2d], { axis: 1 }); // [M, 1]
  const seqLogp = g.output(g.op('MatMul', [seqRows, tokenLogp]), DPO_IO.seqLogp); // [Q, 1] (renamed)
  g.setInfo(seqLogp, 'float32', ['sequences', 1]);
  const margin = g.op('MatMul', [pairSigns, seqLogp]); // [P, 1]  log πθ(c) − log πθ(r)
  const z = g.op('Mul', [g.op('Sub', [margin, g.op('Unsqueeze', [refMargin, g.ints([1])])]), beta]); // [P, 1]
  const perPair = g.op('Softplus', [g.op('Neg', [z])]); // −log σ(z)   [P, 1]
  const loss = g.op('ReduceSum', [g.op('Mul', [perPair, g.op('Unsqueeze', [pairWeights, g.ints([1])])])], { keepdims: 0 });
  g.setInfo(loss, 'float32', []);
  return g.output(loss, 'loss');
}
