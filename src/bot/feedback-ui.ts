/**
 * What ends every finished article on a chat platform, as data: the lineage line (who and what
 * wrote it), the feedback controls' ids, and the article split into form fields no longer than a
 * platform's text-input limit. Pure; the Slack and Discord feedback modules build their
 * platform's blocks or components from these.
 */
import { splitMessage } from './render.ts';
import type { Lineage } from './types.ts';

/** Discord's text input holds at most 4,000 characters, and a modal at most 5 inputs. */
export const DISCORD_INPUT_MAX_CHARS = 4000;
export const DISCORD_MODAL_MAX_INPUTS = 5;
/** Slack's plain_text_input holds at most 3,000 characters; a modal takes up to 100 blocks. */
export const SLACK_INPUT_MAX_CHARS = 3000;
export const SLACK_MODAL_MAX_INPUTS = 20;
/** The parts of an article an edit form shows are joined back with this. */
export const EDIT_PART_SEPARATOR = '\n\n';

/** The controls under an article (Discord's row holds five buttons at most). */
export type FeedbackAction = 'up' | 'down' | 'regen' | 'edit' | 'details';
export const FEEDBACK_ACTIONS: readonly FeedbackAction[] = ['up', 'down', 'regen', 'edit', 'details'];

export const FEEDBACK_LABELS: Record<FeedbackAction, string> = {
  up: '👍',
  down: '👎',
  regen: 'Regenerate',
  edit: 'Suggest an edit',
  details: 'Details',
};

/** Discord custom ids carry the article: `morris:<action>:<generation id>` (well under 100 chars). */
export function feedbackCustomId(action: FeedbackAction | 'edit-form', generationId: string): string {
  return `morris:${action}:${generationId}`;
}

export function parseFeedbackCustomId(id: string): { action: FeedbackAction | 'edit-form'; generationId: string } | null {
  const m = /^morris:(up|down|regen|edit|details|edit-form):(g-[0-9a-f]+)$/.exec(id);
  return m ? { action: m[1] as FeedbackAction | 'edit-form', generationId: m[2]! } : null;
}

/**
 * "Columnist · adapter · base model · dataset": which voice and which model wrote an article, so a
 * reader's feedback (and a reader) can tell versions apart. Unknown parts say so.
 */
export function lineageLine(columnist: string, lineage: Lineage | undefined): string {
  return [
    `Columnist: ${lineage?.columnist ?? columnist}`,
    `adapter: ${lineage?.adapterId ?? 'none (base model)'}`,
    `base model: ${lineage?.baseModel ?? 'unknown'}`,
    `dataset: ${lineage?.datasetId ?? 'none'}${lineage?.datasetId && lineage.newestArticle ? ` (newest article ${lineage.newestArticle})` : ''}`,
  ].join(' · ');
}

/**
 * The article as the fields of an edit form: split at paragraph (then line, then word) breaks
 * into parts of at most `maxChars`, at most `maxInputs` of them (the last one takes what is left,
 * which the platform then truncates; articles that long are far beyond any length option).
 */
export function articleInputs(article: string, maxChars: number, maxInputs: number): string[] {
  const parts = splitMessage(article.trim(), maxChars);
  if (parts.length <= maxInputs) return parts;
  return [...parts.slice(0, maxInputs - 1), parts.slice(maxInputs - 1).join(EDIT_PART_SEPARATOR).slice(0, maxChars)];
}

/** A submitted edit form back into one text: the non-empty parts, in order. */
export function joinArticleInputs(values: readonly string[]): string {
  return values.map((v) => v.trim()).filter(Boolean).join(EDIT_PART_SEPARATOR);
}
