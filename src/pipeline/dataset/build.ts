/**
 * `buildDataset`, the dataset build the CLI, the demo and the scheduled jobs all call: stored
 * articles → clean → dedupe → enhance → dataset version. Settings come in as options;
 * `datasetSettingsFromConfig` is the edge helper that reads them from config. (Scraping's entry
 * point is `scrapeSource` in crawl/scrape.ts.)
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../../config.ts';
import { getKv, setKv, type Store } from '../../store/db.ts';
import { childLog } from '../../log.ts';
import { wrapFsError } from '../../errors.ts';
import { sweepStaleTmpFiles } from '../../store/tmp-files.ts';
import { articleTexts, markDuplicates } from '../../store/articles.ts';
import { datasetExamples, datasetExists } from '../../store/datasets.ts';
import { cleanArticles, type CleanResult } from './clean-text.ts';
import { dedupeArticles, type DedupeResult } from './dedupe.ts';
import {
  composeDataset,
  datasetFiles,
  DEFAULT_VAL_FRACTION,
  saveDataset,
  writeJsonl,
  type DatasetSettings,
} from './versions.ts';
import type { LengthCounts, LengthPolicy } from './fit-length.ts';
import { loadStyle, stableHash, type Style } from './enhance.ts';
import type { ChatMessage } from '../../prompts.ts';
import { loadTokenCounter, type TokenCounter } from './token-count.ts';
import { baseModelLocation } from '../../model/checkpoint/base-model-location.ts';
import { DEFAULT_COLUMNIST_NAME } from '../../paths.ts';

const log = childLog('dataset');

/** kv key naming the dataset the default columnist's last build produced (or reused). */
export const CURRENT_DATASET_KEY = 'dataset:current';

/** The kv key of a columnist's current dataset: the old key for the default one, so nothing moves. */
export function currentDatasetKey(columnist: string | undefined): string {
  return !columnist || columnist === DEFAULT_COLUMNIST_NAME ? CURRENT_DATASET_KEY : `${CURRENT_DATASET_KEY}:${columnist}`;
}

export interface BuildOptions {
  tokenCounter: TokenCounter;
  settings: DatasetSettings;
  /** Where the JSONL files go (data/datasets). */
  outDir: string;
  /** Default: the default columnist's folder (data/columnists/morris). */
  style?: Style;
  /** Only this source's articles (its stored name: see crawl/scrape.ts sourceKey). */
  source?: string;
  /** The voice whose articles go in and who owns the version (default: the default columnist). */
  columnist?: string;
}

export interface BuildResult {
  id: string;
  /** The same inputs and settings were built before: nothing new was written. */
  reused: boolean;
  /** The dataset the previous build produced, if any. */
  previousId: string | null;
  /** Examples in this dataset that the previous one did not have (what retraining would add). */
  newExamples: number;
  /** Examples of the previous dataset no longer present. */
  removedExamples: number;
  examples: number;
  train: number;
  validation: number;
  files: { all: string; train: string; validation: string };
  counts: {
    articles: number;
    clean: CleanResult['counts'];
    dedupe: DedupeResult['counts'];
    length: LengthCounts;
    extras: number;
  };
}

export function datasetSettingsFromConfig(
  c: Config,
  overrides: Partial<Pick<DatasetSettings, 'maxTokens' | 'policy'>> = {},
): DatasetSettings {
  return {
    maxTokens: overrides.maxTokens ?? c.MORRIS_MAX_SEQ_TOKENS,
    policy: (overrides.policy ?? 'split') as LengthPolicy,
    valFraction: DEFAULT_VAL_FRACTION,
    extraRatio: c.MORRIS_EXTRA_EXAMPLES_RATIO,
    nearDupThreshold: c.MORRIS_NEAR_DUP_THRESHOLD,
    minWords: 150,
  };
}

export function datasetOutDir(c: Config): string {
  return path.resolve(c.MORRIS_DATA_DIR, 'datasets');
}

/**
 * Everything `buildDataset` needs, from config: the base model's tokenizer (MORRIS_BASE_MODEL, or
 * `modelDir`), the settings and the output folder. For the CLI, the demo and the rebuild job.
 */
