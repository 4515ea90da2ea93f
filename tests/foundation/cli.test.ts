import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runMorris } from '../morris-cli.ts';

const SUBCOMMANDS = ['demo', 'serve', 'scrape', 'dataset', 'train', 'generate', 'adapters', 'model', 'jobs', 'status', 'doctor'];

async function morris(args: string[], env: Record<string, string> = {}) {
  const r = await runMorris(args, { env: { ...process.env, LOG_LEVEL: 'warn', ...env } });
  return { code: r.code, out: r.stdout, err: r.stderr };
}

describe('morris CLI', () => {
  it('--help lists every subcommand', async () => {
    const r = await morris(['--help']);
    expect(r.code).toBe(0);
    for (const c of SUBCOMMANDS) expect(r.out).toMatch(new RegExp(`^\\s+${c}\\b`, 'm'));
  });

  it('every subcommand has --help', async () => {
    for (const c of SUBCOMMANDS) {
      const r = await morris([c, '--help']);
      expect(r.code, `${c} --help: ${r.err}`).toBe(0);
      expect(r.out).toMatch(new RegExp(`Usage: morris ${c}`));
    }
  }, 180_000); // eleven Node starts, one after another: about 40 s on a loaded 2-core machine

  it('doctor prints the host facts and exits 0', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-doctor-'));
    const r = await morris(['doctor'], { MORRIS_DATA_DIR: dataDir, MORRIS_BASE_MODEL: path.join(dataDir, 'no-model'), MORRIS_DECODE_KERNEL: 'auto' });
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(new RegExp(`Node.js ${process.versions.node}`));
    expect(r.out).toMatch(/\+ cpu\s+always available/);
    expect(r.out).toMatch(/device: auto → would use cpu/);
    expect(r.out).toMatch(/schema version \d+ of \d+/);
    expect(r.out).toMatch(/slack: not configured/);
    // The default HOST is public and no admin token is set: doctor warns and says what to do.
    expect(r.out).toMatch(/warn dashboard: 0\.0\.0\.0:3000 is reachable from other machines and MORRIS_ADMIN_TOKEN is not set.*MORRIS_DASHBOARD_PORT/);
    expect(r.out).toMatch(/base model .*no-model not present/);
    // CI builds the native kernel (npm run build:native), so auto picks it
    // (a warning, still native, where transparent huge pages are off)
    expect(r.out).toMatch(/(ok {3}|warn )decode kernel: native-(avx512|avx2|scalar) \(MORRIS_DECODE_KERNEL=auto/);
    const json = JSON.parse(
      (await morris(['doctor', '--json'], { MORRIS_DATA_DIR: dataDir, SLACK_BOT_TOKEN: 'xoxb-1', SLACK_APP_TOKEN: 'xapp-1', MORRIS_DECODE_KERNEL: 'onnx', MORRIS_NATIVE_ISA: 'scalar' })).out,
    );
    expect(json.bots.slack).toBe('configured (Socket Mode)');
    expect(json.web.ok).toBe(false);
    const guarded = JSON.parse((await morris(['doctor', '--json'], { MORRIS_DATA_DIR: dataDir, MORRIS_DASHBOARD_PORT: '3001', MORRIS_DECODE_KERNEL: 'onnx' })).out);
    expect(guarded.web).toEqual({ ok: true, note: expect.stringMatching(/^127\.0\.0\.1:3001 \(its own listener.*answers only on this machine$/) });
    expect(json.database.schemaVersion).toBe(json.database.latest);
    const { hugePages, ...kernel } = json.decodeKernel;
    expect(kernel).toEqual({ setting: 'onnx', built: true, isa: 'scalar', reason: null, wouldUse: 'onnx' });
    expect(hugePages === null || ['always', 'madvise', 'never'].includes(hugePages)).toBe(true);
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('a bad config value exits non-zero naming the key', async () => {
    const r = await morris(['doctor'], { PORT: 'notaport' });
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/PORT="notaport": expected a whole number/);
  });
});
