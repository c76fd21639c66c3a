import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { parseRuntimeLimits } from '../../shared/core/config.js';
import { ingestBatch, partitionOf } from '../../shared/core/ingest.js';
import { INGRESS_BATCH_KEY, MAX_BATCH_EVENTS, packIngressBatches } from '../../shared/core/ingress-batch.js';
import { job } from '../../shared/core/job.js';
import type { OutboundMessage } from '../../shared/core/ports.js';
import { Topology } from '../../shared/core/topology.js';
import { EmbeddedDb } from '../../shared/embedded/db.js';
import { EmbeddedDeadLetterStore, EmbeddedSourceLog } from '../../shared/embedded/stores.js';

/** Ingress batch messages (shared/core/ingress-batch.ts): one SQS message, many events, one id. */
describe('ingress batch messages', () => {
  const j = job('batch');
  j.source('in', { schema: z.object({ k: z.string(), n: z.number() }), partitions: 2, partitionKey: (e) => e.k }).sink('out');
  const topology = new Topology(j.build());
  const source = topology.sources()[0];
  if (!source) throw new Error('no source');

  function setup() {
    const db = EmbeddedDb.memory();
    const log = new EmbeddedSourceLog(db);
    const deadLetters = new EmbeddedDeadLetterStore(db);
    const sent: OutboundMessage[] = [];
    const transport = { send: (messages: readonly OutboundMessage[]) => Promise.resolve(void sent.push(...messages)) };
    const deps = { source: source as NonNullable<typeof source>, generation: 1, log, deadLetters, transport, limits: parseRuntimeLimits({}), clock: { now: () => 7 } };
    const read = async (p: number) => (await log.read(p, 0, 1000)).map((e) => e.event);
    return { deps, log, deadLetters, sent, read };
  }

  // Keys a and e fall in partition 0, b in partition 1 (murmur3 % 2).
  const events = ['a', 'b', 'e', 'b', 'a', 'b'].map((k, n) => ({ k, n }));
  const body = JSON.stringify({ [INGRESS_BATCH_KEY]: events });

  it('appends every event of a batch to its partition in message order; a redelivery is a duplicate whole', async () => {
    const { deps, read, sent } = setup();
    expect(await ingestBatch(deps, [{ id: 'b1', body }])).toEqual({ appended: 6, duplicates: 0, deadLettered: 0, failedIds: [] });
    const expected = [0, 1].map((p) => events.filter((e) => partitionOf(source, e, '') === p));
    expect(expected.every((list) => list.length > 0)).toBe(true);
    expect([await read(0), await read(1)]).toEqual(expected);
    expect(sent.map((m) => m.groupId).sort()).toEqual(['in#0', 'in#1']);
    // SQS delivers it again, next to a single event.
    expect(
      await ingestBatch(deps, [
        { id: 'b1', body },
        { id: 'e9', body: JSON.stringify({ k: 'k0', n: 9 }) },
      ]),
    ).toEqual({ appended: 1, duplicates: 6, deadLettered: 0, failedIds: [] });
  });

  it('a bad event of a batch becomes a dead letter named after the batch and its index; the rest append', async () => {
    const { deps, read, deadLetters } = setup();
    const mixed = JSON.stringify({
      [INGRESS_BATCH_KEY]: [
        { k: 'k0', n: 0 },
        { k: 'k0', n: 'one' },
        { k: 'k0', n: 2 },
      ],
    });
    expect(await ingestBatch(deps, [{ id: 'b2', body: mixed }])).toEqual({ appended: 2, duplicates: 0, deadLettered: 1, failedIds: [] });
    expect([...(await read(0)), ...(await read(1))]).toEqual([
      { k: 'k0', n: 0 },
      { k: 'k0', n: 2 },
    ]);
    const letters = await deadLetters.list();
    expect(letters.map((l) => [l.id, l.reason, l.payload])).toEqual([['ingress:b2#1', 'schema-violation', '{"k":"k0","n":"one"}']]);
    expect(letters[0]?.message).toContain('schema violation');
  });

  it('rejects a batch that is not an array, has too many events, or is larger than a message, each with its reason', async () => {
    const { deps, deadLetters, read } = setup();
    const tooMany = JSON.stringify({ [INGRESS_BATCH_KEY]: Array.from({ length: MAX_BATCH_EVENTS + 1 }, (_, n) => ({ k: 'k', n })) });
    const tooBig = JSON.stringify({
      [INGRESS_BATCH_KEY]: [
        { k: 'x'.repeat(150_000), n: 1 },
        { k: 'y'.repeat(150_000), n: 2 },
      ],
    });
    const outcome = await ingestBatch(deps, [
      { id: 'notArray', body: JSON.stringify({ [INGRESS_BATCH_KEY]: { k: 'k', n: 1 } }) },
      { id: 'tooMany', body: tooMany },
      { id: 'tooBig', body: tooBig },
    ]);
    expect(outcome).toEqual({ appended: 0, duplicates: 0, deadLettered: 3, failedIds: [] });
    expect([...(await read(0)), ...(await read(1))]).toEqual([]);
    const letters = new Map((await deadLetters.list()).map((l) => [l.id, [l.reason, l.message]]));
    expect(letters).toEqual(
      new Map([
        ['ingress:notArray', ['schema-violation', "batch message: 'cairnBatch' must be an array of events, got object"]],
        ['ingress:tooMany', ['schema-violation', `batch message of ${MAX_BATCH_EVENTS + 1} events exceeds the limit of ${MAX_BATCH_EVENTS} events per message`]],
        ['ingress:tooBig', ['oversize-record', `batch message of ${Buffer.byteLength(tooBig)} bytes exceeds the limit of ${256 * 1024} bytes`]],
      ]),
    );
  });

  it('a body with other keys besides cairnBatch is one event, validated by the schema', async () => {
    const { deps, deadLetters } = setup();
    expect(await ingestBatch(deps, [{ id: 'x', body: JSON.stringify({ [INGRESS_BATCH_KEY]: [], k: 'k' }) }])).toMatchObject({ appended: 0, deadLettered: 1 });
    expect((await deadLetters.list()).map((l) => [l.id, l.reason])).toEqual([['ingress:x', 'schema-violation']]);
  });

  it('packs greedily and deterministically: by bytes and by MAX_BATCH_EVENTS, ids from the first event and the count', () => {
    const input = Array.from({ length: 1_203 }, (_, i) => ({ id: `e${i}`, body: JSON.stringify({ k: 'k', n: i }) }));
    const packed = packIngressBatches(input, 256 * 1024);
    expect(packed.map((b) => [b.id, b.events])).toEqual([
      ['e0+500', 500],
      ['e500+500', 500],
      ['e1000+203', 203],
    ]);
    expect(packIngressBatches(input, 256 * 1024)).toEqual(packed);
    const parsed = packed.flatMap((b) => (JSON.parse(b.body) as { cairnBatch: unknown[] }).cairnBatch);
    expect(parsed).toEqual(input.map((e) => JSON.parse(e.body) as unknown));
    // By bytes: each body at most the bound (15 bytes an event here and a comma between, 17 of envelope: 5 make 96).
    const small = packIngressBatches(input.slice(0, 10), 100);
    expect(small.map((b) => b.events)).toEqual([5, 5]);
    expect(small.every((b) => Buffer.byteLength(b.body) <= 100)).toBe(true);
    // An event larger than the bound travels alone.
    expect(packIngressBatches([{ id: 'big', body: '"' + 'x'.repeat(300) + '"' }, ...input.slice(0, 1)], 100).map((b) => b.id)).toEqual(['big+1', 'e0+1']);
  });
});
