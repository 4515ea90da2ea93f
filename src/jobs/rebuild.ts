/**
 * The rebuild job's work: a new dataset version from the stored articles (the pipeline's
 * `buildDataset`, with token counts from the base model's tokenizer), reporting how many examples
 * are new compared with the previous dataset — the number the chain's retrain threshold reads.
 */
import type { Config } from '../config.ts';
import type { Style } from '../pipeline/dataset/enhance.ts';
import type { Store } from '../store/db.ts';
import { buildDataset, datasetOutDir, datasetSettingsFromConfig } from '../pipeline/dataset/build.ts';
import { loadTokenCounter } from '../pipeline/dataset/token-count.ts';
import type { RebuildResult } from './chain.ts';

export async function rebuildDataset(
  store: Store,
  o: { config: Config; baseModelDir: () => Promise<string>; style?: Style; columnist?: string; log: (line: string) => void; signal: AbortSignal },
): Promise<RebuildResult> {
  const tokenCounter = await loadTokenCounter(await o.baseModelDir());
  if (o.signal.aborted) throw o.signal.reason;
  const r = await buildDataset(store, { tokenCounter, settings: datasetSettingsFromConfig(o.config), outDir: datasetOutDir(o.config), style: o.style, columnist: o.columnist });
  const summary = `dataset ${r.id}${r.reused ? ' (unchanged inputs: reused)' : ''}: ${r.train} train + ${r.validation} validation examples from ${r.counts.articles} articles; ${r.newExamples} new, ${r.removedExamples} removed since ${r.previousId ?? 'no previous dataset'}`;
  o.log(summary);
  return { datasetId: r.id, changed: !r.reused || r.previousId !== r.id, newExamples: r.newExamples, summary };
}
