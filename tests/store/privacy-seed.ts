/**
 * Two people's data for the privacy tests: A (slack U1) and B (discord D1) asked for articles,
 * rated and edited each other's, and B regenerated one of A's articles.
 *
 *   gA1 (A)  ← gA2 (A regenerates)  ← gB2 (B regenerates gA1)      gB1 (B)
 *   feedback: B 👎 gA1, B edits gA2, A 👍 gA2, A 👎 gB2, B 👍 gB2, A 👍 gB1, A edits gB1, B edits gB1
 *   message links: gA1 ×2, gB1, gB2
 *
 * Pairs before: 3 edits (gA2 by B, gB1 by A, gB1 by B) + 1 rating pair in gA1's family (gA2 over
 * gA1) + 1 pick (gA2, rated up, over gB2, whose 👍 and 👎 cancel out) = 5. After forgetting A: only
 * B's edit of gB1 (gB2 is alone and rated up only) = 1. After forgetting B: A's 👍 on gA2 over
 * gA1, now unrated (a pick) = 1.
 */
import type { Store } from '../../src/store/db.ts';
import { linkArticleMessages, recordFeedback } from '../../src/store/feedback.ts';
import { closeGeneration, openGeneration } from '../../src/store/generations.ts';

export const A = { platform: 'slack', userId: 'U1' } as const;
export const B = { platform: 'discord', userId: 'D1' } as const;

export function seedTwoPeople(store: Store): void {
  const article = (id: string, who: { platform: string; userId: string }, text: string, parentId?: string) => {
    openGeneration(store, { id, requester: who, topic: `topic of ${id}`, parentId });
    closeGeneration(store, id, { outcome: 'ok', durationMs: 1, article: text, adapterId: 'a-1', datasetId: 'ds-1', baseModel: 'tiny' });
  };
  article('gA1', A, 'A asks, take one.');
  article('gA2', A, 'A asks, take two.', 'gA1');
  article('gB1', B, 'B asks about ferries.');
  article('gB2', B, 'B regenerates what A asked.', 'gA1');
  const fb = (generationId: string, who: { platform: string; userId: string }, kind: 'rating' | 'edit', v: 1 | -1 | string) =>
    recordFeedback(store, { generationId, kind, ...(kind === 'rating' ? { value: v as 1 | -1 } : { editedText: v as string }), ...who });
  fb('gA1', B, 'rating', -1);
  fb('gA2', B, 'edit', 'B rewrote take two.');
  fb('gA2', A, 'rating', 1);
  fb('gB2', A, 'rating', -1);
  fb('gB2', B, 'rating', 1);
  fb('gB1', A, 'rating', 1);
  fb('gB1', A, 'edit', 'A rewrote the ferries.');
  fb('gB1', B, 'edit', 'B rewrote the ferries.');
  linkArticleMessages(store, 'slack', ['m1', 'm2'], 'gA1');
  linkArticleMessages(store, 'discord', ['m3'], 'gB1');
  linkArticleMessages(store, 'discord', ['m4'], 'gB2');
}

/** The counts forgetting A gives for the seed above. */
export const FORGET_A_COUNTS = { generations: 2, feedbackGiven: 4, feedbackOnTheirArticles: 2, messageLinks: 2, regenerationsUnlinked: 1 };
