/**
 * `morris columnists list|show|add|check` and `--columnist` as a person runs them (each command
 * starts the whole CLI, so this runs few; the behaviour behind them is tested beside this file).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COLUMNISTS_DIR } from '../../src/paths.ts';
import { runMorris } from '../morris-cli.ts';

let dir: string;
let root: string;
let env: NodeJS.ProcessEnv;
const morris = (...args: string[]) => runMorris(args, { env, cwd: dir });

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-cli-columnists-'));
  root = path.join(dir, 'columnists');
  fs.cpSync(path.join(COLUMNISTS_DIR, 'morris'), path.join(root, 'morris'), { recursive: true });
  env = { PATH: process.env.PATH, HOME: dir, MORRIS_DATA_DIR: path.join(dir, 'data'), MORRIS_COLUMNISTS_DIR: root, LOG_LEVEL: 'warn' };
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('morris columnists', () => {
  it('adds a voice, reports what is broken in it by file and key, then lists and shows it', async () => {
    const added = await morris('columnists', 'add', 'rival', '--display-name', 'The Rival', '--attribution', 'a rival columnist');
    expect(added.code).toBe(0);
    expect(added.stdout).toContain(`Created ${path.join(root, 'rival')}.`);
    const profile = path.join(root, 'rival', 'sources', 'rival-blog.json');
    fs.writeFileSync(profile, JSON.stringify({ name: 'rival-blog', feeds: ['https://rival.test/feed'], maxPages: 0 }));

    const broken = await morris('columnists', 'check');
    expect(broken.code).toBe(1);
    expect(broken.stdout).toMatch(/^ok {6}morris \(2 source profiles\)$/m);
    expect(broken.stdout).toMatch(/^BROKEN {2}rival$/m);
    expect(broken.stdout).toContain(`${path.join(root, 'rival', 'system-prompt.md')}: missing or empty`);
    expect(broken.stdout).toContain(`Invalid source profile ${profile}`);
    expect(broken.stdout).toMatch(/maxPages: Too small/);

    fs.writeFileSync(path.join(root, 'rival', 'system-prompt.md'), 'You are the Rival: brisk and upbeat.\n');
    fs.writeFileSync(profile, JSON.stringify({ name: 'rival-blog', feeds: ['https://rival.test/feed'] }));
    const fixed = await morris('columnists', 'check');
    expect(fixed.stdout).toMatch(/^ok {6}rival \(1 source profile\)$/m);
    expect(fixed.code).toBe(0);

    const listed = await morris('columnists', 'list', '--json');
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.stdout)).toEqual({
      columnists: [
        { name: 'morris', displayName: 'Morris', default: true, articles: 0, latestDataset: null, activeAdapter: null },
        { name: 'rival', displayName: 'The Rival', default: false, articles: 0, latestDataset: null, activeAdapter: null },
      ],
      broken: [],
    });
    const shown = await morris('columnists', 'show', 'rival');
    expect(JSON.parse(shown.stdout)).toMatchObject({ name: 'rival', attribution: 'a rival columnist', sourceProfiles: ['rival-blog'], settings: { promoteMargin: 0.01 } });
  }, 120_000);

  it('an unknown --columnist is refused with the known ones, before any work', async () => {
    const r = await morris('scrape', '--columnist', 'nobody');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('No columnist named "nobody". Known columnists: morris, rival.');
    expect(r.stderr).toContain('morris columnists add nobody');
    const d = await morris('dataset', 'list', '--columnist', 'rival');
    expect(d.code).toBe(0);
    expect(d.stdout).toContain('No datasets yet.');
  }, 60_000);
});
