/**
 * Debian's chromium for the dashboard's browser tests. `npm test` on a fresh machine must pass by
 * itself: the global setup (tests/global-setup.ts) calls `ensureChromium` once, which installs the
 * browser with scripts/ensure-chromium.sh when it is missing and we are root, and otherwise
 * returns the reason and the one command that enables the tests — the browser tests then report
 * themselves as skipped with that note, never as failures and never silently.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export const CHROMIUM = process.env.MORRIS_TEST_CHROMIUM ?? '/usr/bin/chromium';
export const ENSURE_SCRIPT = path.resolve(import.meta.dirname, '..', '..', 'scripts', 'ensure-chromium.sh');
/** What a non-root user runs to enable the browser tests. */
export const ENABLE_COMMAND = `sudo bash ${path.relative(process.cwd(), ENSURE_SCRIPT) || ENSURE_SCRIPT}`;

export type ChromiumState = { available: true; path: string; installed: boolean } | { available: false; reason: string };

export interface EnsureDeps {
  exists(p: string): boolean;
  isRoot(): boolean;
  /** Runs the install script; returns its exit status and what it printed. */
  install(): { status: number | null; output: string };
  log(line: string): void;
}

const realDeps: EnsureDeps = {
  exists: (p) => fs.existsSync(p),
  isRoot: () => process.getuid?.() === 0,
  install: () => {
    const r = spawnSync('bash', [ENSURE_SCRIPT], { encoding: 'utf8', env: { ...process.env, CHROMIUM_PATH: CHROMIUM } });
    return { status: r.status, output: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() };
  },
  log: (line) => process.stderr.write(`${line}\n`),
};

export function ensureChromium(deps: EnsureDeps = realDeps, chromiumPath = CHROMIUM): ChromiumState {
  if (deps.exists(chromiumPath)) return { available: true, path: chromiumPath, installed: false };
  if (!deps.isRoot()) {
    return {
      available: false,
      reason: `${chromiumPath} is missing and installing it needs root; to run the browser tests: ${ENABLE_COMMAND}`,
    };
  }
  deps.log(`[test setup] ${chromiumPath} is missing: installing Debian's chromium for the browser tests (scripts/ensure-chromium.sh)…`);
  const r = deps.install();
  if (r.status === 0 && deps.exists(chromiumPath)) {
    deps.log('[test setup] chromium installed.');
    return { available: true, path: chromiumPath, installed: true };
  }
  return {
    available: false,
    reason: `installing chromium failed (exit ${r.status}): ${r.output.split('\n').slice(-3).join(' ')}; fix that, then: ${ENABLE_COMMAND}`,
  };
}

/**
 * The flags the browser tests launch it with, known to work on these machines: no sandbox as
 * root, no GPU, no calls home.
 */
export const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];
