import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// One suite for every layer (TESTING.md): pure engine, contract suites (embedded and AWS
// adapters), the local cloud, and the fault suites. The global setup starts the local cloud
// once; a missing emulator fails the run with the command that installs it.
export default defineConfig({
  // The examples import the public API by package name ('cairn'): in this checkout, the sources (tsconfig.json paths).
  resolve: { alias: [{ find: /^cairn$/, replacement: fileURLToPath(new URL('./shared/index.ts', import.meta.url)) }] },
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/cloud/global-setup.ts'],
    reporters: ['default', './test/summary-reporter.ts'],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    pool: 'forks',
    maxWorkers: 2,
  },
});
