/**
 * Validation loss of the base model with or without an adapter, through the training helper's
 * eval graph (the same graph and masked cross-entropy the trainer reports), so the gate compares
 * base, active and candidate on exactly the same held-out tokens.
 */
import type { Store } from '../../store/db.ts';
import { MorrisError } from '../../errors.ts';
import { readDecoderConfig } from '../../model/checkpoint/config.ts';
import type { LoraModule } from '../../model/graph/llama.ts';
import { adapterTensors, readAdapter } from '../../model/checkpoint/lora.ts';
import { loadDatasetExamples, loadTokenizer, makeMicroBatch, padTokenId, prepareExamples, targetCount } from '../../model/train/data.ts';
import { TrainingSessions } from '../../model/train/step.ts';

export interface ValidationSet {
  modelDir: string;
  store: Store;
  datasetId: string;
  maxSeqLen: number;
  threads: number;
  /** onnxruntime execution provider, or 'auto'. */
  device: string;
}

/** Mean cross-entropy (nats per assistant token) over the dataset's validation split. */
export async function validationLoss(v: ValidationSet, adapterDir: string | null, signal?: AbortSignal): Promise<number> {
  const cfg = readDecoderConfig(v.modelDir);
  const adapter = adapterDir ? readAdapter(adapterDir, cfg) : null;
  const tok = await loadTokenizer(v.modelDir);
  const ds = loadDatasetExamples(v.store, v.datasetId);
  const { examples } = prepareExamples(tok, ds.validation, v.maxSeqLen, 'truncate');
  if (!examples.length) {
    throw new MorrisError('DATASET_EMPTY', `Dataset ${ds.datasetId} has no usable validation examples to evaluate on.`, {
      hint: 'Rebuild the dataset with more articles so the validation split is not empty.',
    });
  }
  // The base model is the graph with every LoRA tensor zero (B = 0 makes the side path vanish).
  const sessions = await TrainingSessions.open({
    modelDir: v.modelDir,
    rank: adapter?.r ?? 1,
    alpha: adapter?.alpha ?? 1,
    dropout: 0,
    targets: (adapter?.targetModules ?? ['q_proj']) as LoraModule[],
    device: v.device as never,
    threads: v.threads,
  });
  try {
    const weights = adapterTensors(adapter, sessions.lora);
    const tokens = examples.reduce((a, e) => a + targetCount(e), 0);
    const pad = padTokenId(tok);
    let loss = 0;
    for (const ex of examples) {
      if (signal?.aborted) throw new MorrisError('CANCELLED', 'evaluation cancelled');
      loss += await sessions.evalLoss(makeMicroBatch([ex], pad), weights, 1 / tokens);
    }
    return loss;
  } finally {
    await sessions.release();
  }
}
