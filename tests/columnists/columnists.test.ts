/**
 * Columnists as data: the repo's default voice loads from its folder, bad folders are reported
 * with the file and key at fault, an unknown name lists the known ones, and a new folder made by
 * `add` is flagged until its style guide is written.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig, type Config } from '../../src/config.ts';
import { addColumnist, listColumnistNames, loadAllColumnists, resolveColumnist } from '../../src/columnists/folder.ts';
import { assertColumnistUsable, checkAllColumnists, checkColumnist } from '../../src/columnists/check.ts';
import { COLUMNISTS_DIR, SOURCES_DIR, SYSTEM_PROMPT_FILE } from '../../src/paths.ts';
import { MorrisError } from '../../src/errors.ts';
import { checkConfigReferences } from '../../src/config-check.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

/** A columnists folder holding a copy of the repo's default voice. */
function tempRoot(): { root: string; config: Config } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-columnists-'));
  dirs.push(root);
  fs.cpSync(path.join(COLUMNISTS_DIR, 'morris'), path.join(root, 'morris'), { recursive: true });
  return { root, config: loadConfig({ MORRIS_COLUMNISTS_DIR: root }) };
}

function thrown(f: () => unknown): MorrisError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(MorrisError);
    return e as MorrisError;
  }
  throw new Error('expected an error');
}

