import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONFIG_KEYS, loadConfig } from '../../src/config.ts';
import { checkListenHost, checkSources, checkTrainConfigFile } from '../../src/config-check.ts';
import { startServe } from '../../src/serve/start.ts';
import { MorrisError } from '../../src/errors.ts';
import { runMorris } from '../morris-cli.ts';

describe('config', () => {
  it('fills defaults and freezes the result', () => {
    const c = loadConfig({});
    expect(c.PORT).toBe(3000);
    expect(c.MORRIS_DATA_DIR).toBe('data');
    expect(c.dbPath.endsWith('data/morris.db')).toBe(true);
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('treats empty values as unset and parses lists', () => {
    const c = loadConfig({ PORT: '', MORRIS_SLACK_ADMINS: 'U1, U2,,' });
    expect(c.PORT).toBe(3000);
    expect(c.MORRIS_SLACK_ADMINS).toEqual(['U1', 'U2']);
  });

  it('names every bad key and what it expects', () => {
    let err: unknown;
    try {
      loadConfig({ PORT: 'notaport', LOG_LEVEL: 'loud', MORRIS_CRON_RETRAIN: 'every day' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MorrisError);
    const e = err as MorrisError;
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.message).toMatch(/PORT="notaport": expected a whole number from 0 to 65535/);
    expect(e.message).toMatch(/LOG_LEVEL="loud"/);
    expect(e.message).toMatch(/MORRIS_CRON_RETRAIN="every day": expected a cron expression/);
    expect(e.hint).toMatch(/\.env\.example/);
  });

  it('.env.example lists every key the schema knows, each with a comment', () => {
    const example = fs.readFileSync('.env.example', 'utf8');
    const lines = example.split('\n');
    for (const key of CONFIG_KEYS) {
      const i = lines.findIndex((l) => l.replace(/^#\s*/, '').startsWith(`${key}=`));
      expect(i, `${key} missing from .env.example`).toBeGreaterThan(0);
      expect(lines[i - 1]!.startsWith('#'), `${key} needs a comment above it`).toBe(true);
    }
  });
});

describe('config: refused at start, naming the key', () => {
  const cronText = 'five fields: minute hour day-of-month month day-of-week';
  const errorOf = (fn: () => unknown): MorrisError => {
    try {
      fn();
    } catch (e) {
      return e as MorrisError;
    }
    throw new Error('expected an error');
  };

  it('cron expressions have exactly five fields: the seconds form node-cron also takes is refused', () => {
    const e = errorOf(() => loadConfig({ MORRIS_CRON_REBUILD: '* * * * * *', MORRIS_CRON_TZ: 'Mars/Olympus' }));
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.message).toContain(`MORRIS_CRON_REBUILD="* * * * * *": expected a cron expression with ${cronText}`);
    expect(e.message).toMatch(/MORRIS_CRON_TZ="Mars\/Olympus": expected an IANA time zone/);
    expect(errorOf(() => loadConfig({ MORRIS_CRON_RETRAIN: '61 * * * *' })).message).toMatch(/MORRIS_CRON_RETRAIN="61 \* \* \* \*"/);
    const ok = loadConfig({ MORRIS_CRON_RESCRAPE: '*/15 3 * * 1-5', MORRIS_CRON_REBUILD: 'off', MORRIS_CRON_RETRAIN: ' 0 4 1 * * ' });
    expect(ok.MORRIS_CRON_RESCRAPE).toBe('*/15 3 * * 1-5');
  });

  it('MORRIS_SOURCES names profiles that exist, with the base URL they need', () => {
    expect(checkSources(['lightreading-iain-morris', 'sample-archive=http://127.0.0.1:8080'])).toEqual([]);
    const problems = checkSources(['nosuchprofile', 'sample-archive']);
    expect(problems.map((p) => p.key)).toEqual(['MORRIS_SOURCES', 'MORRIS_SOURCES']);
    expect(problems[0]!.expected).toMatch(/there is no "nosuchprofile" \(known: .*sample-archive/);
    expect(problems[1]!.expected).toMatch(/profile "sample-archive" is written for a base URL: give it as sample-archive=http/);
  });

  it('MORRIS_TRAIN_CONFIG names an existing file of valid training settings', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-config-'));
    try {
      expect(checkTrainConfigFile(path.join(dir, 'missing.json'))).toMatchObject({ key: 'MORRIS_TRAIN_CONFIG', expected: expect.stringMatching(/there is no such file/) });
      fs.writeFileSync(path.join(dir, 'list.json'), '[1]');
      expect(checkTrainConfigFile(path.join(dir, 'list.json'))?.expected).toMatch(/a JSON object/);
      fs.writeFileSync(path.join(dir, 'typo.json'), '{"rnak": 8}');
      expect(checkTrainConfigFile(path.join(dir, 'typo.json'))?.expected).toMatch(/valid training settings/);
      fs.writeFileSync(path.join(dir, 'ok.json'), '{"rank": 8, "lr": 0.0002}');
      expect(checkTrainConfigFile(path.join(dir, 'ok.json'))).toBeNull();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('HOST must resolve to an address of this machine', async () => {
    expect(await checkListenHost('127.0.0.1')).toBeNull();
    expect(await checkListenHost('localhost')).toBeNull();
    expect(await checkListenHost('999.1.1.1')).toMatchObject({ key: 'HOST', value: '999.1.1.1', expected: expect.stringMatching(/IPv4 address/) });
    // TEST-NET-1 (RFC 5737): a valid address that is no interface of this machine.
    expect(await checkListenHost('192.0.2.1', '--host')).toMatchObject({ key: '--host', expected: expect.stringMatching(/not one/) });
  });

  it('startServe refuses every bad key before it opens or starts anything', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-config-'));
    try {
      const config = loadConfig({ MORRIS_DATA_DIR: dir, HOST: '999.1.1.1', MORRIS_SOURCES: 'nosuchprofile', MORRIS_TRAIN_CONFIG: path.join(dir, 'train.json') });
      const e = await startServe({ config, port: 0, bots: false }).then(
        () => null,
        (x: unknown) => x as MorrisError,
      );
      expect(e?.code).toBe('CONFIG_INVALID');
      expect(e!.message).toMatch(/^ {2}MORRIS_TRAIN_CONFIG=".*train\.json": expected an existing JSON file/m);
      expect(e!.message).toMatch(/^ {2}MORRIS_SOURCES="nosuchprofile": expected names of source profiles/m);
      expect(e!.message).toMatch(/^ {2}HOST="999\.1\.1\.1": expected an IPv4 address/m);
      expect(fs.existsSync(config.dbPath)).toBe(false);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('`morris serve` through the real CLI stops at start with CONFIG_INVALID naming the key', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-config-cli-'));
    const serve = async (env: Record<string, string>) => {
      // No bots, no model: nothing but the config may stop it, and a working config would keep it running.
      const r = await runMorris(['serve', '--port', '0'], {
        env: { PATH: process.env.PATH ?? '', HOME: dir, LOG_LEVEL: 'warn', MORRIS_DATA_DIR: dir, MORRIS_BASE_MODEL: path.join(dir, 'none'), ...env },
      });
      return { code: r.code, err: r.stderr };
    };
    try {
      const cron = await serve({ MORRIS_CRON_REBUILD: '* * * * * *' });
      expect(cron.code, cron.err).toBe(78);
      expect(cron.err).toContain(`MORRIS_CRON_REBUILD="* * * * * *": expected a cron expression with ${cronText}`);
      const source = await serve({ MORRIS_SOURCES: 'nosuchprofile' });
      expect(source.code, source.err).toBe(78);
      expect(source.err).toMatch(/MORRIS_SOURCES="nosuchprofile": expected names of source profiles/);
      const train = await serve({ MORRIS_TRAIN_CONFIG: path.join(dir, 'missing.json') });
      expect(train.code, train.err).toBe(78);
      expect(train.err).toMatch(/MORRIS_TRAIN_CONFIG=".*missing\.json": expected an existing JSON file/);
      const host = await serve({ HOST: '999.1.1.1' });
      expect(host.code, host.err).toBe(78);
      expect(host.err).toMatch(/HOST="999\.1\.1\.1": expected an IPv4 address/);
      expect(host.err).not.toMatch(/Unexpected error|ENOTFOUND/);
      expect(fs.existsSync(path.join(dir, 'morris.db'))).toBe(false);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
