import { z } from 'zod';
import type { RuntimeLimits } from './config.js';
import { murmur3 } from './hashing.js';
import type { VertexDef } from './job.js';
import { instanceId } from './messages.js';
import type { Clock, DeadLetter, DeadLetterStore, QueueTransport, SourceLog } from './ports.js';

/**
 * Ingest: events pushed to the ingress queue are validated and appended, in order, to the
 * source's partitioned log, exactly once (the log skips ids it already holds). Bad input
 * (malformed JSON, schema violation, oversize) goes to the dead-letter store with the reason.
 * Then the source instance of each touched partition is told to read.
 */

export interface IngressMessage {
  readonly id: string;
  readonly body: string;
}

export interface IngestDeps {
  readonly source: VertexDef;
  readonly generation: number;
  /**
   * Whether the job is RUNNING in `generation`. While it recovers, the appended events are not
   * polled for: the source instances may not be restored into the new generation yet (a poll
   * would be refused and wait out its visibility timeout), and the recovery's last phase polls
   * every source, which then reads from its restored offset. Default true.
   */
  readonly running?: boolean;
  readonly log: SourceLog;
  readonly deadLetters: DeadLetterStore;
  readonly transport: QueueTransport;
  readonly limits: RuntimeLimits;
  readonly clock: Clock;
}

export interface IngestOutcome {
  readonly appended: number;
  readonly duplicates: number;
  readonly deadLettered: number;
  readonly failedIds: string[];
}

export type Validation = { ok: true; event: unknown } | { ok: false; letter: Omit<DeadLetter, 'id' | 'at' | 'vertex'> };

export function validateEvent(source: VertexDef, body: string, limits: RuntimeLimits): Validation {
  const head = source.head;
  if (head.kind !== 'source') throw new Error(`${source.id} is not a source`);
  const bytes = Buffer.byteLength(body);
  const payload = bytes > 4096 ? `${body.slice(0, 4096)}…` : body;
  if (bytes > limits.maxRecordBytes) {
    return { ok: false, letter: { reason: 'oversize-record', message: `event of ${bytes} bytes exceeds the limit of ${limits.maxRecordBytes} bytes`, payload } };
  }
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (error) {
    return { ok: false, letter: { reason: 'malformed-json', message: `malformed JSON: ${(error as Error).message}`, payload } };
  }
  const parsed = head.schema.safeParse(json);
  if (!parsed.success) {
    return { ok: false, letter: { reason: 'schema-violation', message: `schema violation: ${z.prettifyError(parsed.error)}`, payload } };
  }
  return { ok: true, event: parsed.data };
}

export function partitionOf(source: VertexDef, event: unknown, messageId: string): number {
  const head = source.head;
  const key = head.kind === 'source' && head.partitionKey ? head.partitionKey(event) : messageId;
  return murmur3(key) % source.parallelism;
}

export async function ingestBatch(deps: IngestDeps, messages: readonly IngressMessage[]): Promise<IngestOutcome> {
  const byPartition = new Map<number, { id: string; event: unknown }[]>();
  const letters: DeadLetter[] = [];
  for (const message of messages) {
    const result = validateEvent(deps.source, message.body, deps.limits);
    if (!result.ok) {
      letters.push({ ...result.letter, id: `ingress:${message.id}`, vertex: deps.source.id, at: deps.clock.now() });
      continue;
    }
    const partition = partitionOf(deps.source, result.event, message.id);
    const list = byPartition.get(partition) ?? [];
    list.push({ id: message.id, event: result.event });
    byPartition.set(partition, list);
  }
  if (letters.length > 0) await deps.deadLetters.put(letters);
  let appended = 0;
  let duplicates = 0;
  const failedIds: string[] = [];
  for (const [partition, entries] of byPartition) {
    try {
      const result = await deps.log.append(partition, entries);
      appended += result.appended;
      duplicates += result.duplicates;
      const to = instanceId(deps.source.id, partition);
      if (deps.running === false) continue;
      await deps.transport.send([{ queue: deps.source.id, groupId: to, dedupId: `g${deps.generation}:poll:${to}:${result.head}`, body: { type: 'poll', gen: deps.generation, to } }]);
    } catch {
      failedIds.push(...entries.map((e) => e.id));
    }
  }
  return { appended, duplicates, deadLettered: letters.length, failedIds };
}