describe('columnist folders', () => {
  it('the repo ships the default columnist, built from the files the single columnist used', () => {
    const c = resolveColumnist(undefined, loadConfig({}));
    expect(c.name).toBe('morris');
    expect(c.isDefault).toBe(true);
    expect(c.systemPromptFile).toBe(SYSTEM_PROMPT_FILE);
    expect(c.sourcesDir).toBe(SOURCES_DIR);
    expect(c.attribution).toBe('a veteran British telecoms columnist');
    expect(checkColumnist('morris', loadConfig({}))).toEqual({ name: 'morris', ok: true, problems: [], sources: ['lightreading-iain-morris', 'sample-archive'] });
  });

  it('settings left out come from the config; MORRIS_COLUMNIST still names the default voice', () => {
    const c = resolveColumnist('morris', loadConfig({ MORRIS_PROMOTE_MARGIN: '0.5', MORRIS_CRON_RETRAIN: '0 4 * * *', MORRIS_COLUMNIST: 'Someone' }));
    expect(c.settings).toEqual({ retrainMinNewExamples: 10, promoteMargin: 0.5, styleTolerance: 0.1, schedule: { rescrape: '0 3 * * 1', rebuild: 'off', retrain: '0 4 * * *' } });
    expect(c.attribution).toBe('Someone');
  });

  it("a columnist's own settings win over the config", () => {
    const { root, config } = tempRoot();
    addColumnist('house-style', config, { displayName: 'House Style', attribution: 'the house style' });
    const file = path.join(root, 'house-style', 'columnist.json');
    fs.writeFileSync(file, JSON.stringify({ displayName: 'House Style', attribution: 'the house style', gate: { margin: 0.2 }, schedule: { rescrape: 'off' }, retrain: { minNewExamples: 3 } }));
    const c = resolveColumnist('house-style', config);
    expect(c.settings).toMatchObject({ retrainMinNewExamples: 3, promoteMargin: 0.2, schedule: { rescrape: 'off', rebuild: 'off' } });
    expect(c.attribution).toBe('the house style');
  });

  it('an unknown name is a coded error listing the known ones', () => {
    const { config } = tempRoot();
    addColumnist('rival', config);
    const e = thrown(() => resolveColumnist('nobody', config));
    expect(e.code).toBe('UNKNOWN_COLUMNIST');
    expect(e.message).toBe('No columnist named "nobody". Known columnists: morris, rival.');
    expect(e.hint).toMatch(/morris columnists add nobody/);
    expect(thrown(() => resolveColumnist('../etc', config)).code).toBe('UNKNOWN_COLUMNIST');
  });

  it('a bad settings key is reported with the file and the key', () => {
    const { root, config } = tempRoot();
    const file = path.join(root, 'morris', 'columnist.json');
    fs.writeFileSync(file, JSON.stringify({ displayName: 'Morris', attribution: 'x', gate: { margin: -1 }, schedule: { retrain: '* * * * * *' }, colour: 'blue' }));
    const e = thrown(() => resolveColumnist('morris', config));
    expect(e.code).toBe('COLUMNIST_INVALID');
    expect(e.message).toContain(`${file}: gate.margin: `);
    expect(e.message).toContain(`${file}: schedule.retrain: expected a cron expression with five fields`);
    expect(e.message).toMatch(/colour/);
    fs.writeFileSync(file, '{ "displayName": ');
    expect(thrown(() => resolveColumnist('morris', config)).message).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} is not valid JSON`));
  });

  it('check reports a broken profile naming its file and key, and the other voices stay usable', () => {
    const { root, config } = tempRoot();
    addColumnist('rival', config, { displayName: 'The Rival' });
    fs.writeFileSync(path.join(root, 'rival', 'system-prompt.md'), 'You are the rival. Write briskly.\n');
    const profile = path.join(root, 'rival', 'sources', 'rival-site.json');
    fs.writeFileSync(profile, JSON.stringify({ name: 'rival-site', feeds: ['https://rival.test/feed'], keep: ['(unclosed'] }));
    const checks = checkAllColumnists(config);
    expect(checks.map((c) => [c.name, c.ok])).toEqual([['morris', true], ['rival', false]]);
    const rival = checks[1]!;
    expect(rival.problems).toHaveLength(1);
    expect(rival.problems[0]).toContain(`Invalid source profile ${profile}`);
    expect(rival.problems[0]).toContain('keep.0: expected a valid regular expression');
    expect(thrown(() => assertColumnistUsable('rival', config)).code).toBe('COLUMNIST_INVALID');
    expect(() => assertColumnistUsable('morris', config)).not.toThrow();
  });

  it('add makes a folder that check flags until its style guide is written', () => {
    const { root, config } = tempRoot();
    const dir = addColumnist('house-style', config, { displayName: 'House Style' });
    expect(dir).toBe(path.join(root, 'house-style'));
    expect(listColumnistNames(root)).toEqual(['house-style', 'morris']);
    expect(checkColumnist('house-style', config).problems).toEqual([`${path.join(dir, 'system-prompt.md')}: missing or empty: write the style guide the voice is trained and served with`]);
    fs.writeFileSync(path.join(dir, 'system-prompt.md'), 'You write the house style: plain, short, exact.\n');
    fs.writeFileSync(path.join(dir, 'extra-examples.jsonl'), '{"messages":[{"role":"assistant","content":"hi"},{"role":"user","content":"there"}]}\n');
    expect(checkColumnist('house-style', config).problems).toEqual([`${path.join(dir, 'extra-examples.jsonl')}:1: must start with user and end with assistant`]);
    expect(thrown(() => addColumnist('house-style', config)).code).toBe('BAD_INPUT');
    expect(thrown(() => addColumnist('House Style', config)).message).toMatch(/not a columnist name/);
  });

  it('MORRIS_COLUMNISTS_DIR must hold the default columnist; MORRIS_SOURCES is checked in its folder', () => {
    const { root, config } = tempRoot();
    expect(checkConfigReferences(config)).toEqual([]);
    expect(checkConfigReferences({ ...config, MORRIS_SOURCES: ['nope'] })[0]).toMatchObject({ key: 'MORRIS_SOURCES', expected: expect.stringContaining('there is no "nope"') });
    fs.rmSync(path.join(root, 'morris'), { recursive: true });
    expect(checkConfigReferences(config)).toEqual([
      { key: 'MORRIS_COLUMNISTS_DIR', value: root, expected: expect.stringContaining("the default columnist's folder morris/") },
    ]);
  });

  it('a folder without settings is listed as broken, never hiding the others', () => {
    const { root, config } = tempRoot();
    fs.mkdirSync(path.join(root, 'half-made'));
    const all = loadAllColumnists(config);
    expect(all.columnists.map((c) => c.name)).toEqual(['morris']);
    expect(all.broken.map((b) => [b.name, b.error.code, b.error.message])).toEqual([['half-made', 'COLUMNIST_INVALID', `${path.join(root, 'half-made', 'columnist.json')} is missing.`]]);
  });
});
