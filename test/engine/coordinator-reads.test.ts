import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { parseCheckpointConfig } from '../../shared/core/config.js';
import { CoordinatorDriver } from '../../shared/core/coordinator-driver.js';
import { job } from '../../shared/core/job.js';
import type { CheckpointStore, OutboundMessage, SourceLog } from '../../shared/core/ports.js';
import { Topology } from '../../shared/core/topology.js';
import { EmbeddedDb } from '../../shared/embedded/db.js';
import { EmbeddedCheckpointStore, EmbeddedSinkStore, EmbeddedSourceLog, EmbeddedStateStore } from '../../shared/embedded/stores.js';

/** A port whose method calls are counted by name. */
function counted<T extends object>(target: T, calls: Record<string, number>): T {
  return new Proxy(target, {
    get(t, property, receiver) {
      const value: unknown = Reflect.get(t, property, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        calls[String(property)] = (calls[String(property)] ?? 0) + 1;
        return (value as (...a: unknown[]) => unknown).apply(t, args);
      };
    },
  });
}

/**
 * On AWS every read of the coordinator is a billed GetItem: within one step() it reads the job
 * record once and the log heads once, and takes what its own transitions wrote from them.
 */
describe('CoordinatorDriver reads what it wrote itself only once', () => {
  it('trigger and inject-barriers in one step: one job-record read, one head read per partition, the pending record once, its acks once injected', async () => {
    const j = job('reads');
    j.source('in', { schema: z.object({ k: z.string() }), partitions: 2 }).sink('out');
    const topology = new Topology(j.build());
    const db = EmbeddedDb.memory();
    const calls: Record<string, number> = {};
    const checkpoints: CheckpointStore = counted(new EmbeddedCheckpointStore(db), calls);
    const log: SourceLog = counted(new EmbeddedSourceLog(db), calls);
    const sent: OutboundMessage[] = [];
    let now = 1_000;
    const driver = new CoordinatorDriver({
      topology,
      config: parseCheckpointConfig({ intervalMs: 100 }),
      checkpoints,
      state: new EmbeddedStateStore(db),
      log,
      sinks: new EmbeddedSinkStore(db),
      transport: { send: (messages: readonly OutboundMessage[]) => Promise.resolve(void sent.push(...messages)) },
      clock: { now: () => now },
      env: { isIdle: () => false, purgeOperatorQueues: () => undefined, takeFailureSignal: () => undefined, takeManualTrigger: () => false },
    });
    await driver.initialize();
    await log.append(0, [{ id: 'e0', event: { k: 'a' } }]);
    await log.append(1, [
      { id: 'e1', event: { k: 'b' } },
      { id: 'e2', event: { k: 'c' } },
    ]);
    now += 100;
    for (const name of Object.keys(calls)) delete calls[name];
    sent.length = 0;

    const result = await driver.step();
    const during = { ...calls };

    expect(result.progressed).toBe(true);
    // Triggered, barriers sent to both source instances, then waiting for their acks.
    expect(sent.map((m) => [m.groupId, (m.body as { type: string }).type])).toEqual([
      ['in#0', 'inject-barrier'],
      ['in#1', 'inject-barrier'],
    ]);
    expect(result.job).toMatchObject({ nextCheckpointId: 2, pendingCheckpoints: [1], ingestedAtLastTrigger: 3 });
    expect(await checkpoints.getCheckpoint(1)).toMatchObject({ status: 'PENDING', barriersInjected: true });
    // (Before: the job record read before each of the 3 decisions, the heads again by the trigger, the pending record and its acks by each later decision.)
    expect(during).toEqual({ getJob: 1, status: 2, getCheckpoint: 1, putCheckpoint: 2, putJob: 1, listAcks: 1 });
  });
});
