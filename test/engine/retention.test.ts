import { describe, expect, it } from 'vitest';
import {
  DEFAULT_CHECKPOINT_HISTORY,
  DEFAULT_DEDUP_WINDOW_MS,
  checkpointDataExpired,
  checkpointsForgottenBelow,
  dedupExpired,
  dedupExpiresAt,
  logTruncationPoints,
  tombstoneExpired,
  versionsToKeep,
  closedValuesExpired,
  checkpointsPerPrune,
  pruneDue,
} from '../../shared/core/retention.js';
import { EmbeddedRuntime } from '../../shared/embedded/runtime.js';
import { sequenceEvents, sequenceJob } from '../faults/sequence-job.js';

/** The retention rules the state stores apply (shared/core/retention.ts): versions (embedded), closed values (DynamoDB), tombstones (both). */
describe('versionsToKeep: what a prune to the oldest retained checkpoint keeps', () => {
  const v = (epoch: number): { epoch: number; tag: string } => ({ epoch, tag: `v${epoch}` });

  it('keeps nothing when the current value dates from keepFrom or before: every retained checkpoint reads it', () => {
    expect(versionsToKeep({ epoch: 5 }, [v(2), v(4), v(5)], 5)).toEqual([]);
    expect(versionsToKeep({ epoch: 3 }, [v(1), v(3)], 7)).toEqual([]);
  });

  it('keeps the newest version at or before keepFrom and every later one when the value changed since', () => {
    expect(versionsToKeep({ epoch: 9 }, [v(1), v(3), v(5), v(7), v(9)], 5)).toEqual([v(5), v(7), v(9)]);
    expect(versionsToKeep({ epoch: 9 }, [v(1), v(3), v(7), v(9)], 5)).toEqual([v(3), v(7), v(9)]);
    expect(versionsToKeep({ epoch: 9 }, [v(7), v(9)], 5)).toEqual([v(7), v(9)]);
  });

  it('keeps the later versions of a key a restore made absent; drops every version of an absent key with none later', () => {
    expect(versionsToKeep(undefined, [v(2), v(6), v(8)], 5)).toEqual([v(2), v(6), v(8)]);
    expect(versionsToKeep(undefined, [v(2), v(4)], 5)).toEqual([]);
  });

  it('expires tombstones and checkpoint data only below the oldest retained checkpoint', () => {
    expect(tombstoneExpired({ epoch: 5, value: null }, 5)).toBe(true);
    expect(tombstoneExpired({ epoch: 6, value: null }, 5)).toBe(false);
    expect(tombstoneExpired({ epoch: 2, value: { n: 1 } }, 5)).toBe(false);
    expect(tombstoneExpired(undefined, 5)).toBe(false);
  });

  it('closed values (change records) of epochs up to keepFrom go: restores to retained checkpoints read only later first writes', () => {
    expect(closedValuesExpired(5, 5)).toBe(true);
    expect(closedValuesExpired(4, 5)).toBe(true);
    expect(closedValuesExpired(6, 5)).toBe(false);
    expect([4, 5, 6].map((id) => checkpointDataExpired(id, 5))).toEqual([true, false, false]);
  });
});

describe('logTruncationPoints: the source-log offsets below which no retained checkpoint replays', () => {
  const readers = new Map([
    [0, ['src#0']],
    [1, ['src#1']],
  ]);

  it('cuts each partition at the lowest offset any retained checkpoint recorded for it', () => {
    const retained = [{ sourceOffsets: { 'src#0': 40, 'src#1': 7 } }, { sourceOffsets: { 'src#0': 55, 'src#1': 9 } }, { sourceOffsets: { 'src#0': 61, 'src#1': 12 } }];
    expect([...logTruncationPoints(retained, readers)]).toEqual([
      [0, 40],
      [1, 7],
    ]);
    // Not ordered by id: after a rollback an older checkpoint can hold the higher offset; the minimum counts.
    expect([...logTruncationPoints([{ sourceOffsets: { 'src#0': 50, 'src#1': 3 } }, { sourceOffsets: { 'src#0': 20, 'src#1': 8 } }], readers)]).toEqual([
      [0, 20],
      [1, 3],
    ]);
  });

  it('cuts nothing without a retained checkpoint (a rollback replays from offset 0)', () => {
    expect([...logTruncationPoints([], readers)]).toEqual([]);
  });

  it('keeps a whole partition when a retained checkpoint lacks its offset or its record could not be read', () => {
    expect([...logTruncationPoints([{ sourceOffsets: { 'src#0': 40 } }, { sourceOffsets: { 'src#0': 50, 'src#1': 9 } }], readers)]).toEqual([[0, 40]]);
    expect([...logTruncationPoints([undefined, { sourceOffsets: { 'src#0': 50, 'src#1': 9 } }], readers)]).toEqual([]);
    expect([...logTruncationPoints([{ sourceOffsets: { 'src#0': 0, 'src#1': 5 } }], readers)]).toEqual([[1, 5]]);
  });

  it('takes the lowest offset of every source instance reading the same partition', () => {
    const shared = new Map([[0, ['a#0', 'b#0']]]);
    expect([...logTruncationPoints([{ sourceOffsets: { 'a#0': 30, 'b#0': 12 } }], shared)]).toEqual([[0, 12]]);
  });
});

