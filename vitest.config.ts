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
    // Backstops only: runs end on progress deadlines (JobHost's stallMs: nothing processed and no
    // coordinator transition for N s), so a slow or loaded machine never fails a correct run.
    testTimeout: 600_000,
    hookTimeout: 600_000,
    pool: 'forks',
    maxWorkers: 2,
  },
});
