import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CONFIG_KEYS, loadConfig } from '../../src/config.ts';
import { MorrisError } from '../../src/errors.ts';

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
