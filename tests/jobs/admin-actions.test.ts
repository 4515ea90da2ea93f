import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { COLUMNISTS_DIR } from '../../src/paths.ts';
import { columnistStates } from '../../src/jobs/voice-status.ts';
import { createAdminActions } from '../../src/jobs/admin-actions.ts';
import { JobControl } from '../../src/jobs/control.ts';
import { AdapterRegistry } from '../../src/jobs/registry.ts';
import { JobRunner } from '../../src/jobs/runner.ts';
import { getRun } from '../../src/store/job-runs.ts';
import type { TextGenerator } from '../../src/bot/types.ts';
import { deferred, tempStore } from './helpers.ts';

let t: ReturnType<typeof tempStore>;
beforeEach(() => (t = tempStore()));
afterEach(() => t.cleanup());

const generator: TextGenerator = {
  async *generate() {},
  info: async () => ({ backend: 'in-process', baseModel: 'tiny', adapterId: null, datasetId: null, details: 'model not loaded yet' }),
};

describe('admin actions (the bots\' /morris-admin commands)', () => {
  it('start jobs without waiting, refuse overlap, cancel by id, and promote/roll back', async () => {
    const gate = deferred();
    const runner = new JobRunner(t.store, {
      retrain: async (ctx) => {
        await Promise.race([gate.promise, new Promise((_, rej) => ctx.signal.addEventListener('abort', () => rej(ctx.signal.reason)))]);
        return { adapterId: 'x', summary: 'ok' };
      },
      evaluate: async () => ({ summary: 'e' }),
    });
    const registry = new AdapterRegistry(t.store);
    t.store.prepare(`INSERT INTO adapters (id, base_model, path, metrics) VALUES ('lora-1', 'tiny', '/x', '{"eval_loss": 2.25}')`).run();
    const admin = createAdminActions({ control: new JobControl(runner, { chain: true, minNewExamples: 1 }), registry, generator });
    const actor = { platform: 'slack' as const, userId: 'U1' };

    const first = await admin.retrain(actor);
    expect(first).toMatch(/^Started retrain: job #1\.$/);
    expect(getRun(t.store, 1).trigger).toBe('slack:U1');
    expect(await admin.retrain(actor)).toMatch(/^Not started: skipped: run #1 of retrain is still running/);
    expect(await admin.status(actor)).toMatch(/Running: #1 retrain running/);

    expect(await admin.cancel(actor, '#1')).toContain('Cancelling job #1 (retrain)');
    await expect(admin.cancel(actor, '99')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(admin.cancel(actor, 'abc')).rejects.toMatchObject({ code: 'BAD_INPUT' });

    expect(await admin.adapters(actor)).toContain('lora-1 candidate, val loss 2.2500');
    expect(await admin.promote(actor, 'lora-1')).toBe('Adapter lora-1 is active now (was the base model).');
    expect(await admin.adapters(actor)).toMatch(/^\* lora-1 active/);
    expect(await admin.rollback(actor)).toBe('Rolled back from lora-1; the base model answers now.');
    await expect(admin.promote(actor, 'nope')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    gate.resolve();
  });

  it("status has one line per voice: its adapter, last training and reader pairs, or why it does not load", async () => {
    const root = path.join(t.dir, 'columnists');
    fs.cpSync(path.join(COLUMNISTS_DIR, 'morris'), path.join(root, 'morris'), { recursive: true });
    fs.mkdirSync(path.join(root, 'broken'));
    fs.writeFileSync(path.join(root, 'broken', 'columnist.json'), '{"displayName": 3}');
    const config = loadConfig({ MORRIS_COLUMNISTS_DIR: root });
    const runner = new JobRunner(t.store, { retrain: async () => ({ adapterId: 'x', summary: 'trained' }) });
    await runner.run('retrain', { input: {} });
    const admin = createAdminActions({ control: new JobControl(runner, { chain: false, minNewExamples: 1 }), registry: new AdapterRegistry(t.store), generator, columnists: () => columnistStates(config, t.store) });
    const lines = (await admin.status({ platform: 'slack', userId: 'U1' })).split('\n');
    expect(lines.filter((l) => l.startsWith('Voice '))).toEqual([
      expect.stringMatching(/^Voice broken: does not load \(skipped by the scheduler\): .*displayName/),
      'Voice morris (default): adapter none, last train #1 succeeded, 0 reader pairs (0 new)',
    ]);
  });
});
