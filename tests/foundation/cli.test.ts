import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

const SUBCOMMANDS = ['demo', 'serve', 'scrape', 'dataset', 'train', 'generate', 'adapters', 'model', 'jobs', 'status', 'doctor'];

function morris(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, ['bin/morris.mjs', ...args], {
    encoding: 'utf8',
    env: { ...process.env, LOG_LEVEL: 'warn', ...env },
    timeout: 60_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('morris CLI', () => {
  it('--help lists every subcommand', () => {
    const r = morris(['--help']);
    expect(r.code).toBe(0);
    for (const c of SUBCOMMANDS) expect(r.out).toMatch(new RegExp(`^\\s+${c}\\b`, 'm'));
  });

  it('every subcommand has --help', () => {
    for (const c of SUBCOMMANDS) {
      const r = morris([c, '--help']);
      expect(r.code, `${c} --help: ${r.err}`).toBe(0);
      expect(r.out).toMatch(new RegExp(`Usage: morris ${c}`));
    }
  });

  it('a bad config value exits non-zero naming the key', () => {
    const r = morris(['doctor'], { PORT: 'notaport' });
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/PORT="notaport": expected a whole number/);
  });
});
