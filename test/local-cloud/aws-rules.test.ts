/**
 * The engine on a local cloud that plays AWS's rules (shared/aws/local-cloud/aws-rules.ts)
 * more harshly than AWS's figures, so that they bite in a short run: transaction conflicts,
 * a hot-key limit of a few hundred units per second, PurgeQueue's window. The output must
 * still be exactly the oracle's. And user strings holding characters an SQS body may not
 * carry (U+FFFF, U+FFFE, a lone surrogate, a control character) go through a keyed job.
 */
import { expect, it } from 'vitest';
import { z } from 'zod';
import { job as defineGraph } from '../../shared/core/job.js';
import { requestRollback, updateJob } from '../../shared/core/control.js';
import { createLocalCloudJob, type LocalCloudJobOptions } from '../../shared/aws/runner/index.js';
import { wordCount } from '../../examples/word-count.js';
import { credentials, region, rulesEdge } from '../cloud/rules-edge.js';

const EVENTS = 200;

async function jobOn(endpoint: string, options: Omit<LocalCloudJobOptions, 'endpoint'>): Promise<Awaited<ReturnType<typeof createLocalCloudJob>>> {
  return createLocalCloudJob({ endpoint, region, credentials, ...options });
}

it('word-count with a rollback ends with exactly the oracle output under conflicts, hot-key throttling and purge windows', async () => {
  const edge = await rulesEdge({ partitionWriteUnitsPerSecond: 12, partitionReadUnitsPerSecond: 180, purgeWindowMs: 60_000 });
  let completed = 0;
  // A standard ingress with concurrent ingest invocations: appends to one source partition race on its head item.
  const job = await jobOn(edge.url, {
    example: wordCount,
    ingress: 'standard',
    ingestBatchSize: 10,
    ingestConcurrency: 4,
    checkpoint: { intervalMs: 300 },
    onTransition: (d) => void (d.type === 'complete' && completed++),
  });
  try {
    const events = wordCount.generate(EVENTS, 23);
    await job.push(events.slice(0, EVENTS / 2).map((e) => ({ id: e.id, body: JSON.stringify(e.event) })));
    await job.run({ until: () => completed > 0, stallMs: 30_000 });
    await updateJob(job.checkpoints, (j) => requestRollback(j, j.lastCompletedId));
    await job.push(events.slice(EVENTS / 2).map((e) => ({ id: e.id, body: JSON.stringify(e.event) })));
    job.closeInput();
    const record = await job.run({ stallMs: 30_000 });
    const counts = edge.edge.ruleCounts();
    const context = `rules ${JSON.stringify(counts)} counters ${JSON.stringify(job.counters)} errors ${job.lastErrors.slice(-3).join(' | ')}`;
    console.log(`word-count under AWS's rules: ${context}`);
    expect(record.status, context).toBe('FINISHED');
    expect(record.restarts.length, context).toBe(1);
    expect(wordCount.canonical(await job.results(wordCount.sink)), context).toEqual(wordCount.oracle(events.map((e) => e.event)));
    expect(counts.throttledWrites, context).toBeGreaterThan(0);
    expect(counts.transactionConflicts, context).toBeGreaterThan(0);
    // Nothing purges on rollback (fencing makes it correct): no message of the new generation is lost to a purge.
    expect(counts.purgedMessages + counts.purgesRefused, context).toBe(0);
  } finally {
    await job.destroy();
    await edge.close();
  }
});

const Tagged = z.object({ key: z.string(), n: z.number().int() });

function taggedJob(): ReturnType<ReturnType<typeof defineGraph>['build']> {
  const j = defineGraph('tagged');
  j.source('in', { schema: Tagged, partitions: 1 })
    .keyBy((e) => e.key)
    .process<{ key: string; total: number }>(
      'sum',
      (e, ctx) => {
        const total = ctx.state.value<number>('total');
        const next = (total.get() ?? 0) + e.n;
        total.set(next);
        ctx.emit({ key: e.key, total: next });
      },
      { parallelism: 2 },
    )
    .sink('totals');
  return j.build();
}

it('keys holding U+FFFF, U+FFFE, a lone surrogate and U+0007 go through SQS bodies and come out unchanged', async () => {
  const keys = ['a\uffffb', '\ufffe', 'x\ud800y', 'bell\u0007', 'plain'];
  const events = Array.from({ length: 40 }, (_, i) => ({ id: `e${i}`, event: { key: keys[i % keys.length] as string, n: i } }));
  const edge = await rulesEdge({});
  const job = await jobOn(edge.url, { job: taggedJob(), checkpoint: { intervalMs: 200 } });
  try {
    await job.push(events.map((e) => ({ id: e.id, body: JSON.stringify(e.event) })));
    job.closeInput();
    const record = await job.run({ stallMs: 30_000 });
    const context = `rules ${JSON.stringify(edge.edge.ruleCounts())} counters ${JSON.stringify(job.counters)} errors ${job.lastErrors.slice(-3).join(' | ')}`;
    expect(record.status, context).toBe('FINISHED');
    const totals = new Map<string, number>();
    const oracle = events.map(({ event }) => ({ key: event.key, total: totals.set(event.key, (totals.get(event.key) ?? 0) + event.n).get(event.key) }));
    const byKeyTotal = (a: { key: string; total?: number }, b: { key: string; total?: number }): number => (a.key < b.key ? -1 : a.key > b.key ? 1 : (a.total ?? 0) - (b.total ?? 0));
    expect(((await job.results('totals')) as Array<{ key: string; total: number }>).sort(byKeyTotal), context).toEqual(oracle.sort(byKeyTotal));
    expect(job.counters.stepFailures, context).toBe(0);
    expect(edge.edge.ruleCounts().invalidBodies, context).toBe(0);
  } finally {
    await job.destroy();
    await edge.close();
  }
});
