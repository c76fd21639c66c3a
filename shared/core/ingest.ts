import { z } from 'zod';
import type { CheckpointConfig, RuntimeLimits } from './config.js';
import { murmur3 } from './hashing.js';
import type { VertexDef } from './job.js';
import { instanceId } from './messages.js';
import type { Topology } from './topology.js';
import { INGRESS_BATCH_KEY, batchEventId, batchOf } from './ingress-batch.js';
import type { AppendEntry, Clock, DeadLetter, DeadLetterStore, QueueTransport, SourceLog } from './ports.js';

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
  /** Whether ingest tells the source instances to read after an append (ingestPollsSources). Default true. */
  readonly pollSources?: boolean;
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
  if (bytes > limits.maxRecordBytes) {
    return { ok: false, letter: { reason: 'oversize-record', message: `event of ${bytes} bytes exceeds the limit of ${limits.maxRecordBytes} bytes`, payload: payloadOf(body) } };
  }
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (error) {
    return { ok: false, letter: { reason: 'malformed-json', message: `malformed JSON: ${(error as Error).message}`, payload: payloadOf(body) } };
  }
  return validateParsed(source, json, body);
}

function validateParsed(source: VertexDef, json: unknown, body: string): Validation {
  const head = source.head;
  if (head.kind !== 'source') throw new Error(`${source.id} is not a source`);
  const parsed = head.schema.safeParse(json);
  if (!parsed.success) {
    return { ok: false, letter: { reason: 'schema-violation', message: `schema violation: ${z.prettifyError(parsed.error)}`, payload: payloadOf(body) } };
  }
  return { ok: true, event: parsed.data };
}

function payloadOf(body: string): string {
  return Buffer.byteLength(body) > 4096 ? `${body.slice(0, 4096)}…` : body;
}

/** An ingress message's events, each validated: one for an event's message, all of a batch message's (ingress-batch.ts). */
type MessageEvents = { readonly batch: boolean; readonly events: ReadonlyArray<{ readonly id: string; readonly result: Validation }> };

function eventsOfMessage(source: VertexDef, message: IngressMessage, limits: RuntimeLimits): MessageEvents {
  const single = (): MessageEvents => ({ batch: false, events: [{ id: message.id, result: validateEvent(source, message.body, limits) }] });
  // Only a body that parses as `{"cairnBatch": ...}` is a batch; any other is one event, validated as before.
  if (!message.body.trimStart().startsWith('{') || !message.body.includes(INGRESS_BATCH_KEY)) return single();
  let parsed: unknown;
  try {
    parsed = JSON.parse(message.body);
  } catch {
    return single();
  }
  const batch = batchOf(parsed);
  if (batch === undefined) return single();
  const bytes = Buffer.byteLength(message.body);
  const reject = (reason: DeadLetter['reason'], text: string): MessageEvents => ({
    batch: false,
    events: [{ id: message.id, result: { ok: false, letter: { reason, message: text, payload: payloadOf(message.body) } } }],
  });
  if (bytes > limits.maxMessageBytes) return reject('oversize-record', `batch message of ${bytes} bytes exceeds the limit of ${limits.maxMessageBytes} bytes`);
  if ('malformed' in batch) return reject('schema-violation', batch.malformed);
  return {
    batch: true,
    events: batch.events.map((event, i) => {
      const body = JSON.stringify(event) ?? 'null';
      const size = Buffer.byteLength(body);
      const result: Validation =
        size > limits.maxRecordBytes
          ? { ok: false, letter: { reason: 'oversize-record', message: `event of ${size} bytes exceeds the limit of ${limits.maxRecordBytes} bytes`, payload: payloadOf(body) } }
          : validateParsed(source, event, body);
      return { id: batchEventId(message.id, i), result };
    }),
  };
}

/**
 * Whether ingest tells a source to read after each append (RuntimeLimits `sourceReads`). When it
 * does not, a source reads at every checkpoint barrier (InstanceStep reads the log before it
 * snapshots) and goes on reading by itself while a read comes back full: the events of an
 * interval are processed in the barrier's step and the few after it, and output reaches a
 * transactional sink's readers no later (they see it when that checkpoint completes). The
 * coordinator triggers a checkpoint whenever the log grew since the last one
 * (unchangedSinceLastCheckpoint), and ingest wakes a sleeping coordinator, so no event waits
 * longer than an interval. Needs a trigger that fires by itself on new input: time or continuous.
 */
export function ingestPollsSources(topology: Topology, config: CheckpointConfig, limits: RuntimeLimits): boolean {
  if (limits.sourceReads === 'append') return true;
  const selfTriggering = config.enabled && (config.trigger === 'time' || config.trigger === 'continuous');
  if (limits.sourceReads === 'checkpoint') {
    if (!selfTriggering) throw new Error(`sourceReads 'checkpoint' needs checkpoints taken by a time or continuous trigger (checkpoint.enabled ${config.enabled}, trigger '${config.trigger}')`);
    return false;
  }
  const allTransactional = topology.vertices.every((v) => v.sink === undefined || v.sink.mode === 'transactional');
  return !(selfTriggering && allTransactional);
}

export function partitionOf(source: VertexDef, event: unknown, messageId: string): number {
  const head = source.head;
  const key = head.kind === 'source' && head.partitionKey ? head.partitionKey(event) : messageId;
  return murmur3(key) % source.parallelism;
}

export async function ingestBatch(deps: IngestDeps, messages: readonly IngressMessage[]): Promise<IngestOutcome> {
  // Per partition, in message order: one entry per message (a batch's events of the partition together, under the message's id).
  const byPartition = new Map<number, { entries: AppendEntry[]; ids: string[] }>();
  const letters: DeadLetter[] = [];
  for (const message of messages) {
    const { batch, events } = eventsOfMessage(deps.source, message, deps.limits);
    const mine = new Map<number, unknown[]>();
    for (const { id, result } of events) {
      if (!result.ok) {
        letters.push({ ...result.letter, id: `ingress:${id}`, vertex: deps.source.id, at: deps.clock.now() });
        continue;
      }
      const partition = partitionOf(deps.source, result.event, id);
      const list = mine.get(partition) ?? [];
      list.push(result.event);
      mine.set(partition, list);
    }
    for (const [partition, list] of mine) {
      const slot = byPartition.get(partition) ?? { entries: [], ids: [] };
      slot.entries.push(batch ? { id: message.id, events: list } : { id: message.id, event: list[0] });
      slot.ids.push(message.id);
      byPartition.set(partition, slot);
    }
  }
  if (letters.length > 0) await deps.deadLetters.put(letters);
  let appended = 0;
  let duplicates = 0;
  const failedIds: string[] = [];
  for (const [partition, { entries, ids }] of byPartition) {
    try {
      const result = await deps.log.append(partition, entries);
      appended += result.appended;
      duplicates += result.duplicates;
      const to = instanceId(deps.source.id, partition);
      if (deps.running === false || deps.pollSources === false) continue;
      await deps.transport.send([{ queue: deps.source.id, groupId: to, dedupId: `g${deps.generation}:poll:${to}:${result.head}`, body: { type: 'poll', gen: deps.generation, to } }]);
    } catch {
      failedIds.push(...ids);
    }
  }
  return { appended, duplicates, deadLettered: letters.length, failedIds };
}
