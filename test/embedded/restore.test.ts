import { describe, expect, it } from 'vitest';
import { CheckpointNotFoundError } from '../../shared/core/errors.js';
import { EmbeddedRuntime } from '../../shared/embedded/runtime.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sequenceEvents, sequenceJob } from '../faults/sequence-job.js';

describe('restoring a chosen checkpoint', () => {
  it('only retained checkpoints are restorable; pruned ones are refused with the retained list', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cairn-restore-'));
    try {
      const options = { job: sequenceJob(), clock: 'virtual' as const, stateDir: dir, checkpoint: { intervalMs: 1, retained: 2 }, limits: { sourceReadBatch: 10 } };
      const first = await EmbeddedRuntime.open(options);
      first.push(sequenceEvents(4, 200));
      first.closeInput();
      await first.run();
      const completed = (await first.checkpoints.listCheckpoints()).filter((c) => c.status === 'COMPLETED');
      const retained = (await first.job()).retainedCheckpoints;
      first.close();
      expect(completed.length).toBeGreaterThan(2);
      expect(retained).toEqual(completed.slice(-2).map((c) => c.id));
      const pruned = completed[0]?.id as number;
      await expect(EmbeddedRuntime.open({ ...options, restoreFrom: pruned })).rejects.toThrow(
        new CheckpointNotFoundError(`checkpoint ${pruned} is not a retained completed checkpoint (retained: ${retained.join(', ')})`),
      );
      const restored = await EmbeddedRuntime.open({ ...options, restoreFrom: retained[0] });
      try {
        const job = await restored.job();
        expect(job.restarts.at(-1)).toMatchObject({ toCheckpoint: retained[0], reason: `restore from checkpoint ${retained[0]} requested` });
      } finally {
        restored.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
