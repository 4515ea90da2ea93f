/**
 * The one bridge between the bots and the model: wraps the in-process GenerationService (or the
 * OpenAI-compatible backend, by MORRIS_BACKEND) as the core's `TextGenerator` port. Nothing else
 * under src/bot/ imports src/model/.
 */
import { findAdapter, getActiveAdapter } from '../store/adapters.ts';
import { DEFAULT_COLUMNIST_NAME, resolveColumnist } from '../columnists/folder.ts';
import type { AdapterRef } from '../model/serving/load.ts';
import { SYSTEM_PROMPT_FILE } from '../paths.ts';
import path from 'node:path';
import type { Config } from '../config.ts';
import { MorrisError } from '../errors.ts';
import type { GenerationService } from '../model/serving/generation-service.ts';
import { articlePrompt, servingSystemPrompt } from '../prompts.ts';
import type { Store } from '../store/db.ts';
import { OpenAiGenerator } from '../bot/openai-backend.ts';
import type { GeneratorInfo, GeneratorInput, TextGenerator } from '../bot/types.ts';
import type { GenerationEvent } from '../generation-events.ts';

/** The dataset an adapter was trained on, from the registry (null when unknown). */
function datasetOf(store: Store | undefined, adapterId: string | null): string | null {
  if (!store || !adapterId) return null;
  return findAdapter(store, adapterId)?.dataset_id ?? null;
}

/** What another columnist's request runs with: its active adapter (null: the base model) and its style guide. */
export type VoiceRoute = (columnist: string) => { adapter: AdapterRef | null; systemPrompt: string };

/**
 * A columnist's route, read from its folder and the store on each request: a promotion of its
 * adapter (by the gate, the CLI or another process) is what the next request gets, no swap needed.
 */
export function voiceRouteFromStore(config: Config, store: Store): VoiceRoute {
  return (name) => {
    const voice = resolveColumnist(name, config);
    const row = getActiveAdapter(store, voice.name);
    return {
      adapter: row ? { id: row.id, dir: row.path, datasetId: row.dataset_id } : null,
      systemPrompt: servingSystemPrompt(voice.systemPromptFile).text,
    };
  };
}

/**
 * The in-process engine as a TextGenerator. The service's events are already the bots' events;
 * the adapter it loaded carries its dataset. The default columnist is the service's own adapter
 * (hot-swapped by the registry); another columnist's request names its adapter and style guide
 * (`route`), which the service's adapter pool serves in the same batch.
 */
export function serviceGenerator(service: GenerationService, route?: VoiceRoute): TextGenerator {
  return {
    async *generate(input: GeneratorInput, signal?: AbortSignal): AsyncGenerator<GenerationEvent> {
      const other = input.columnist && input.columnist !== DEFAULT_COLUMNIST_NAME ? input.columnist : null;
      if (other && !route) throw new MorrisError('INTERNAL', `No route to columnist "${other}": the generator was built without the store.`);
      // generate() throws BAD_INPUT / BUSY synchronously; inside this generator they surface on
      // the first next(), like every other failure.
      yield* service.generate({
        ...(other ? route!(other) : {}),
        topic: input.topic,
        ...(input.revision ? { revision: input.revision } : {}),
        sampling: {
          maxNewTokens: input.maxNewTokens,
          ...(input.temperature !== undefined ? { temperature: input.temperature } : {}),
        },
        ...(signal ? { signal } : {}),
        ...(input.background ? { background: true } : {}),
      });
    },
    async info(): Promise<GeneratorInfo> {
      const s = service.status();
      return {
        backend: 'in-process',
        baseModel: s.baseModel ? path.basename(s.baseModel) : null,
        adapterId: s.adapterId,
        datasetId: s.datasetId,
        details: `model ${s.loaded ? `loaded on ${s.device} (${s.quant})` : s.loading ? 'loading' : 'not loaded yet'}; ${s.runningCount} of ${s.maxBatch} writing at once, ${s.queueLength} waiting`,
      };
    },
  };
}

/** The OpenAI-compatible backend configured by MORRIS_OPENAI_* (MORRIS_BACKEND=openai). */
export function openAiGeneratorFromConfig(config: Config, opts: { store?: Store } = {}): TextGenerator {
  if (!config.MORRIS_OPENAI_BASE_URL || !config.MORRIS_OPENAI_MODEL) {
    throw new MorrisError('CONFIG_INVALID', 'MORRIS_BACKEND=openai needs MORRIS_OPENAI_BASE_URL and MORRIS_OPENAI_MODEL.', {
      hint: 'e.g. MORRIS_OPENAI_BASE_URL=http://127.0.0.1:8000/v1 and MORRIS_OPENAI_MODEL=<served model or LoRA name>.',
    });
  }
  const baseUrl = config.MORRIS_OPENAI_BASE_URL;
  const make = (model: string, systemPrompt: string) =>
    new OpenAiGenerator({
      baseUrl,
      model,
      apiKey: config.MORRIS_OPENAI_API_KEY,
      systemPrompt,
      userPrompt: articlePrompt,
      timeoutMs: config.MORRIS_GENERATION_TIMEOUT_S * 1000,
      queueMax: config.MORRIS_QUEUE_MAX,
      backgroundQueueMax: config.MORRIS_WEB_QUEUE_MAX,
      // A LoRA served under its registry id (vLLM --lora-modules <id>=<path>) maps to its dataset.
      datasetId: datasetOf(opts.store, model),
    });
  const openai = make(config.MORRIS_OPENAI_MODEL, servingSystemPrompt(SYSTEM_PROMPT_FILE).text);
  // Another voice is another model name on the same server (its LoRA module) with its own style
  // guide; one client per name and prompt, so each keeps its queue from request to request.
  const others = new Map<string, OpenAiGenerator>();
  const forVoice = (name: string): OpenAiGenerator => {
    const voice = resolveColumnist(name, config);
    if (!voice.openaiModel) {
      throw new MorrisError('BAD_INPUT', `Columnist ${voice.name} has no "openaiModel" in its columnist.json, so the OpenAI-compatible server cannot be asked for its voice.`, {
        hint: `Serve its adapter there (\`morris adapters export active --columnist ${voice.name} --out DIR\`, then vLLM's --lora-modules NAME=DIR) and set "openaiModel": "NAME".`,
      });
    }
    const prompt = servingSystemPrompt(voice.systemPromptFile).text;
    const key = `${voice.openaiModel}\0${prompt}`;
    if (!others.has(key)) others.set(key, make(voice.openaiModel, prompt));
    return others.get(key)!;
  };
  return {
    info: () => openai.info(),
    generate(input, signal) {
      const other = input.columnist && input.columnist !== DEFAULT_COLUMNIST_NAME ? input.columnist : null;
      return (other ? forVoice(other) : openai).generate(input, signal);
    },
  };
}

/**
 * The generator MORRIS_BACKEND selects: `openai` → the remote server; `local` → `service` (the
 * serve process passes the GenerationService it also hot-swaps adapters on).
 */
export function generatorFromConfig(config: Config, deps: { service?: GenerationService; store?: Store }): TextGenerator {
  if (config.MORRIS_BACKEND === 'openai') return openAiGeneratorFromConfig(config, deps);
  if (!deps.service) throw new MorrisError('INTERNAL', 'MORRIS_BACKEND=local needs the in-process GenerationService.');
  return serviceGenerator(deps.service, deps.store ? voiceRouteFromStore(config, deps.store) : undefined);
}