describe('dedup window: how long an ingest id stays deduplicated', () => {
  it('defaults to SQS maximum retention (14 days) plus one day', () => {
    expect(DEFAULT_DEDUP_WINDOW_MS).toBe(15 * 24 * 3600 * 1000);
    expect(dedupExpiresAt(1_000)).toBe(1_000 + DEFAULT_DEDUP_WINDOW_MS);
    expect(dedupExpiresAt(1_000, 60_000)).toBe(61_000);
  });

  it('expires at the end of the window, never for a record without expiry', () => {
    expect(dedupExpired(61_000, 60_999)).toBe(false);
    expect(dedupExpired(61_000, 61_000)).toBe(true);
    expect(dedupExpired(undefined, Number.MAX_SAFE_INTEGER)).toBe(false);
  });
});

describe('checkpointsForgottenBelow: checkpoint records that go with their acks', () => {
  const job = (next: number, retained: number[], pending: number[]) => ({ nextCheckpointId: next, retainedCheckpoints: retained, pendingCheckpoints: pending });

  it('keeps the newest `history` ids and everything retained or pending', () => {
    expect(checkpointsForgottenBelow(job(500, [497, 498, 499], []), 100)).toBe(400);
    expect(checkpointsForgottenBelow(job(500, [350, 420, 499], []), 100)).toBe(350);
    expect(checkpointsForgottenBelow(job(500, [497, 498], [330, 499]), 100)).toBe(330);
    expect(checkpointsForgottenBelow(job(500, [497, 498, 499], []), 0)).toBe(497);
    expect(checkpointsForgottenBelow(job(500, [497, 498, 499], []))).toBe(500 - DEFAULT_CHECKPOINT_HISTORY);
  });

  it('forgets nothing while fewer than `history` checkpoints were taken', () => {
    expect(checkpointsForgottenBelow(job(40, [37, 38, 39], []), 100)).toBe(0);
    expect(checkpointsForgottenBelow(job(1, [], []), 100)).toBe(0);
  });
});

describe('pruneDue: retention runs about once per pruneIntervalMs of checkpoints, and on the final one', () => {
  it('runs on every n-th checkpoint id of the oldest retained one, n = ceil(pruneIntervalMs / intervalMs)', () => {
    expect(checkpointsPerPrune({ intervalMs: 1000, pruneIntervalMs: 60_000 })).toBe(60);
    expect(checkpointsPerPrune({ intervalMs: 60_000, pruneIntervalMs: 60_000 })).toBe(1);
    expect(checkpointsPerPrune({ intervalMs: 700, pruneIntervalMs: 1000 })).toBe(2);
    expect(checkpointsPerPrune({ intervalMs: 1000, pruneIntervalMs: 0 })).toBe(1);
    // keepFrom 4 -> 5 stays in the run 3..5; 5 -> 6 enters the run 6..8; aborted ids skipped (5 -> 7) still count.
    expect(pruneDue(4, 5, 3, false)).toBe(false);
    expect(pruneDue(5, 6, 3, false)).toBe(true);
    expect(pruneDue(5, 7, 3, false)).toBe(true);
    expect(pruneDue(6, 8, 3, false)).toBe(false);
    expect(pruneDue(6, 8, 3, true)).toBe(true);
    expect(pruneDue(undefined, 1, 3, false)).toBe(true);
    expect(pruneDue(undefined, undefined, 1, true)).toBe(false);
    expect(pruneDue(7, 8, 1, false)).toBe(true);
  });

  it('a run prunes on every third completed checkpoint (intervalMs 20, pruneIntervalMs 60) and at the final one; the output is unchanged', async () => {
    const counts: Array<{ prunes: number; completed: number }> = [];
    const outputs: unknown[][] = [];
    for (const pruneIntervalMs of [60, 0]) {
      // The input arrives in waves, one per completed checkpoint, so that the run takes many.
      const events = sequenceEvents(2, 60);
      const waves = Array.from({ length: 15 }, (_, i) => events.slice(i * 8, (i + 1) * 8));
      const ref: { runtime?: EmbeddedRuntime } = {};
      const runtime = await EmbeddedRuntime.open({
        job: sequenceJob(),
        clock: 'virtual',
        checkpoint: { intervalMs: 20, retained: 1, pruneIntervalMs },
        faults: {
          coordinator: {
            afterDecision: (decision) => {
              if (decision.type !== 'complete' || !ref.runtime) return Promise.resolve();
              const wave = waves.shift();
              if (wave) ref.runtime.push(wave);
              if (waves.length === 0) ref.runtime.closeInput();
              return Promise.resolve();
            },
          },
        },
      });
      ref.runtime = runtime;
      // Every prune ends by forgetting old checkpoint records: one call per prune.
      const forget = runtime.checkpoints.forgetBelow.bind(runtime.checkpoints);
      let prunes = 0;
      runtime.checkpoints.forgetBelow = (id) => {
        prunes++;
        return forget(id);
      };
      try {
        runtime.push(waves.shift() ?? []);
        const job = await runtime.run({ maxTurns: 1_000_000 });
        expect(job.status).toBe('FINISHED');
        counts.push({ prunes, completed: job.lastCompletedId });
        outputs.push([...(await runtime.results('validated'))].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))));
      } finally {
        runtime.close();
      }
    }
    const [every3, everyCheckpoint] = counts as [{ prunes: number; completed: number }, { prunes: number; completed: number }];
    // Every checkpoint; or the first, every third (ids 3, 6, ...) and the final one (no aborts here: ids are consecutive).
    expect(everyCheckpoint.completed).toBeGreaterThanOrEqual(15);
    expect(everyCheckpoint.prunes).toBe(everyCheckpoint.completed);
    expect(every3.prunes).toBe(1 + Math.floor(every3.completed / 3) + (every3.completed % 3 === 0 ? 0 : 1));
    expect(outputs[0]).toEqual(outputs[1]);
  });
});
