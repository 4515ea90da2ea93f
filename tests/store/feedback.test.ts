/**
 * store/feedback.ts on a real SQLite file: signals recorded with who clicked and which model
 * wrote the article, and the preference pairs derived from them (edits, 👍 vs 👎 within one
 * request's regenerations, picks).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/store/db.ts';
import { feedbackStats, listFeedback, preferencePairs, recordFeedback, linkArticleMessages, articleForMessage } from '../../src/store/feedback.ts';
import { askedFor, closeGeneration, generationFamily, getGeneration, openGeneration } from '../../src/store/generations.ts';

let dir: string;
let store: Store;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-feedback-'));
  store = openStore(path.join(dir, 'morris.db'));
});
afterEach(() => {
  store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A finished article `id` about `topic`, optionally regenerating `parentId`. */
function article(id: string, text: string, opts: { parentId?: string; adapterId?: string; topic?: string } = {}) {
  openGeneration(store, { id, requester: { platform: 'discord', userId: 'asker' }, topic: opts.topic ?? 'late trains', options: { length: 'short' }, parentId: opts.parentId });
  closeGeneration(store, id, { outcome: 'ok', durationMs: 5, article: text, adapterId: opts.adapterId ?? 'a-1', datasetId: 'ds-1', baseModel: 'tiny' });
}

const rate = (generationId: string, userId: string, value: 1 | -1) => recordFeedback(store, { generationId, kind: 'rating', value, platform: 'discord', userId });

