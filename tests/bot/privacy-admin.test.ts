/**
 * The bots' `forget <platform> <user-id>` admin command: refused (and audited) for non-admins
 * with nothing deleted; for an admin it deletes the person's data and audits both the command
 * and the deletion's counts.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Requester } from '../../src/bot/types.ts';
import type { Store } from '../../src/store/db.ts';
import { listFeedback } from '../../src/store/feedback.ts';
import { getGeneration } from '../../src/store/generations.ts';
import { seedTwoPeople } from '../store/privacy-seed.ts';
import { FakeGenerator } from './fakes/fake-generator.ts';
import { makeCore, recordingAdmin, tempStore } from './helpers.ts';

let t: ReturnType<typeof tempStore>;
let store: Store;
beforeEach(() => {
  t = tempStore();
  store = t.store;
  seedTwoPeople(store);
});
afterEach(() => t.cleanup());

const slackUser = (userId: string): Requester => ({ platform: 'slack', userId, channelId: 'C1' });
const auditRows = () => store.prepare('SELECT platform, user_id, command, args, allowed, outcome FROM audit_log ORDER BY id').all();

describe('admin forget', () => {
  it('refuses non-admins, deletes nothing, audits the attempt', async () => {
    const core = makeCore(store, new FakeGenerator(), {}, recordingAdmin());
    expect(await core.admin({ requester: slackUser('UNOBODY'), text: 'forget slack U1' })).toMatch(/admins only/);
    expect(listFeedback(store)).toHaveLength(8);
    expect(getGeneration(store, 'gA1')).toBeDefined();
    expect(auditRows()).toEqual([{ platform: 'slack', user_id: 'UNOBODY', command: 'forget', args: 'slack U1', allowed: 0, outcome: 'refused: not an admin' }]);
  });

  it("deletes the person's data for an admin and audits who, whom and the counts", async () => {
    const core = makeCore(store, new FakeGenerator(), {}, recordingAdmin());
    const out = await core.admin({ requester: slackUser('UADMIN'), text: 'forget slack U1' });
    expect(out).toContain('Deleted for slack user U1: 2 generations, 4 feedback given, 2 feedback on their articles, 2 message links');
    expect(getGeneration(store, 'gA1')).toBeUndefined();
    expect(getGeneration(store, 'gB2')).toMatchObject({ parentId: null });
    expect(listFeedback(store)).toHaveLength(2);
    expect(auditRows()).toEqual([
      {
        platform: 'slack',
        user_id: 'UADMIN',
        command: 'forget',
        args: 'slack U1',
        allowed: 1,
        outcome: 'deleted 2 generations, 4 feedback given, 2 feedback on their articles, 2 message links, 1 regeneration by others unlinked (kept)',
      },
      { platform: 'slack', user_id: 'UADMIN', command: 'forget', args: 'slack U1', allowed: 1, outcome: 'ok' },
    ]);
  });

  it('answers bad arguments with the syntax and deletes nothing', async () => {
    const core = makeCore(store, new FakeGenerator(), {}, recordingAdmin());
    expect(await core.admin({ requester: slackUser('UADMIN'), text: 'forget' })).toMatch(/needs a platform and a user id/);
    expect(await core.admin({ requester: slackUser('UADMIN'), text: 'forget irc U1' })).toMatch(/Unknown platform/);
    expect(await core.admin({ requester: slackUser('UADMIN'), text: 'dance' })).toContain('`forget <platform> <user-id>`');
    expect(listFeedback(store)).toHaveLength(8);
  });
});
