/** The generation service as the app runs it: the real engine, settings from config. */
import type { Config } from '../../config.ts';
import { SYSTEM_PROMPT_FILE } from '../../paths.ts';
import { getActiveAdapter } from '../../store/adapters.ts';
import type { Store } from '../../store/db.ts';
import { resolveBaseModel } from '../checkpoint/hub.ts';
import { GenerationService } from './generation-service.ts';
import type { AdapterRef } from './load.ts';

/** A columnist's active adapter recorded in the store (default: the default columnist's), with its dataset. */
export function activeAdapterFromStore(store: Store, columnist?: string): AdapterRef | null {
  const row = getActiveAdapter(store, columnist);
  return row ? { id: row.id, dir: row.path, datasetId: row.dataset_id } : null;
}

/** `systemPromptFile` is the voice's style guide (default: the default columnist's). */
export function createGenerationService(config: Config, opts: { adapter?: AdapterRef | null; baseModel?: string; systemPromptFile?: string } = {}): GenerationService {
  return new GenerationService({
    // Imported on first load so that merely constructing the service (bots, --help) stays cheap.
    load: async (o) => (await import('../inference/engine.ts')).loadModel(o),
    baseModel: opts.baseModel ?? (() => resolveBaseModel(config)),
    adapter: opts.adapter ?? null,
    systemPromptFile: opts.systemPromptFile ?? SYSTEM_PROMPT_FILE,
    defaults: {
      maxNewTokens: config.MORRIS_MAX_NEW_TOKENS,
      temperature: config.MORRIS_TEMPERATURE,
      topP: config.MORRIS_TOP_P,
      topK: config.MORRIS_TOP_K,
      repetitionPenalty: config.MORRIS_REPETITION_PENALTY,
    },
    timeoutS: config.MORRIS_GENERATION_TIMEOUT_S,
    idleUnloadS: config.MORRIS_IDLE_UNLOAD_S,
    queueMax: config.MORRIS_QUEUE_MAX,
    backgroundQueueMax: config.MORRIS_WEB_QUEUE_MAX,
    maxTopicChars: config.MORRIS_MAX_TOPIC_CHARS,
    device: config.MORRIS_DEVICE,
    quant: config.MORRIS_QUANT,
    decodeKernel: config.MORRIS_DECODE_KERNEL,
    ...(config.MORRIS_THREADS > 0 ? { threads: config.MORRIS_THREADS } : {}),
    ...(config.MORRIS_MAX_BATCH > 0 ? { maxBatch: config.MORRIS_MAX_BATCH } : {}),
    ...(config.MORRIS_KV_MEMORY_MB > 0 ? { kvBudgetBytes: config.MORRIS_KV_MEMORY_MB * 2 ** 20 } : {}),
  });
}
