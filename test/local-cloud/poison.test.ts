/**
 * Poison input on the local cloud: malformed JSON and schema violations at the ingress, a
 * record an operator throws on, and messages in an operator queue that are not JSON, not Cairn
 * messages, or addressed to an operator the job does not have. Each ends in the dead-letter
 * store with its reason, the message group moves on, and the output is exactly the oracle's.
 * A message that fails on every delivery reaches the operator's DLQ after maxReceiveCount
 * receives; the job sees it there and rolls back to its last checkpoint.
 */
import { SendMessageBatchCommand } from '@aws-sdk/client-sqs';
import { expect, it } from 'vitest';
import { canonical, sequenceEvents, sequenceJob, sequenceOracle } from '../faults/sequence-job.js';
import { localJob } from './helpers.js';

const KEYS = 3;
const PER_KEY = 10;

it('bad input and poison records end as dead letters with the reason; every group moves on; output exactly the oracle', async () => {
  const job = await localJob({ job: sequenceJob(), checkpoint: { intervalMs: 200 }, limits: { maxReceiveCount: 6, isolatePoisonAfterReceives: 3, sourceReadBatch: 10 } });
  try {
    // Straight into the validate queue, in the group of instance validate#0, ahead of its data.
    const validate = job.queues.operators.validate?.url ?? '';
    const raw = [
      { id: 'not-json', body: '{"type": "data", "gen": 1' },
      { id: 'not-cairn', body: JSON.stringify({ hello: 'world' }) },
      { id: 'unknown', body: JSON.stringify({ type: 'poll', gen: 1, to: 'nope#0' }) },
      { id: 'no-channel', body: JSON.stringify({ type: 'data', gen: 1, from: 'count#0', to: 'validate#0', seq: 1, records: [] }) },
    ];
    await job.sqs.send(
      new SendMessageBatchCommand({ QueueUrl: validate, Entries: raw.map((r, i) => ({ Id: String(i), MessageBody: r.body, MessageGroupId: 'validate#0', MessageDeduplicationId: r.id })) }),
    );
    const events = sequenceEvents(KEYS, PER_KEY, 1);
    await job.push([...events.slice(0, 5), { id: 'bad-json', body: '{"key": "k0", ' }, { id: 'bad-schema', body: JSON.stringify({ key: 'k0', value: -3 }) }, ...events.slice(5)]);
    job.closeInput();
    const record = await job.run({ stallMs: 30_000 });
    const context = `counters ${JSON.stringify(job.counters)} errors ${job.lastErrors.slice(-3).join(' | ')}`;
    expect(record.status, context).toBe('FINISHED');
    expect(record.restarts, context).toEqual([]);
    expect(canonical(await job.results('validated')), context).toEqual(sequenceOracle(KEYS, PER_KEY));

    const letters = await job.deadLetters();
    const summary = letters.map((l) => ({ reason: l.reason, vertex: l.vertex })).sort((a, b) => `${a.reason}${a.vertex}`.localeCompare(`${b.reason}${b.vertex}`));
    expect(summary, context).toEqual(
      [
        { reason: 'malformed-json', vertex: 'steps' },
        { reason: 'schema-violation', vertex: 'steps' },
        { reason: 'operator-error', vertex: 'validate' },
        { reason: 'malformed-json', vertex: job.queues.operators.validate?.name },
        { reason: 'schema-violation', vertex: job.queues.operators.validate?.name },
        { reason: 'unknown-operator', vertex: job.queues.operators.validate?.name },
        { reason: 'unknown-operator', vertex: 'validate' },
      ].sort((a, b) => `${a.reason}${a.vertex}`.localeCompare(`${b.reason}${b.vertex}`)),
    );
    const byReason = Object.fromEntries(letters.map((l) => [l.reason === 'unknown-operator' ? `${l.reason}:${l.vertex}` : l.reason, l]));
    expect(byReason['malformed-json']?.message).toMatch(/malformed JSON/);
    expect(byReason['operator-error']?.message).toMatch(/operator 'validate' threw: poison record poison\/1/);
    expect(letters.find((l) => l.payload.includes('nope#0'))?.message).toMatch(/no operator instance 'nope#0'/);
    expect(letters.find((l) => l.payload.includes('"from":"count#0"'))?.message).toMatch(/no channel count#0>validate#0/);
    expect(letters.find((l) => l.reason === 'schema-violation' && l.vertex === 'steps')?.payload).toContain('-3');
    // Nothing needed the SQS dead-letter queues.
    expect(await job.redriven()).toEqual([]);
  } finally {
    await job.destroy();
  }
});

it('a message that fails on every delivery reaches the DLQ after maxReceiveCount receives; the job rolls back and still ends exactly-once', async () => {
  const job = await localJob({ job: sequenceJob(), checkpoint: { intervalMs: 200 }, maxReceiveCount: 3, limits: { maxReceiveCount: 3, isolatePoisonAfterReceives: 2, sourceReadBatch: 10 } });
  try {
    // A channel message far ahead of its channel: every step over it fails with a sequence gap.
    const count = job.queues.operators.count?.url ?? '';
    await job.sqs.send(
      new SendMessageBatchCommand({
        QueueUrl: count,
        Entries: [
          { Id: '0', MessageBody: JSON.stringify({ type: 'data', gen: 1, from: 'validate#0', to: 'count#0', seq: 999, records: [] }), MessageGroupId: 'count#0', MessageDeduplicationId: 'gap' },
        ],
      }),
    );
    await job.push(sequenceEvents(KEYS, PER_KEY));
    job.closeInput();
    const record = await job.run({ stallMs: 30_000 });
    const context = `counters ${JSON.stringify(job.counters)} errors ${job.lastErrors.slice(-3).join(' | ')}`;
    expect(record.status, context).toBe('FINISHED');
    expect(canonical(await job.results('validated')), context).toEqual(sequenceOracle(KEYS, PER_KEY));
    // Messages that shared a failing batch with it may have followed it there (each is one more restart).
    expect(record.restarts.length, context).toBeGreaterThanOrEqual(1);
    for (const restart of record.restarts) expect(restart.reason).toBe("message reached the dead-letter queue of 'count'");
    // The dead-letter queue's consumer kept it, with where it came from, and left the queue empty.
    const redriven = (await job.deadLetters()).filter((l) => l.reason === 'redriven');
    expect(new Set(redriven.map((l) => l.vertex))).toEqual(new Set(['count']));
    expect(redriven.some((l) => l.payload.includes('"seq":999'))).toBe(true);
    expect(redriven[0]?.message).toMatch(/^reached the dead-letter queue of 'count' after \d+ receives$/);
    expect(job.counters.redriven).toBe(redriven.length);
    expect(await job.redriven()).toEqual([]);
  } finally {
    await job.destroy();
  }
});

it('every incident rolls back: a second message in a dead-letter queue after the first rollback rolls the job back again', async () => {
  const job = await localJob({ job: sequenceJob(), checkpoint: { intervalMs: 200 }, maxReceiveCount: 3, limits: { maxReceiveCount: 3, isolatePoisonAfterReceives: 2, sourceReadBatch: 10 } });
  try {
    const count = job.queues.operators.count?.url ?? '';
    const poison = (gen: number, id: string) =>
      job.sqs.send(
        new SendMessageBatchCommand({
          QueueUrl: count,
          Entries: [{ Id: '0', MessageBody: JSON.stringify({ type: 'data', gen, from: 'validate#0', to: 'count#0', seq: 999, records: [] }), MessageGroupId: 'count#0', MessageDeduplicationId: id }],
        }),
      );
    // Run until the job has rolled back `n` times and runs again (read between turns).
    let current: { restarts: number; status: string; generation: number } = { restarts: 0, status: 'RUNNING', generation: 1 };
    let reading: Promise<void> | undefined;
    const watch = (): void => {
      reading ??= job.job().then((j) => {
        current = { restarts: j.restarts.length, status: j.status, generation: j.generation };
        reading = undefined;
      });
    };
    const events = sequenceEvents(KEYS, PER_KEY);
    await job.push(events.slice(0, events.length / 2));
    await poison(1, 'first');
    await job.run({ onTurn: watch, until: () => current.restarts >= 1 && current.status === 'RUNNING', stallMs: 30_000 });
    expect(current.restarts).toBeGreaterThanOrEqual(1);
    const afterFirst = current.restarts;
    // The first incident's message was consumed from the DLQ: the queue is empty, and the next one counts.
    await poison(current.generation, 'second');
    await job.push(events.slice(events.length / 2));
    await job.run({ onTurn: watch, until: () => current.restarts > afterFirst && current.status === 'RUNNING', stallMs: 30_000 });
    expect(current.restarts).toBeGreaterThan(afterFirst);
    job.closeInput();
    const record = await job.run({ stallMs: 30_000 });
    const context = `counters ${JSON.stringify(job.counters)} errors ${job.lastErrors.slice(-3).join(' | ')}`;
    expect(record.status, context).toBe('FINISHED');
    expect(canonical(await job.results('validated')), context).toEqual(sequenceOracle(KEYS, PER_KEY));
    // (Messages that shared a failing batch with a poison message may have followed it: one more restart each.)
    for (const restart of record.restarts) expect(restart.reason).toBe("message reached the dead-letter queue of 'count'");
  } finally {
    await job.destroy();
  }
});
