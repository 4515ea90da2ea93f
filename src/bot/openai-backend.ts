/**
 * A TextGenerator that streams from an OpenAI-compatible server (vLLM with multi-LoRA, where the
 * model name picks the adapter; llama.cpp server; Ollama): POST {base}/chat/completions with
 * `stream: true`, read as server-sent events. Requests pass a FIFO gate first so people see
 * their queue position, as with the in-process engine.
 */
import { MorrisError } from '../errors.ts';
import { revisionMessages } from '../prompts.ts';
import { childLog } from '../log.ts';
import { FifoGate, throughGate } from './fifo-gate.ts';
import type { GenerationEvent } from '../generation-events.ts';
import type { GeneratorInfo, GeneratorInput, TextGenerator } from './types.ts';

const logger = childLog('openai-backend');

/** Concurrent streams sent to the server (vLLM batches them; llama.cpp has its own slots). */
export const OPENAI_DEFAULT_CONCURRENCY = 4;

export interface OpenAiGeneratorOptions {
  /** e.g. http://127.0.0.1:8000/v1 (a base without /v1 gets it added). */
  baseUrl: string;
  /** Model name; with vLLM multi-LoRA, the LoRA adapter's served name. */
  model: string;
  apiKey?: string;
  systemPrompt: string;
  /** The user turn for a topic (shared with the in-process engine so both prompt alike). */
  userPrompt(topic: string): string;
  timeoutMs: number;
  concurrency?: number;
  queueMax: number;
  /** Background (playground) requests' own waiting cap; default queueMax. */
  backgroundQueueMax?: number;
  /** Reported by `version` as the dataset the served adapter was trained on, when known. */
  datasetId?: string | null;
}

export function chatCompletionsUrl(baseUrl: string): string {
  const base = baseUrl.replace(/\/+$/, '');
  return /\/v\d+$/.test(base) ? `${base}/chat/completions` : `${base}/v1/chat/completions`;
}

/** Parses an SSE byte stream into `data:` payloads (one per event; multi-line data joined). */
export async function* sseData(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffer = '';
  let data: string[] = [];
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buffer.search(/\r?\n/)) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + (buffer[nl] === '\r' ? 2 : 1));
      if (line === '') {
        if (data.length) yield data.join('\n');
        data = [];
      } else if (line.startsWith('data:')) {
        data.push(line.slice(5).replace(/^ /, ''));
      } // comments (":") and other fields (event:, id:) carry nothing we use
    }
  }
  if (data.length) yield data.join('\n');
}

export class OpenAiGenerator implements TextGenerator {
  private readonly gate: FifoGate;

  constructor(private readonly opts: OpenAiGeneratorOptions) {
    this.gate = new FifoGate(opts.concurrency ?? OPENAI_DEFAULT_CONCURRENCY, opts.queueMax, opts.backgroundQueueMax);
  }

  generate(input: GeneratorInput, signal?: AbortSignal): AsyncIterable<GenerationEvent> {
    return throughGate(this.gate, signal, () => this.stream(input, signal), input.background === true);
  }

  async info(): Promise<GeneratorInfo> {
    return {
      backend: `openai-compatible (${new URL(this.opts.baseUrl).host})`,
      baseModel: this.opts.model,
      adapterId: this.opts.model,
      datasetId: this.opts.datasetId ?? null,
      details: `queue: ${this.gate.running} running, ${this.gate.queued} waiting`,
    };
  }

  private async *stream(input: GeneratorInput, signal?: AbortSignal): AsyncGenerator<GenerationEvent> {
    const ac = new AbortController();
    let reason: 'timeout' | 'cancelled' | null = null;
    const timer = setTimeout(() => {
      reason = 'timeout';
      ac.abort();
    }, this.opts.timeoutMs);
    const onAbort = () => {
      reason ??= 'cancelled';
      ac.abort();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    let text = '';
    let finish: string | null = null;
    const done = (cut: boolean, why: string): GenerationEvent => ({
      type: 'done',
      text,
      cut,
      reason: why,
      adapterId: this.opts.model,
      baseModel: this.opts.model,
      datasetId: this.opts.datasetId ?? null,
    });
    try {
      yield { type: 'started' };
      let res: Response;
      try {
        res = await fetch(chatCompletionsUrl(this.opts.baseUrl), {
          method: 'POST',
          signal: ac.signal,
          headers: {
            'content-type': 'application/json',
            accept: 'text/event-stream',
            ...(this.opts.apiKey ? { authorization: `Bearer ${this.opts.apiKey}` } : {}),
          },
          body: JSON.stringify({
            model: this.opts.model,
            stream: true,
            max_tokens: input.maxNewTokens,
            ...(input.temperature !== undefined ? { temperature: input.temperature } : {}),
            // A revision adds the previous article and the instruction as further turns, in the
            // order prompts.ts revisionMessages gives them (its ask is this backend's own prompt).
            messages: [
              { role: 'system', content: this.opts.systemPrompt },
              { role: 'user', content: this.opts.userPrompt(input.topic) },
              ...(input.revision
                ? revisionMessages('', '', input.revision.previousArticle, input.revision.instruction).slice(2)
                : []),
            ],
          }),
        });
      } catch (e) {
        if (reason) {
          yield done(true, reason);
          return;
        }
        throw new MorrisError('BACKEND_ERROR', `Cannot reach the generation server at ${this.opts.baseUrl}: ${(e as Error).message}`, {
          cause: e,
          hint: 'Check MORRIS_OPENAI_BASE_URL and that the server (vLLM, llama.cpp, Ollama) is running.',
        });
      }
      if (!res.ok || !res.body) {
        const detail = (await res.text().catch(() => '')).slice(0, 300);
        throw new MorrisError('BACKEND_ERROR', `The generation server answered HTTP ${res.status}: ${detail}`, {
          hint: res.status === 404 ? `Is MORRIS_OPENAI_MODEL (${this.opts.model}) served there?` : undefined,
        });
      }
      try {
        for await (const data of sseData(res.body)) {
          if (data === '[DONE]') break;
          let chunk: { choices?: { delta?: { content?: string | null }; finish_reason?: string | null }[]; error?: { message?: string } };
          try {
            chunk = JSON.parse(data);
          } catch (e) {
            throw new MorrisError('BACKEND_ERROR', `Unreadable stream chunk from the generation server: ${data.slice(0, 100)}`, { cause: e });
          }
          if (chunk.error) throw new MorrisError('BACKEND_ERROR', `The generation server failed: ${chunk.error.message ?? 'unknown error'}`);
          const choice = chunk.choices?.[0];
          const piece = choice?.delta?.content;
          if (piece) {
            text += piece;
            yield { type: 'text', text: piece };
          }
          if (choice?.finish_reason) finish = choice.finish_reason;
        }
      } catch (e) {
        if (!reason) throw e;
        logger.debug({ err: e, reason }, 'stream stopped');
      }
      yield reason ? done(true, reason) : done(false, finish === 'length' ? 'length' : 'stop');
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      ac.abort();
    }
  }
}
