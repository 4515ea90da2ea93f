/**
 * A deterministic TextGenerator for the bot tests: the text depends only on the topic (with a
 * hash tag in it, so an answer delivered to the wrong person is detectable), it streams in small
 * chunks with a delay, and it queues through a one-slot FIFO gate like the real engine.
 */
import { createHash } from 'node:crypto';
import { MorrisError } from '../../../src/errors.ts';
import { FifoGate, throughGate } from '../../../src/bot/fifo-gate.ts';
import type { GenerationEvent } from '../../../src/generation-events.ts';
import type { GeneratorInfo, GeneratorInput, TextGenerator } from '../../../src/bot/types.ts';

export function topicTag(topic: string): string {
  return createHash('sha256').update(topic).digest('hex').slice(0, 10);
}

const VOCAB = ['doom', 'capex', 'keynote', 'synergy', 'roadmap', 'consultants', 'hype', 'spectrum', 'regulator', 'churn'];

/** The article the fake writes for `topic`: `words` words, paragraphs of 20, tagged by topic. */
export function articleFor(topic: string, words = 60): string {
  const tag = topicTag(topic);
  const out: string[] = [`Headline [#${tag}]`];
  let para: string[] = [];
  for (let i = 0; i < words; i++) {
    para.push(VOCAB[parseInt(tag.slice(i % 8, (i % 8) + 2), 16) % VOCAB.length]! + (i % 20 === 19 ? '.' : ''));
    if (para.length === 20) {
      out.push(para.join(' '));
      para = [];
    }
  }
  if (para.length) out.push(`${para.join(' ')}.`);
  out.push(`[end #${tag}]`);
  return out.join('\n\n');
}

export interface FakeBehaviour {
  text?: string;
  chunkChars?: number;
  chunkDelayMs?: number;
  /** Thrown when the request starts (e.g. the model failing to load). */
  failOnStart?: Error;
  /** Stop with cut: true after this many ms, like the engine's time limit. */
  timeoutMs?: number;
  /** Awaited after `started`, before any text: lets a test prove what happens before generation. */
  hold?: Promise<void>;
}

export class FakeGenerator implements TextGenerator {
  readonly calls: GeneratorInput[] = [];
  private readonly gate: FifoGate;

  constructor(
    private readonly behaviour: (topic: string) => FakeBehaviour = () => ({}),
    opts: { slots?: number; queueMax?: number } = {},
    private readonly meta = { adapterId: 'a-test-1', datasetId: 'ds-test-1', baseModel: 'tiny-test' },
  ) {
    this.gate = new FifoGate(opts.slots ?? 1, opts.queueMax ?? 100);
  }

  generate(input: GeneratorInput, signal?: AbortSignal): AsyncIterable<GenerationEvent> {
    this.calls.push(input);
    return throughGate(this.gate, signal, () => this.stream(input, signal));
  }

  async info(): Promise<GeneratorInfo> {
    return { backend: 'fake', ...this.meta, details: `queue ${this.gate.queued}` };
  }

  private async *stream(input: GeneratorInput, signal?: AbortSignal): AsyncGenerator<GenerationEvent> {
    const b = this.behaviour(input.topic);
    yield { type: 'started' };
    if (b.failOnStart) throw b.failOnStart;
    if (b.hold) await b.hold;
    const text = b.text ?? articleFor(input.topic);
    const step = b.chunkChars ?? 24;
    const started = Date.now();
    let sent = '';
    for (let i = 0; i < text.length; i += step) {
      if (signal?.aborted) throw new MorrisError('CANCELLED', 'cancelled');
      if (b.timeoutMs !== undefined && Date.now() - started >= b.timeoutMs) {
        yield { type: 'done', text: sent, cut: true, reason: 'timeout', ...this.meta };
        return;
      }
      const piece = text.slice(i, i + step);
      sent += piece;
      yield { type: 'text', text: piece };
      await new Promise((r) => setTimeout(r, b.chunkDelayMs ?? 2));
    }
    yield { type: 'done', text: sent, cut: false, reason: 'stop', ...this.meta };
  }
}
