/**
 * `morris privacy delete` as a person runs it (the real CLI, a real SQLite file in a temp data
 * dir): without --yes it prints the counts and deletes nothing; with --yes it deletes, prints
 * the same counts, and leaves an audit row.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openStore } from '../../src/store/db.ts';
import { listFeedback, preferencePairs } from '../../src/store/feedback.ts';
import { getGeneration } from '../../src/store/generations.ts';
import { seedTwoPeople } from './privacy-seed.ts';
import { runMorris } from '../morris-cli.ts';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function morris(args: string[], dataDir: string) {
  return runMorris(args, { env: { ...process.env, LOG_LEVEL: 'warn', MORRIS_DATA_DIR: dataDir } });
}

function seeded(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-privacy-cli-'));
  dirs.push(dir);
  const store = openStore(path.join(dir, 'morris.db'));
  seedTwoPeople(store);
  store.close();
  return dir;
}

function inspect(dir: string) {
  const store = openStore(path.join(dir, 'morris.db'));
  try {
    return {
      feedback: listFeedback(store).length,
      pairs: preferencePairs(store).length,
      gA1: getGeneration(store, 'gA1') !== undefined,
      gB2Parent: getGeneration(store, 'gB2')?.parentId ?? null,
      audit: store.prepare('SELECT platform, command, args, allowed, outcome FROM audit_log ORDER BY id').all() as Record<string, unknown>[],
    };
  } finally {
    store.close();
  }
}

const COUNTS = '2 generations, 4 feedback given, 2 feedback on their articles, 2 message links, 1 regeneration by others unlinked (kept)';

describe('morris privacy delete', () => {
  it('dry run prints what it would delete and deletes nothing; --yes deletes and audits', async () => {
    const dir = seeded();
    const dry = await morris(['privacy', 'delete', '--platform', 'slack', '--user', 'U1'], dir);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toContain(`Would delete for slack user U1: ${COUNTS}.`);
    expect(dry.stdout).toMatch(/Nothing was deleted; run again with --yes/);
    expect(inspect(dir)).toEqual({ feedback: 8, pairs: 5, gA1: true, gB2Parent: 'gA1', audit: [] });

    const real = await morris(['privacy', 'delete', '--platform', 'slack', '--user', 'U1', '--yes'], dir);
    expect(real.code, real.stderr).toBe(0);
    expect(real.stdout).toContain(`Deleted for slack user U1: ${COUNTS}.`);
    expect(inspect(dir)).toEqual({
      feedback: 2,
      pairs: 1,
      gA1: false,
      gB2Parent: null,
      audit: [{ platform: 'cli', command: 'privacy delete', args: 'slack U1', allowed: 1, outcome: `deleted ${COUNTS}` }],
    });

    // Running it again finds nothing left.
    const again = await morris(['privacy', 'delete', '--platform', 'slack', '--user', 'U1'], dir);
    expect(again.stdout).toContain('Would delete for slack user U1: 0 generations, 0 feedback given');
  });

  it('refuses an unknown platform with a hint and exit code 1, deleting nothing', async () => {
    const dir = seeded();
    const r = await morris(['privacy', 'delete', '--platform', 'irc', '--user', 'U1', '--yes'], dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Unknown platform "irc"/);
    expect(r.stderr).toMatch(/slack, discord, web/);
    expect(inspect(dir).feedback).toBe(8);
  });
});
