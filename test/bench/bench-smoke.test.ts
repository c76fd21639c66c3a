import { describe, expect, it } from 'vitest';
import { formatReport } from '../../bench/report.js';
import { runSuite, type SuiteResult } from '../../bench/suite.js';

// The benchmark at a tiny size: well-formed results, every configuration present. Never timing
// assertions (2 shared cores): only that the numbers exist and are positive.
describe('bench (smoke)', () => {
  let result: SuiteResult;

  it('runs every configuration at a tiny size', async () => {
    result = await runSuite({
      smallKeys: 1_000,
      largeKeys: 5_000,
      changedPerEpoch: 100,
      epochs: 2,
      warmupEpochs: 1,
      baselineOff: true,
      events: 2_000,
      warmupEvents: 0,
      intervalMs: 1_000,
      example: 'account-balance',
      inMemory: true,
      repeats: 1,
    });
    expect(result.machine.cores).toBeGreaterThan(0);
    expect(result.machine.node).toMatch(/^v\d+/);
  });

  it('measures checkpoint cost for both state sizes, with and without checkpointing', () => {
    const { small, large, smallOff, largeOff, ratios } = result.cost;
    expect([small.keys, large.keys]).toEqual([1_000, 5_000]);
    for (const c of [small, large]) {
      expect(c.checkpointing).toBe(true);
      expect(c.liveKeys).toBe(c.keys);
      expect(c.samples).toHaveLength(2);
      expect(c.mean.checkpointMs).toBeGreaterThan(0);
      expect(c.mean.checkpointWithPruneMs).toBeGreaterThan(0);
      expect(c.mean.bytes).toBeGreaterThan(0);
      expect(c.mean.checkpointBytes).toBeGreaterThan(0);
      expect(c.mean.stateBytes).toBeGreaterThan(0);
      expect(c.mean.bytesDuringCheckpoint).toBeGreaterThan(0);
      expect(c.preloadBytes).toBeGreaterThan(0);
      for (const s of c.samples) expect(Object.values(s.tables).reduce((a, b) => a + b, 0)).toBe(s.bytes);
    }
    for (const c of [smallOff, largeOff]) {
      expect(c?.checkpointing).toBe(false);
      expect(c?.mean.checkpointBytes).toBe(0);
      expect(c?.mean.stateBytes).toBeGreaterThan(0);
    }
    for (const ratio of Object.values(ratios)) expect(ratio).toBeGreaterThan(0);
  });

  it('measures throughput with checkpointing on and off, durable and in memory', () => {
    expect(result.throughput.map((p) => p.durable)).toEqual([true, false]);
    for (const pair of result.throughput) {
      expect(pair.on.checkpointing).toBe(true);
      expect(pair.off.checkpointing).toBe(false);
      for (const r of [pair.on, pair.off]) {
        expect(r.events).toBe(2_000);
        expect(r.eventsPerSec).toBeGreaterThan(0);
        expect(r.checkpointsCompleted).toBeGreaterThanOrEqual(1);
        expect(r.sinkRecords).toBeGreaterThanOrEqual(2_000);
        expect(r.bytesWritten).toBeGreaterThan(0);
      }
      expect(pair.ratio).toBeGreaterThan(0);
      expect(pair.processingRatio).toBeGreaterThan(0);
      expect(pair.runs.on).toHaveLength(1);
    }
  });

  it('formats a report with both sections', () => {
    const text = formatReport(result);
    expect(text).toContain('1. Checkpoint cost vs total state');
    expect(text).toContain('2. Throughput');
    expect(text).toMatch(/ratio < 1\.5: checkpoint duration: (yes|NO)/);
  });
});
