import { defineConfig } from 'vitest/config';

// The local-cloud layer (TESTING.md section 3): AWS SDK v3 clients against real
// emulators behind one edge endpoint, started once by the global setup.
export default defineConfig({
  test: {
    include: ['test/cloud/**/*.test.ts'],
    globalSetup: ['test/cloud/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    maxWorkers: 2,
  },
});
