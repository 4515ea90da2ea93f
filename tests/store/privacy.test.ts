/**
 * Deleting one person's data (issue 16) on a real SQLite file: their generations, the feedback
 * they gave, feedback and message links on their articles go in one transaction, with the
 * preference pairs built on them; the other person's rows stay, and their regeneration of the
 * deleted person's article is kept but unlinked.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/store/db.ts';
import { articleForMessage, listFeedback, preferencePairs } from '../../src/store/feedback.ts';
import { generationFamily, getGeneration } from '../../src/store/generations.ts';
import { countPersonData, forgetPerson, parsePerson } from '../../src/store/privacy.ts';
import { A, B, FORGET_A_COUNTS, seedTwoPeople } from './privacy-seed.ts';

let dir: string;
let store: Store;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-privacy-'));
  store = openStore(path.join(dir, 'morris.db'));
  seedTwoPeople(store);
});
afterEach(() => {
  store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const auditRows = () => store.prepare('SELECT platform, user_id, command, args, allowed, outcome FROM audit_log ORDER BY id').all() as Record<string, unknown>[];

describe('forgetPerson', () => {
  it("deletes A's rows and the pairs built on them, keeps B's (exact counts), and audits", () => {
    expect(preferencePairs(store)).toHaveLength(5);
    expect(countPersonData(store, A)).toEqual(FORGET_A_COUNTS);
    expect(auditRows()).toEqual([]); // counting is not a deletion

    const counts = forgetPerson(store, A, { platform: 'cli', userId: 'ops', command: 'privacy delete' });
    expect(counts).toEqual(FORGET_A_COUNTS);

    expect(getGeneration(store, 'gA1')).toBeUndefined();
    expect(getGeneration(store, 'gA2')).toBeUndefined();
    expect(getGeneration(store, 'gB1')).toMatchObject({ userId: 'D1', parentId: null });
    // B's regeneration of A's article is B's: kept, its parent link cleared, a family of its own.
    expect(getGeneration(store, 'gB2')).toMatchObject({ userId: 'D1', parentId: null, article: 'B regenerates what A asked.' });
    expect(generationFamily(store, 'gB2').map((g) => g.id)).toEqual(['gB2']);

    const left = listFeedback(store);
    expect(left.map((f) => [f.generationId, f.userId, f.kind])).toEqual([
      ['gB2', 'D1', 'rating'],
      ['gB1', 'D1', 'edit'],
    ]);
    expect(left.some((f) => f.userId === 'U1')).toBe(false);
    expect(articleForMessage(store, 'slack', 'm1')).toBeUndefined();
    expect(articleForMessage(store, 'slack', 'm2')).toBeUndefined();
    expect(articleForMessage(store, 'discord', 'm3')).toBe('gB1');
    expect(articleForMessage(store, 'discord', 'm4')).toBe('gB2');

    // Pairs are derived: every pair touching A's articles or A's feedback is gone with the rows.
    const pairs = preferencePairs(store);
    expect(pairs).toEqual([expect.objectContaining({ source: 'edit', chosen: 'B rewrote the ferries.', rejectedId: 'gB1' })]);

    expect(auditRows()).toEqual([
      {
        platform: 'cli',
        user_id: 'ops',
        command: 'privacy delete',
        args: 'slack U1',
        allowed: 1,
        outcome: 'deleted 2 generations, 4 feedback given, 2 feedback on their articles, 2 message links, 1 regeneration by others unlinked (kept)',
      },
    ]);
    expect(countPersonData(store, A)).toEqual({ generations: 0, feedbackGiven: 0, feedbackOnTheirArticles: 0, messageLinks: 0, regenerationsUnlinked: 0 });
  });

  it('forgetting B instead leaves all of A (symmetry: counts from the other side)', () => {
    const counts = forgetPerson(store, B, { platform: 'slack', userId: 'UADMIN', command: 'forget' });
    expect(counts).toEqual({ generations: 2, feedbackGiven: 4, feedbackOnTheirArticles: 3, messageLinks: 2, regenerationsUnlinked: 0 });
    expect(listFeedback(store).map((f) => [f.generationId, f.userId])).toEqual([['gA2', 'U1']]);
    expect(getGeneration(store, 'gA2')).toMatchObject({ parentId: 'gA1' });
    // A's own 👍 on the second take still prefers it to the (now unrated) first: a pick.
    expect(preferencePairs(store)).toEqual([expect.objectContaining({ source: 'pick', chosenId: 'gA2', rejectedId: 'gA1' })]);
  });

  it('a person with no data deletes nothing but is still audited', () => {
    expect(forgetPerson(store, { platform: 'web', userId: 'nobody' }, { platform: 'cli', userId: null, command: 'privacy delete' })).toEqual({
      generations: 0,
      feedbackGiven: 0,
      feedbackOnTheirArticles: 0,
      messageLinks: 0,
      regenerationsUnlinked: 0,
    });
    expect(listFeedback(store)).toHaveLength(8);
    expect(auditRows()).toHaveLength(1);
  });

  it('rejects an unknown platform or a missing user id with a coded error and a hint', () => {
    expect(() => parsePerson('irc', 'x')).toThrow(expect.objectContaining({ code: 'BAD_INPUT', hint: expect.stringMatching(/slack, discord, web/) }));
    expect(() => parsePerson('slack', ' ')).toThrow(expect.objectContaining({ code: 'BAD_INPUT' }));
    expect(parsePerson('Slack', 'U1')).toEqual({ platform: 'slack', userId: 'U1' });
  });
});
