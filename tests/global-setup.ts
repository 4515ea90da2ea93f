/**
 * Runs once before the suite: makes sure what the tests need outside npm is there (Debian's
 * chromium for the browser tests), and tells the test files through `inject('chromium')`.
 */
import type { TestProject } from 'vitest/node';
import { ensureChromium, type ChromiumState } from './browser/chromium.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    chromium: ChromiumState;
  }
}

export default function setup(project: TestProject): void {
  const state = ensureChromium();
  if (!state.available) process.stderr.write(`[test setup] browser tests will be skipped: ${state.reason}\n`);
  project.provide('chromium', state);
}
