/**
 * `npm test` on a fresh machine: chromium is installed by the test run when we are root, and
 * otherwise the browser tests are reported as skipped with the one command that enables them.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { ENABLE_COMMAND, ENSURE_SCRIPT, ensureChromium, type EnsureDeps } from './chromium.ts';

function deps(over: Partial<EnsureDeps> & { present?: boolean }): EnsureDeps & { logs: string[]; installs: number } {
  const logs: string[] = [];
  let present = over.present ?? false;
  const d = {
    logs,
    installs: 0,
    exists: () => present,
    isRoot: over.isRoot ?? (() => true),
    install: () => {
      d.installs++;
      const r = over.install?.() ?? { status: 0, output: '' };
      if (r.status === 0) present = true;
      return r;
    },
    log: (l: string) => logs.push(l),
  };
  return d;
}

describe('chromium for the browser tests', () => {
  it('present: used as it is', () => {
    const d = deps({ present: true });
    expect(ensureChromium(d, '/usr/bin/chromium')).toEqual({ available: true, path: '/usr/bin/chromium', installed: false });
    expect(d.installs).toBe(0);
  });

  it('missing, as root: installed by the test run, which says so', () => {
    const d = deps({});
    expect(ensureChromium(d, '/usr/bin/chromium')).toEqual({ available: true, path: '/usr/bin/chromium', installed: true });
    expect(d.installs).toBe(1);
    expect(d.logs.join('\n')).toMatch(/installing Debian's chromium/);
  });

  it('missing, not root: skipped with the reason and the one command that enables the tests', () => {
    const d = deps({ isRoot: () => false });
    const s = ensureChromium(d, '/usr/bin/chromium');
    expect(s).toEqual({ available: false, reason: expect.stringContaining(ENABLE_COMMAND) });
    expect(d.installs).toBe(0);
  });

  it('missing, install fails: skipped with what apt said', () => {
    const s = ensureChromium(deps({ install: () => ({ status: 100, output: 'E: Unable to locate package chromium' }) }), '/usr/bin/chromium');
    expect(s).toMatchObject({ available: false, reason: expect.stringMatching(/exit 100.*Unable to locate package chromium/) });
  });

  it('as a real non-root user: the setup reports the skip instead of failing, and the install script exits 0 with its advice', () => {
    const env = { PATH: process.env.PATH!, HOME: '/tmp', MORRIS_TEST_CHROMIUM: '/nonexistent/chromium' };
    const probe = spawnSync(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', "import { ensureChromium } from './tests/browser/chromium.ts'; console.log(JSON.stringify(ensureChromium()));"],
      { uid: 65534, gid: 65534, env, encoding: 'utf8', cwd: process.cwd() },
    );
    expect(probe.status, probe.stderr).toBe(0);
    const state = JSON.parse(probe.stdout.trim().split('\n').pop()!);
    expect(state).toEqual({ available: false, reason: expect.stringContaining('needs root') });
    expect(state.reason).toContain(ENABLE_COMMAND);
    const script = spawnSync('bash', [ENSURE_SCRIPT], { uid: 65534, gid: 65534, env: { ...env, CHROMIUM_PATH: '/nonexistent/chromium' }, encoding: 'utf8' });
    expect(script.status).toBe(0);
    expect(script.stderr).toContain('sudo apt-get install -y chromium');
  });
});
