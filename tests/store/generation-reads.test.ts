/**
 * The dashboard's reads of store/generations.ts and store/feedback.ts on a real SQLite file:
 * pages of generations newest first with their regenerations, and the feedback of a page of
 * articles in one call.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { feedbackFor, recordFeedback } from '../../src/store/feedback.ts';
import { closeGeneration, getGenerationEntry, listGenerations, openGeneration } from '../../src/store/generations.ts';
import { tempStore } from '../jobs/helpers.ts';

let t: ReturnType<typeof tempStore>;
beforeEach(() => (t = tempStore('morris-gen-reads-')));
afterEach(() => t.cleanup());

function article(id: string, startedAt: string, parentId?: string) {
  openGeneration(t.store, { id, requester: { platform: 'slack', userId: 'U1', channelId: 'C1' }, topic: `topic of ${id}`, parentId });
  closeGeneration(t.store, id, { outcome: 'ok', durationMs: 12, nChars: 5, article: `text ${id}`, adapterId: 'a-1', datasetId: 'ds-1', baseModel: 'tiny' });
  // Explicit times: rows opened in the same millisecond would tie.
  t.store.prepare('UPDATE generations SET started_at = ? WHERE id = ?').run(startedAt, id);
}

describe('generation reads', () => {
  it('lists generations newest first, a page at a time, with their regenerations', () => {
    article('g-a', '2026-12-01T10:00:00.000Z');
    article('g-b', '2026-12-01T11:00:00.000Z', 'g-a');
    article('g-c', '2026-12-01T12:00:00.000Z', 'g-a');
    article('g-d', '2026-12-01T13:00:00.000Z');
    const first = listGenerations(t.store, { limit: 2, offset: 0 });
    expect(first.total).toBe(4);
    expect(first.items.map((g) => g.id)).toEqual(['g-d', 'g-c']);
    expect(first.items[1]).toMatchObject({ parentId: 'g-a', durationMs: 12, nChars: 5, error: null, regenerations: [], article: 'text g-c', adapterId: 'a-1' });
    const second = listGenerations(t.store, { limit: 2, offset: 2 });
    expect(second.items.map((g) => g.id)).toEqual(['g-b', 'g-a']);
    expect(second.items[1]!.regenerations).toEqual(['g-b', 'g-c']);
    expect(listGenerations(t.store, { limit: 2, offset: 10 }).items).toEqual([]);
    expect(getGenerationEntry(t.store, 'g-a')).toMatchObject({ id: 'g-a', regenerations: ['g-b', 'g-c'] });
    expect(getGenerationEntry(t.store, 'g-none')).toBeUndefined();
  });

  it('reads the feedback of several articles at once, oldest first', () => {
    article('g-a', '2026-12-01T10:00:00.000Z');
    article('g-b', '2026-12-01T11:00:00.000Z');
    article('g-c', '2026-12-01T12:00:00.000Z');
    recordFeedback(t.store, { generationId: 'g-a', kind: 'rating', value: 1, platform: 'slack', userId: 'U2' });
    recordFeedback(t.store, { generationId: 'g-c', kind: 'edit', editedText: 'better', platform: 'discord', userId: 'D3' });
    recordFeedback(t.store, { generationId: 'g-a', kind: 'rating', value: -1, platform: 'slack', userId: 'U3' });
    expect(feedbackFor(t.store, ['g-a', 'g-c']).map((f) => [f.generationId, f.kind, f.value, f.userId])).toEqual([
      ['g-a', 'rating', 1, 'U2'],
      ['g-c', 'edit', null, 'D3'],
      ['g-a', 'rating', -1, 'U3'],
    ]);
    expect(feedbackFor(t.store, ['g-b'])).toEqual([]);
    expect(feedbackFor(t.store, [])).toEqual([]);
  });
});
