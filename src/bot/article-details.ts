/**
 * The "Details" of an article (issue 16): everything Morris keeps about how it came to be and what
 * readers said, for the reader who asks. Pure: feedback-desk.ts gathers the rows, the platform
 * adapters show the text privately. User ids are written as `<@id>`, which Slack and Discord both
 * render as the person (neither pings in a private reply sent without mention parsing).
 */
import type { FeedbackRow } from '../store/feedback.ts';
import type { GenerationEntry, GenerationKind } from '../store/generations.ts';
import { lineageLine } from './feedback-ui.ts';
import type { Lineage } from './types.ts';

export interface ArticleDetailsInput {
  entry: GenerationEntry;
  /** The article this one regenerates or revises, when still kept. */
  parent?: { id: string; kind: GenerationKind } | undefined;
  /** Generations made from this one (regenerations and revisions), oldest first. */
  children: { id: string; kind: GenerationKind }[];
  feedback: readonly FeedbackRow[];
  columnist: string;
  lineage: Lineage;
}

const plural = (n: number, one: string, many = `${one}s`) => `${n.toLocaleString('en-GB')} ${n === 1 ? one : many}`;

function asked(options: unknown): string {
  const o = (options && typeof options === 'object' ? options : {}) as Record<string, unknown>;
  const parts = Object.entries(o)
    .filter(([, v]) => typeof v === 'string' || typeof v === 'number')
    .map(([k, v]) => `${k} ${String(v)}`);
  return parts.length ? parts.join(', ') : 'defaults';
}

function origin(i: ArticleDetailsInput): string {
  const { entry, parent } = i;
  if (entry.kind === 'revise') return `Revision of \`${entry.parentId ?? 'a deleted article'}\`, asked: “${entry.instruction ?? ''}”`;
  if (entry.kind === 'regenerate') {
    const of = parent?.kind === 'revise' || entry.instruction ? 'the revision' : 'the article';
    return `Regeneration of ${of} \`${entry.parentId ?? 'deleted'}\``;
  }
  return 'A first ask';
}

/** Net 👍/👎 counts each reader's latest rating once, as the preference pairs do. */
function feedbackLine(rows: readonly FeedbackRow[]): string {
  const latest = new Map<string, number>();
  for (const r of rows) if (r.kind === 'rating' && r.value !== null) latest.set(`${r.platform}:${r.userId}`, r.value);
  const up = [...latest.values()].filter((v) => v > 0).length;
  const down = latest.size - up;
  const edits = rows.filter((r) => r.kind === 'edit').length;
  const regens = rows.filter((r) => r.kind === 'regenerate').length;
  return `Feedback: ${up} 👍, ${down} 👎, ${plural(edits, 'suggested edit')}, ${plural(regens, 'Regenerate click')}`;
}

export function articleDetailsText(i: ArticleDetailsInput): string {
  const { entry } = i;
  const when = `${entry.startedAt.slice(0, 16).replace('T', ' ')} UTC`;
  const took = entry.durationMs !== null ? ` in ${(entry.durationMs / 1000).toFixed(1)} s` : '';
  const how = `${entry.outcome}${took}${entry.nChars !== null ? `, ${plural(entry.nChars, 'character')}` : ''}`;
  const later = i.children.map((c) => `\`${c.id}\` (${c.kind === 'revise' ? 'revision' : 'regeneration'})`);
  return [
    `Article \`${entry.id}\` on “${entry.topic}”`,
    `Asked by <@${entry.userId ?? 'unknown'}> on ${entry.platform}, ${when}; options: ${asked(entry.options)}`,
    origin(i),
    `Outcome: ${how}${entry.error ? ` (${entry.error})` : ''}`,
    lineageLine(i.columnist, i.lineage),
    feedbackLine(i.feedback),
    `Later versions: ${later.length ? later.join(', ') : 'none'}`,
  ].join('\n');
}
