/**
 * Pure parsing of what a person typed after `/morris` (or after mentioning the bot) into a topic
 * and options. Flags: `--short`, `--long`, `--temp 0.7` (also `--temperature=0.7`), `--as NAME`
 * (a columnist; whether it exists is the core's check). Chat clients often turn `--` into an em
 * dash, so `—short` is accepted too.
 */
import type { ArticleLength, GenerationOptions } from './types.ts';

export const MIN_TEMPERATURE = 0;
export const MAX_TEMPERATURE = 2;

export type ParsedRequest =
  | { ok: true; topic: string; options: GenerationOptions }
  | { ok: false; reason: 'empty' | 'bad_flag'; message: string };

export function usageText(platform: 'slack' | 'discord' | string): string {
  const how =
    platform === 'discord'
      ? '`/morris topic:<topic>` or mention me with a topic'
      : '`/morris <topic>` or mention @Morris with a topic';
  return [
    `Tell me what to write about: ${how}.`,
    'Options: `--short`, `--long`, `--temp 0.7` (0–2; higher is wilder), `--as NAME` (another columnist).',
    'Example: `/morris --short the 6G hype cycle`',
  ].join('\n');
}

/**
 * `checkColumnist` says what is wrong with a columnist name (null: it exists); the parse refuses
 * an unknown one, from `--as` or from `base` (Discord's option), before anything is queued.
 */
export function parseRequestText(raw: string, base: Partial<GenerationOptions> = {}, checkColumnist?: (name: string) => string | null): ParsedRequest {
  let length: ArticleLength = base.length ?? 'medium';
  let temperature = base.temperature;
  let columnist = base.columnist;
  const words: string[] = [];
  // Flags are removed token by token; the topic's whitespace collapses to single spaces.
  const tokens = raw.replace(/[\u2013\u2014](?=[a-z])/gi, '--').split(/\s+/).filter(Boolean);
  for (let i = 0; i < tokens.length; i++) {
    const tok = tokens[i]!;
    const m = /^--([a-z]+)(?:=(.*))?$/i.exec(tok);
    if (!m) {
      words.push(tok);
      continue;
    }
    const name = m[1]!.toLowerCase();
    if (name === 'short' || name === 'long' || name === 'medium') {
      length = name;
    } else if (name === 'temp' || name === 'temperature') {
      const value = m[2] ?? tokens[++i];
      const t = Number(value);
      if (value === undefined || !Number.isFinite(t) || t < MIN_TEMPERATURE || t > MAX_TEMPERATURE) {
        return {
          ok: false,
          reason: 'bad_flag',
          message: `\`--temp\` needs a number from ${MIN_TEMPERATURE} to ${MAX_TEMPERATURE}, e.g. \`--temp 0.7\`.`,
        };
      }
      temperature = t;
    } else if (name === 'as') {
      const value = m[2] ?? tokens[++i];
      if (!value || !/^[a-z0-9][a-z0-9-]*$/i.test(value)) {
        return { ok: false, reason: 'bad_flag', message: '`--as` needs a columnist name, e.g. `--as house-style`.' };
      }
      columnist = value.toLowerCase();
    } else {
      return { ok: false, reason: 'bad_flag', message: `Unknown option \`--${name}\`. Options: --short, --long, --temp <0–2>, --as <columnist>.` };
    }
  }
  const topic = words.join(' ').trim();
  if (!topic) return { ok: false, reason: 'empty', message: '' };
  const unknownVoice = columnist !== undefined ? checkColumnist?.(columnist) : null;
  if (unknownVoice) return { ok: false, reason: 'bad_flag', message: unknownVoice };
  return { ok: true, topic, options: { length, ...(temperature !== undefined ? { temperature } : {}), ...(columnist !== undefined ? { columnist } : {}) } };
}
