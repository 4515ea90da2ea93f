import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    setupFiles: ['tests/setup.ts'],
    // Installs what the suite needs beyond npm (chromium for the browser tests) or says why not.
    globalSetup: ['tests/global-setup.ts'],
    // Tests spawn real servers, SQLite files and ONNX sessions; 2 CI cores.
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
