/**
 * Ingress batch messages: one SQS message carrying many events, as a Kinesis producer
 * aggregates records. The body is `{"cairnBatch":[event, ...]}` (an object with that one key);
 * any other body is one event. The message's id (its `CairnEventId`, else the SQS message id)
 * deduplicates the whole message: ingest appends a batch's events of each partition as one
 * entry (AppendEntry), so a redelivered or re-sent batch is recognized whole, at one dedup item
 * per partition instead of one per event, and one SQS request carries hundreds of events.
 *
 * The price of one id per message: a producer that sends an event again must send the same
 * batch again (same id, same events), as IngressProducer and `packIngressBatches` do for a
 * retry or a re-push of the same input. Event `i` of batch `id` is named `id#i` (dead letters,
 * partitioning of sources without a partition key).
 */

/** The one key of a batch message's body. */
export const INGRESS_BATCH_KEY = 'cairnBatch';

/** Events of one batch message at most: one batch is one segment of the source log (its read unit). */
export const MAX_BATCH_EVENTS = 500;

/** The bytes a batch body adds around its events: `{"cairnBatch":[` and `]}`. */
const ENVELOPE_BYTES = Buffer.byteLength(`{"${INGRESS_BATCH_KEY}":[]}`);

/**
 * What a parsed body is: a batch (`events`), a body that claims to be one but is not (`malformed`,
 * the reason), or undefined: one event.
 */
export function batchOf(parsed: unknown): { readonly events: readonly unknown[] } | { readonly malformed: string } | undefined {
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
  const keys = Object.keys(parsed);
  if (keys.length !== 1 || keys[0] !== INGRESS_BATCH_KEY) return undefined;
  const events: unknown = (parsed as Record<string, unknown>)[INGRESS_BATCH_KEY];
  if (!Array.isArray(events)) return { malformed: `batch message: '${INGRESS_BATCH_KEY}' must be an array of events, got ${events === null ? 'null' : typeof events}` };
  if (events.length > MAX_BATCH_EVENTS) return { malformed: `batch message of ${events.length} events exceeds the limit of ${MAX_BATCH_EVENTS} events per message` };
  return { events };
}

/** The id of event `index` of batch message `id`. */
export function batchEventId(id: string, index: number): string {
  return `${id}#${index}`;
}

export interface PackedBatch {
  /** The batch's id: deterministic in its events' ids, so a re-push of the same input packs the same batches. */
  readonly id: string;
  readonly body: string;
  readonly events: number;
}

/**
 * Packs events (each already serialized JSON, in order) into batch bodies of at most `maxBytes`
 * and MAX_BATCH_EVENTS events, greedily from the first: the same input packs the same way.
 * An event that alone exceeds `maxBytes` travels in a batch of its own (ingest rejects it as
 * oversize, a dead letter with the reason). The id of a batch is `<first event id>+<count>`.
 */
export function packIngressBatches(events: readonly { readonly id: string; readonly body: string }[], maxBytes: number): PackedBatch[] {
  const out: PackedBatch[] = [];
  let bodies: string[] = [];
  let firstId = '';
  let bytes = ENVELOPE_BYTES;
  const close = (): void => {
    if (bodies.length === 0) return;
    out.push({ id: `${firstId}+${bodies.length}`, body: `{"${INGRESS_BATCH_KEY}":[${bodies.join(',')}]}`, events: bodies.length });
    bodies = [];
    bytes = ENVELOPE_BYTES;
  };
  for (const event of events) {
    const size = Buffer.byteLength(event.body) + (bodies.length > 0 ? 1 : 0);
    if (bodies.length > 0 && (bytes + size > maxBytes || bodies.length >= MAX_BATCH_EVENTS)) close();
    if (bodies.length === 0) firstId = event.id;
    bodies.push(event.body);
    bytes += Buffer.byteLength(event.body) + (bodies.length > 1 ? 1 : 0);
  }
  close();
  return out;
}