describe('feedback store', () => {
  it('keeps the article text, options and lineage of each generation', () => {
    article('g-01', 'First take.');
    article('g-02', 'Second take.', { parentId: 'g-01' });
    article('g-03', 'Third take.', { parentId: 'g-02' });
    expect(getGeneration(store, 'g-02')).toMatchObject({ article: 'Second take.', options: { length: 'short' }, parentId: 'g-01', adapterId: 'a-1' });
    expect(generationFamily(store, 'g-03').map((g) => g.id)).toEqual(['g-01', 'g-02', 'g-03']);
    expect(generationFamily(store, 'g-01').map((g) => g.id)).toEqual(['g-01', 'g-02', 'g-03']);
  });

  it('records the clicker, platform, adapter and dataset with every signal; unknown articles are refused', () => {
    article('g-0a', 'Text.', { adapterId: 'a-7' });
    rate('g-0a', 'someone-else', 1);
    expect(listFeedback(store)).toEqual([
      expect.objectContaining({ generationId: 'g-0a', kind: 'rating', value: 1, platform: 'discord', userId: 'someone-else', adapterId: 'a-7', datasetId: 'ds-1' }),
    ]);
    expect(() => rate('g-ffff', 'u', 1)).toThrow(/No article g-ffff/);
    expect(() => recordFeedback(store, { generationId: 'g-0a', kind: 'edit', editedText: '  ', platform: 'slack', userId: 'u' })).toThrow(/needs the edited text/);
  });

  it('an edit is a pair: chosen = the reader’s text, rejected = the article', () => {
    article('g-10', 'The original column.');
    recordFeedback(store, { generationId: 'g-10', kind: 'edit', editedText: 'The better column.', platform: 'slack', userId: 'u1' });
    expect(preferencePairs(store)).toEqual([
      { topic: 'late trains', chosen: 'The better column.', rejected: 'The original column.', source: 'edit', rejectedId: 'g-10', chosenId: null, familyId: 'g-10' },
    ]);
  });

  it('👍 vs 👎 within one request and its regenerations is a pair; across requests it is not', () => {
    article('g-20', 'Bad first go.');
    article('g-21', 'Good second go.', { parentId: 'g-20' });
    article('g-30', 'Unrelated, liked.', { topic: 'roaming' });
    rate('g-20', 'u1', -1);
    rate('g-21', 'u2', 1);
    rate('g-30', 'u1', 1);
    // A change of mind counts once: u3 liked g-20, then disliked it.
    rate('g-20', 'u3', 1);
    rate('g-20', 'u3', -1);
    expect(preferencePairs(store)).toEqual([
      { topic: 'late trains', chosen: 'Good second go.', rejected: 'Bad first go.', source: 'rating', chosenId: 'g-21', rejectedId: 'g-20', familyId: 'g-20' },
    ]);
    expect(feedbackStats(store)).toMatchObject({ ratings: { up: 3, down: 2 }, pairs: { total: 1, rating: 1, edit: 0, pick: 0 } });
  });

  it('a pick prefers the picked article over its unrated siblings', () => {
    article('g-40', 'One.');
    article('g-41', 'Two.', { parentId: 'g-40' });
    recordFeedback(store, { generationId: 'g-41', kind: 'pick', platform: 'discord', userId: 'u1' });
    expect(preferencePairs(store).map((p) => [p.source, p.chosen, p.rejected])).toEqual([['pick', 'Two.', 'One.']]);
  });

  it('regenerate, then 👍 on one take and nothing (or a cancelled-out vote) on the others, is a pick', () => {
    article('g-60', 'First.');
    article('g-61', 'Second.', { parentId: 'g-60' });
    article('g-62', 'Third.', { parentId: 'g-60' });
    rate('g-61', 'u1', 1);
    rate('g-62', 'u1', 1);
    rate('g-62', 'u2', -1);
    expect(preferencePairs(store).map((p) => [p.source, p.chosenId, p.rejectedId])).toEqual([
      ['pick', 'g-61', 'g-60'],
      ['pick', 'g-61', 'g-62'],
    ]);
    // A lone article rated up has no alternative to be preferred over.
    article('g-70', 'Alone.', { topic: 'roaming' });
    rate('g-70', 'u1', 1);
    expect(preferencePairs(store)).toHaveLength(2);
  });

  it('a revision is a request of its own: its takes pair with each other under the revision prompt, never with the article revised', () => {
    article('g-80', 'The long original.');
    openGeneration(store, { id: 'g-81', requester: { platform: 'slack', userId: 'u1' }, topic: 'late trains', parentId: 'g-80', kind: 'revise', instruction: 'shorter' });
    closeGeneration(store, 'g-81', { outcome: 'ok', durationMs: 1, article: 'Short one.' });
    openGeneration(store, { id: 'g-82', requester: { platform: 'slack', userId: 'u1' }, topic: 'late trains', parentId: 'g-81', kind: 'regenerate', instruction: 'shorter' });
    closeGeneration(store, 'g-82', { outcome: 'ok', durationMs: 1, article: 'Short two.' });
    expect(generationFamily(store, 'g-82').map((g) => g.id)).toEqual(['g-81', 'g-82']);
    expect(generationFamily(store, 'g-80').map((g) => g.id)).toEqual(['g-80']);
    expect(askedFor(store, 'g-82')).toEqual({ topic: 'late trains', revision: { previousArticle: 'The long original.', instruction: 'shorter' } });
    expect(askedFor(store, 'g-80')).toEqual({ topic: 'late trains' });
    rate('g-80', 'u1', -1);
    rate('g-81', 'u1', -1);
    rate('g-82', 'u1', 1);
    expect(preferencePairs(store)).toEqual([
      {
        topic: 'late trains',
        revision: { previousArticle: 'The long original.', instruction: 'shorter' },
        chosen: 'Short two.',
        rejected: 'Short one.',
        source: 'rating',
        chosenId: 'g-82',
        rejectedId: 'g-81',
        familyId: 'g-81',
      },
    ]);
  });

  it('maps platform messages to the article they show', () => {
    article('g-50', 'Long one.');
    linkArticleMessages(store, 'discord', ['m1', 'm2'], 'g-50');
    expect(articleForMessage(store, 'discord', 'm2')).toBe('g-50');
    expect(articleForMessage(store, 'slack', 'm2')).toBeUndefined();
  });
});
