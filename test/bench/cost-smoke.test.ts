import { inject, describe, expect, it } from 'vitest';
import { runCostBench, type CostBenchResult } from '../../bench/cost/cost-bench.js';
import { formatCostReport } from '../../bench/cost/report.js';

// `npm run bench:cost` at a tiny size on the suite's local cloud: the JSON has the documented
// shape (bench/README.md). No timing or cost assertions beyond "present and positive".
describe('bench:cost (smoke)', () => {
  let result: CostBenchResult;

  it('runs one example at one rate', async () => {
    result = await runCostBench(
      { examples: ['account-balance'], rates: [5], warmupSeconds: 2, seconds: 3, idleSeconds: 2, intervalMs: 1_000, modelledRates: [100, 1_000], endpoint: inject('cloudEndpoint') },
      'test',
    );
  });

  it('writes the documented JSON shape', () => {
    const json = JSON.parse(JSON.stringify(result)) as Record<string, unknown>;
    for (const key of [
      'date',
      'commit',
      'prices',
      'idleMonthlyUsd',
      'coordinatorMonthlyUsd',
      'perMillionUsd',
      'requestsPerThousand',
      'writeUnitsPerEvent',
      'storageBytesPerEventPerMonth',
      'measuredRates',
      'modelError',
    ])
      expect(json).toHaveProperty(key);
    expect(typeof json.date).toBe('string');
    expect((json.prices as { asOf: string }).asOf).toMatch(/^\d{4}-\d{2}-\d{2}/);
    expect(Object.keys(json.coordinatorMonthlyUsd as object)).toEqual(['1000', '60000']);
    const perMillion = json.perMillionUsd as Record<string, Record<string, number>>;
    expect(Object.keys(perMillion)).toEqual(['account-balance']);
    expect(Object.keys(perMillion['account-balance'] ?? {})).toEqual(['5', '100 (modelled)', '1000 (modelled)']);
    for (const v of Object.values(perMillion['account-balance'] ?? {})) expect(v).toBeGreaterThan(0);
    expect(result.measuredRates).toEqual([5]);
    expect(result.idleMonthlyUsd).toBeGreaterThan(0);
    // In process at 1 s (Route + Run per 10-min invocation); Run + Route + WaitForNext per checkpoint at 60 s.
    expect(result.coordinatorTransitionsPerCheckpoint['1000']).toBeLessThan(0.01);
    expect(result.coordinatorTransitionsPerCheckpoint['60000']).toBeCloseTo(3, 1);
    expect(result.coordinatorPlans['1000']?.mode).toBe('in-process');
    expect(result.coordinatorPlans['60000']?.mode).toBe('wait-state');
    expect(result.watchdog?.path).toEqual(['Init', 'Run', 'Route', 'Asleep']);
    expect(result.writeUnitsPerEvent['account-balance']?.['5']).toBeGreaterThan(0);
    expect(result.requestsPerThousand['account-balance']?.['5']).toBeGreaterThan(0);
    expect(Number.isFinite(result.modelError)).toBe(true);
  });

  it('formats the table', () => {
    const text = formatCostReport(result);
    expect(text).toContain('account-balance');
    expect(text).toContain('model');
    expect(text).toMatch(/1 s: waits slept in process/);
    expect(text).toMatch(/idle \(no events\): \$\d+\.\d\d\/month besides storage: watchdog every 10 min/);
  });
});
