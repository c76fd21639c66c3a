import { GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import { expect, it } from 'vitest';
import { wordCount } from '../../examples/word-count.js';
import { JobOperations } from '../../shared/aws/ops/job-operations.js';
import { credentials, localJob, region } from './helpers.js';
import { until } from '../until.js';

/**
 * Operating a job on the local cloud (what `cairn status|trigger|pause|resume|rollback
 * --target local-cloud` do): requests go through the job record; the in-process coordinator
 * serves them, and the runner stops and restarts its event sources on pause and resume, as the
 * event source mappings of a deployed stack are disabled and enabled.
 */

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

it('trigger, pause (events wait in the ingress queue), resume, rollback to an older checkpoint; the job still ends exactly-once', async () => {
  const events = wordCount.generate(240, 5);
  const [a, b, c] = [events.slice(0, 100), events.slice(100, 160), events.slice(160)];
  const job = await localJob({ example: wordCount, checkpoint: { trigger: 'manual', retained: 3, timeoutMs: 20_000 } });
  const ops = await JobOperations.open(job.resources(), { credentials, pollMs: 100 });
  const sqs = new SQSClient({ endpoint: job.resources().endpoint, region, credentials });
  const ingested = async (): Promise<number> => (await job.log.head(0)) + (await job.log.head(1));
  // What the runner has done so far: the waits below fail only once it stops moving.
  const work = (): string => JSON.stringify(job.counters);
  const body = (batch: typeof events): { id: string; body: string }[] => batch.map((e) => ({ id: e.id, body: JSON.stringify(e.event) }));
  try {
    const running = job.run({ timeoutMs: 540_000 });

    await job.push(body(a));
    await until('batch A ingested', async () => ((await ingested()) === 100 ? true : undefined), { progress: work });
    const first = await ops.trigger({ waitMs: 30_000 });
    expect(first.checkpoint).toMatchObject({ id: 1, status: 'COMPLETED', trigger: 'manual' });

    const paused = await ops.pause({ drainMs: 10_000 });
    expect(paused).toEqual({ pendingLeft: [], mappingsDisabled: 0, scheduleDisabled: false });
    await until('the runner to stop its event sources', () => (job.consuming ? undefined : true));
    await job.push(body(b));
    await sleep(1500);
    const { Attributes } = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: job.ingressQueueUrl, AttributeNames: ['ApproximateNumberOfMessages'] }));
    expect(Number(Attributes?.ApproximateNumberOfMessages)).toBe(60);
    expect(await ingested()).toBe(100);
    const status = await ops.status();
    expect(status.job).toMatchObject({ paused: true, status: 'RUNNING' });
    expect(status.queues.find((q) => q.role === 'ingress')).toEqual({ role: 'ingress', name: 'ingress', visible: 60, inFlight: 0 });
    await expect(ops.trigger()).rejects.toThrow('cannot trigger a checkpoint: the job is paused (resume it first)');

    expect(await ops.resume()).toEqual({ mappingsEnabled: 0, scheduleEnabled: false, executionStarted: false });
    await until('batch B ingested after resume', async () => ((await ingested()) === 160 ? true : undefined), { progress: work });
    expect(job.consuming).toBe(true);
    expect((await ops.trigger({ waitMs: 30_000 })).checkpoint).toMatchObject({ id: 2, status: 'COMPLETED' });
    await job.push(body(c));
    await until('batch C ingested', async () => ((await ingested()) === 240 ? true : undefined), { progress: work });
    expect((await ops.trigger({ waitMs: 30_000 })).checkpoint).toMatchObject({ id: 3, status: 'COMPLETED' });

    const rolledBack = await ops.rollback(2, { waitMs: 30_000 });
    expect(rolledBack.job).toMatchObject({ status: 'RUNNING', generation: 2, lastCompletedId: 2, retainedCheckpoints: [1, 2] });
    expect(rolledBack.job?.restarts).toEqual([expect.objectContaining({ toCheckpoint: 2, reason: 'rollback to checkpoint 2 requested by the operator' })]);
    expect(await job.checkpoints.getCheckpoint(3)).toMatchObject({ status: 'ABORTED', abortReason: 'discarded by restore to 2' });

    job.closeInput();
    const record = await running;
    const context = `counters ${JSON.stringify(job.counters)} errors ${job.lastErrors.slice(-3).join(' | ')}`;
    expect(record.status, context).toBe('FINISHED');
    expect(wordCount.canonical(await job.results(wordCount.sink)), context).toEqual(wordCount.oracle(events.map((e) => e.event)));
  } finally {
    ops.close();
    sqs.destroy();
    await job.destroy();
  }
});