export async function buildOptionsFromConfig(
  c: Config,
  o: { modelDir?: string; maxTokens?: number; policy?: LengthPolicy; source?: string; columnist?: { name: string; dir: string } } = {},
): Promise<BuildOptions> {
  const modelDir = o.modelDir ? path.resolve(o.modelDir) : baseModelLocation(c.MORRIS_BASE_MODEL, c.MORRIS_MODELS_DIR);
  return {
    tokenCounter: await loadTokenCounter(modelDir),
    settings: datasetSettingsFromConfig(c, { maxTokens: o.maxTokens, policy: o.policy }),
    outDir: datasetOutDir(c),
    source: o.source,
    // A voice's datasets take its own style guide and extra examples.
    ...(o.columnist ? { columnist: o.columnist.name, style: loadStyle(o.columnist.dir) } : {}),
  };
}

export async function buildDataset(store: Store, opts: BuildOptions): Promise<BuildResult> {
  // Builds killed mid-write (kill -9, a crash) left their temp files; their PIDs are gone now.
  sweepStaleTmpFiles([opts.outDir]);
  try {
    return await composeAndSave(store, opts);
  } catch (e) {
    // Writes of the files and rows are handled where they happen (partial files removed); what
    // reaches here is a full disk in the database before or after them.
    throw wrapFsError(e, `the database ${store.name} during the dataset build`, 'no new dataset was registered; stored articles and earlier datasets are unchanged');
  }
}

async function composeAndSave(store: Store, opts: BuildOptions): Promise<BuildResult> {
  const style = opts.style ?? loadStyle();
  const columnist = opts.columnist ?? DEFAULT_COLUMNIST_NAME;
  const rows = articleTexts(store, opts.source, columnist);
  const cleaned = cleanArticles(rows, { minWords: opts.settings.minWords });
  const deduped = dedupeArticles(cleaned.articles, { nearDupThreshold: opts.settings.nearDupThreshold });
  const composed = composeDataset(deduped.articles, style, opts.settings, opts.tokenCounter);
  const counts: BuildResult['counts'] = {
    articles: rows.length,
    clean: cleaned.counts,
    dedupe: deduped.counts,
    length: composed.length,
    extras: composed.examples.filter((e) => e.kind === 'extra').length,
  };

  const dupOf = new Map(deduped.duplicates.map((d) => [d.id, d.duplicateOf]));
  markDuplicates(store, cleaned.articles.map((a) => ({ id: a.id, duplicateOf: dupOf.get(a.id) ?? null })));

  const previousId = getKv(store, currentDatasetKey(columnist)) ?? null;
  const files = datasetFiles(opts.outDir, composed.id);
  const exists = datasetExists(store, composed.id);
  if (!exists) {
    saveDataset(store, composed, {
      settings: { ...opts.settings, tokenizer: opts.tokenCounter.id, source: opts.source ?? null },
      stats: { ...counts, duplicates: deduped.duplicates, dropped: cleaned.dropped },
      outDir: opts.outDir,
      columnist,
    });
  } else if (!fs.existsSync(files.all) || !fs.existsSync(files.train) || !fs.existsSync(files.validation)) {
    // Files deleted since: the rows are the record, so write them again.
    const rowsOf = (split?: 'train' | 'validation') =>
      datasetExamples(store, composed.id, split).map((r) => JSON.parse(r.messages) as ChatMessage[]);
    writeJsonl(files.train, rowsOf('train'));
    writeJsonl(files.validation, rowsOf('validation'));
    writeJsonl(files.all, rowsOf());
  }
  try {
    setKv(store, currentDatasetKey(columnist), composed.id);
  } catch (e) {
    throw wrapFsError(e, `the database ${store.name}`, `dataset ${composed.id} was registered but is not yet the current one (build again once there is space)`);
  }

  const key = (messages: string) => stableHash(messages);
  const current = new Set(composed.examples.map((e) => key(JSON.stringify(e.messages))));
  const previous =
    previousId && previousId !== composed.id
      ? new Set(datasetExamples(store, previousId).map((r) => key(r.messages)))
      : previousId === composed.id
        ? current
        : new Set<string>();
  const newExamples = [...current].filter((k) => !previous.has(k)).length;
  const removedExamples = [...previous].filter((k) => !current.has(k)).length;

  const result: BuildResult = {
    id: composed.id,
    reused: exists,
    previousId,
    newExamples,
    removedExamples,
    examples: composed.examples.length,
    train: composed.examples.filter((e) => e.split === 'train').length,
    validation: composed.examples.filter((e) => e.split === 'validation').length,
    files,
    counts,
  };
  log.info({ id: result.id, reused: result.reused, examples: result.examples, newExamples }, 'dataset built');
  return result;
}
