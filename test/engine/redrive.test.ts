import { describe, expect, it } from 'vitest';
import { parseCheckpointConfig } from '../../shared/core/config.js';
import type { JobRecord } from '../../shared/core/ports.js';
import { decideNext, failed, initialJob, recoveryStarted } from '../../shared/core/protocol/coordinator.js';
import { handleRedriven, redrivableIngress, type RedrivenMessage } from '../../shared/core/redrive.js';
import { EmbeddedDb } from '../../shared/embedded/db.js';
import { EmbeddedCheckpointStore, EmbeddedDeadLetterStore } from '../../shared/embedded/stores.js';
import { facts, T0 } from './facts.js';

/** The dead-letter queues' consumer (shared/core/redrive.ts) and the coordinator's answer to its report. */
describe('messages redriven to a dead-letter queue', () => {
  async function stores(job: Partial<JobRecord> = {}) {
    const db = EmbeddedDb.memory();
    const checkpoints = new EmbeddedCheckpointStore(db);
    const deadLetters = new EmbeddedDeadLetterStore(db);
    await checkpoints.putJob({ ...initialJob(T0), generation: 3, ...job }, undefined);
    return { checkpoints, deadLetters, clock: { now: () => T0 + 7 } };
  }
  const lost = (gen: number | undefined, id = `m${gen}`): RedrivenMessage => ({
    queue: 'count',
    messageId: id,
    body: JSON.stringify({ type: 'data', ...(gen === undefined ? {} : { gen }), from: 'validate#0', to: 'count#0', seq: 9, records: [] }),
    receiveCount: 4,
  });

  it('keeps each as a dead letter and reports one failure for a lost message of the current generation', async () => {
    const s = await stores();
    const failure = { reason: "message reached the dead-letter queue of 'count'", at: T0 + 7, generation: 3 };
    expect(await handleRedriven(s, [lost(3, 'a'), lost(3, 'b')])).toEqual({ stored: 2, failureReported: true, failure });
    const job = (await s.checkpoints.getJob()) as JobRecord;
    expect(job.requests).toEqual({ failure });
    expect((await s.deadLetters.list()).map((l) => [l.id, l.reason, l.vertex, l.message])).toEqual([
      ['redriven:count:a', 'redriven', 'count', "reached the dead-letter queue of 'count' after 4 receives"],
      ['redriven:count:b', 'redriven', 'count', "reached the dead-letter queue of 'count' after 4 receives"],
    ]);
    // A second incident while the first is unserved, or the same batch again, is the same rollback: the same pending failure (one wake).
    expect(await handleRedriven(s, [lost(3, 'c')])).toEqual({ stored: 1, failureReported: false, failure });
    expect(await handleRedriven(s, [lost(3, 'a'), lost(3, 'b')])).toEqual({ stored: 2, failureReported: false, failure });
    expect((await s.checkpoints.getJob())?.version).toBe(job.version);
    expect(await s.deadLetters.list()).toHaveLength(3);
  });

  it('replaces a pending failure of an older generation (one the rollback since has covered) instead of being swallowed by it', async () => {
    const s = await stores({ requests: { failure: { reason: 'old', at: T0 - 100, generation: 2 } } });
    const failure = { reason: "message reached the dead-letter queue of 'count'", at: T0 + 7, generation: 3 };
    expect(await handleRedriven(s, [lost(3)])).toEqual({ stored: 1, failureReported: true, failure });
    expect((await s.checkpoints.getJob())?.requests).toEqual({ failure });
  });

  it('reports nothing for a message of an older generation (the rollback that fenced it replays its input), nor for the ingress', async () => {
    const s = await stores();
    expect(await handleRedriven(s, [lost(2), { queue: 'ingress', messageId: 'i', body: 'not json', receiveCount: 6 }])).toEqual({ stored: 2, failureReported: false });
    expect((await s.checkpoints.getJob())?.requests).toBeUndefined();
  });

  it('an ingress message keeps its whole body and its event id, so that a redrive can send it again; an operator message is cut at 4,096 characters', async () => {
    const s = await stores();
    const body = JSON.stringify({ line: 'x'.repeat(10_000) });
    await handleRedriven(s, [
      { queue: 'ingress', messageId: 'sqs-1', body, receiveCount: 5, eventId: 'line:7' },
      { ...lost(3, 'op'), body: `{"pad":"${'y'.repeat(5_000)}"}` },
    ]);
    const letters = await s.deadLetters.list();
    expect(letters.find((l) => l.vertex === 'ingress')).toEqual({
      id: 'redriven:ingress:sqs-1',
      reason: 'redriven',
      message: "reached the dead-letter queue of 'ingress' after 5 receives",
      vertex: 'ingress',
      payload: body,
      at: T0 + 7,
      eventId: 'line:7',
    });
    expect(letters.find((l) => l.vertex === 'count')?.payload).toHaveLength(4_097);
    expect(redrivableIngress(letters).map((l) => l.eventId)).toEqual(['line:7']);
  });

  it('reports a failure for an unreadable body: a needless rollback is safe, a missed one is not', async () => {
    const s = await stores();
    expect(await handleRedriven(s, [{ queue: 'count', messageId: 'x', body: '{"cut', receiveCount: 4 }])).toMatchObject({ stored: 1, failureReported: true, failure: { generation: 3 } });
  });

  it('reports nothing once the job has ended', async () => {
    const s = await stores({ status: 'FINISHED' });
    expect(await handleRedriven(s, [lost(3)])).toEqual({ stored: 1, failureReported: false });
  });

  it('the coordinator serves the report with a rollback to the last completed checkpoint, and the rollback clears it', () => {
    const config = parseCheckpointConfig({});
    const reported: Partial<JobRecord> = { generation: 3, lastCompletedId: 5, retainedCheckpoints: [5], requests: { failure: { reason: 'lost', at: T0, generation: 3 } } };
    expect(decideNext(config, facts({ job: reported }))).toMatchObject({ type: 'start-recovery', toCheckpoint: 5, reason: 'lost' });
    const job = { ...initialJob(T0), ...reported };
    expect(recoveryStarted(job, 5, 'lost', T0).requests).toBeUndefined();
    expect(failed(job, 'exhausted').requests).toBeUndefined();
    // A report from before the last rollback is covered by it.
    expect(decideNext(config, facts({ job: { ...reported, generation: 4 } })).type).not.toBe('start-recovery');
  });
});
