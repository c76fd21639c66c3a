import { describe, expect, it } from 'vitest';
import type { JobStatusReport } from '../../shared/aws/ops/job-operations.js';
import { formatStatus } from '../../shared/cli/operate.js';

/** `cairn status --stack`: the dead letters line counts the dead-letter store (the dead-letter function drains every DLQ into it). */
describe('cairn status: dead letters', () => {
  const report = (deadLetters: number, inDlq: number): JobStatusReport => ({
    resources: { jobName: 'word-count', tableName: 't', bucket: 'b', ingressQueueUrl: 'q', queueUrls: {}, deadLetterQueueUrls: {}, eventSourceMappingIds: [] },
    job: undefined,
    checkpoints: [],
    queues: [{ role: 'dead-letter', name: 'lines', visible: inDlq, inFlight: 0 }],
    deadLetters,
    eventSourceMappings: [],
  });
  const line = (r: JobStatusReport): string | undefined => formatStatus(r).find((l) => l.startsWith('dead letters'));

  it('says how many letters are kept and where to read them, and what is still on its way from a dead-letter queue', () => {
    expect(line(report(0, 0))).toBe('dead letters: 0 kept');
    expect(line(report(2, 0))).toBe('dead letters: 2 kept (cairn dead-letters word-count lists them)');
    expect(line(report(2, 1))).toBe(
      'dead letters: 2 kept (cairn dead-letters word-count lists them), 1 on their way from the dead-letter queues (the dead-letter function keeps them; a lost operator message starts a recovery)',
    );
  });
});
