import { createHash } from 'node:crypto';
import type { CheckpointAck, OperatorSnapshotState } from '../../core/ports.js';

/**
 * Single-table DynamoDB layout of one Cairn job. Key schema: `pk` (S, hash) + `sk` (S, range).
 *
 * Names of operators, sinks and instances are escaped (`%` -> `%25`, `#` -> `%23`) so that `#`
 * is only ever a separator; user keys (state keys, sink keys, dead-letter and ingest ids) come
 * last in a key and are kept verbatim up to 512 bytes, above that replaced by `\u0001h:` +
 * SHA-256 (the original is kept in an attribute).
 *
 * | item                    | pk                         | sk                                 | attributes |
 * | ----------------------- | -------------------------- | ---------------------------------- | ---------- |
 * | job record              | `JOB`                      | `JOB`                              | d, ver (N), gen (N) |
 * | generation fence        | `JOB`                      | `GEN`                              | gen (N) |
 * | checkpoint record       | `CP`                       | pad(id)                            | d |
 * | snapshot and ack        | `A#`pad(cp)                | instance                           | d = {snapshot, ack?}: the instance's snapshot of the checkpoint and, when the same step acknowledged it, its ack |
 * | late ack                | `A#`pad(cp)                | instance`~ack`                     | d = {ack}, exp (N): TTL, two days after the ack (retention.ts ACK_RETENTION_MS): an unaligned checkpoint acknowledged by a later step than its snapshot |
 * | instance record         | `I#`instance               | `I`                                | d, ver (N), gen (N), fg (N): fenced below this generation, tok, fold, claim |
 * | live-key counter        | `N#`op                     | instance, or `~restore`            | n (N) |
 * | keyed-state item        | `K#`op`#`keyGroup          | key                                | d = {value, epoch} |
 * | change record           | `C#`op`#`shard             | pad(epoch)`#`instance`#`pad(ver)   | d = [{g: keyGroup, k: key, f: 1 (first write in the epoch), b: the item it closed / bs: its spilled payload, t: 1 (deleted)}]: one per step and epoch (copy-on-write; a spilled item's blob moves here as is) |
 * | channel state chunk     | `CS#`op                    | pad(cp)`#`instance`#`pad(version)  | d |
 * | staged sink output      | `ST#`sink                  | pad(epoch)`#`instance`#`pad(ver)   | d, inst |
 * | sink batch (published)  | `SB#`sink                  | batchId                            | d |
 * | sink upsert             | `SU#`sink                  | key                                | d, key |
 * | dead letter             | `DL`                       | id                                 | d |
 * | source-log head         | `L#`partition              | `H`                                | head (N), ix (N): offsets below it are indexed, sealed (BOOL), sp (BOOL) |
 * | source-log segment      | `L#`partition              | `E#`pad(last offset)               | f (N): first offset, es (L of S) or ez: the payloads of offsets f..last, ids (L of S), x (N): their dedup expiry |
 * | source-log dedup        | `LD#`partition`#`id        | `D`                                | o (N), exp (N): a key of its own, off the partition's hot `L#` key |
 * | source-log truncation   | `L#`partition              | `T`                                | low (N): every offset below it is deleted |
 * | source-log spill marker | `L#`partition              | `S#`pad(offset)                    | b: the S3 blob of a spilled entry, deleted with it |
 *
 * The generation fence is the job record's `gen` in an item of its own, written in the same
 * transaction as the job record whenever the generation changes (and only then). A restore
 * checks it, so it is kept tiny: a ConditionCheck is billed by the size of the item it reads.
 * Step commits check no job item (one item checked by every step of the job would be hot):
 * a recovery fences each instance record (`fg`, see DynamoStateStore.fenceInstances) before
 * it restores anything, and a commit is conditional on its own instance record.
 *
 * `shard` = murmur3(instance) mod changeShards (default 4): the change records of one operator
 * spread over a few partitions instead of one hot one; restore and prune query each shard by
 * epoch range, so they cost O(steps that changed keys) + changeShards queries.
 *
 * Retention (shared/core/retention.ts): `exp` is the table's TTL attribute (epoch seconds).
 * Dedup items and late acks carry it: DynamoDB deletes them for free some time after it passes
 * (a pending checkpoint reads its acks for at most its timeout, a day at most), and until then
 * readers of dedup items treat an item past `exp` as absent. (DynamoDB Local 3.x does delete by TTL,
 * within seconds, except items more than five years past `exp`, as AWS documents.)
 * Log entries below every retained checkpoint, old checkpoint records and the snapshots under
 * them are deleted by the coordinator's prune (their cut is an offset / an id, not a time).
 *
 * A checkpoint's snapshot and ack are one item: the step that takes an aligned snapshot also
 * acknowledges it, and a step commit bills each item it writes (2 units per KB in its
 * transaction), so one item per instance and checkpoint instead of two. The snapshot must stay
 * while its checkpoint is retained, so the item has no TTL; it goes with its checkpoint record
 * (DynamoCheckpointStore.forgetBelow), which retention.ts keeps at least as long as any retained
 * checkpoint. A step writes a snapshot of checkpoint N only while no checkpoint after N has
 * completed (its channels deliver barrier N before any later one), so no snapshot is written
 * under a record already forgotten.
 *
 * Payloads: `d` holds JSON; `@z:` + base64 of the deflated JSON when that is over 900 bytes and
 * deflating makes it smaller (not sink output or dead letters: their users read them as JSON);
 * or `@s3:<blob key>` when it still exceeds the spill threshold (JSON never starts with `@`),
 * the bytes then live in the BlobStore (S3). A log segment's payloads are the list `es`, or `ez`
 * (base64 of the deflated JSON of the list) on the same rule.
 *
 * Pending (overflow) writes of a step commit too large for one transaction carry the payload
 * in `p` instead of `d`, plus `pt` (the step's token), `pi` (instance) and `pv` (the instance
 * version the step commits). A reader treats `p` as the item's value only if the instance
 * record has `ver = pv` and `tok = pt`; see dynamo-state-store.ts for the protocol.
 */

export const pad = (n: number): string => String(n).padStart(12, '0');

/** Escapes a name so that `#` only ever separates key parts. */
export const esc = (name: string): string => name.replace(/%/g, '%25').replace(/#/g, '%23');

const MAX_KEY_BYTES = 512;

/** A user-supplied key as a key part: verbatim if short enough, else a hash. */
export function keyPart(key: string): string {
  if (Buffer.byteLength(key) <= MAX_KEY_BYTES) return key;
  return `\u0001h:${createHash('sha256').update(key).digest('hex')}`;
}

export const BLOB_PREFIX = '@s3:';

export interface ItemKey {
  readonly pk: string;
  readonly sk: string;
}

export const Keys = {
  job: (): ItemKey => ({ pk: 'JOB', sk: 'JOB' }),
  generationFence: (): ItemKey => ({ pk: 'JOB', sk: 'GEN' }),
  checkpoint: (id: number): ItemKey => ({ pk: 'CP', sk: pad(id) }),
  checkpointPk: 'CP',
  ackPk: (checkpointId: number): string => `A#${pad(checkpointId)}`,
  /** An instance's snapshot of a checkpoint, with its ack when the same step acknowledged it. */
  ack: (checkpointId: number, instance: string): ItemKey => ({ pk: `A#${pad(checkpointId)}`, sk: instance }),
  /** An ack written by a later step than its snapshot (unaligned checkpoints). */
  lateAck: (checkpointId: number, instance: string): ItemKey => ({ pk: `A#${pad(checkpointId)}`, sk: `${instance}~ack` }),
  instance: (instance: string): ItemKey => ({ pk: `I#${instance}`, sk: 'I' }),
  livePk: (op: string): string => `N#${esc(op)}`,
  live: (op: string, instance: string): ItemKey => ({ pk: `N#${esc(op)}`, sk: instance }),
  liveRestore: (op: string): ItemKey => ({ pk: `N#${esc(op)}`, sk: '~restore' }),
  item: (op: string, keyGroup: number, key: string): ItemKey => ({ pk: `K#${esc(op)}#${keyGroup}`, sk: keyPart(key) }),
  changePk: (op: string, shard: number): string => `C#${esc(op)}#${shard}`,
  /** A step's change record of one epoch. */
  change: (op: string, shard: number, epoch: number, instance: string, version: number): ItemKey => ({
    pk: `C#${esc(op)}#${shard}`,
    sk: `${pad(epoch)}#${esc(instance)}#${pad(version)}`,
  }),
  channelStatePk: (op: string): string => `CS#${esc(op)}`,
  channelStatePrefix: (checkpointId: number, instance: string): string => `${pad(checkpointId)}#${esc(instance)}#`,
  channelState: (op: string, checkpointId: number, instance: string, version: number): ItemKey => ({
    pk: `CS#${esc(op)}`,
    sk: `${pad(checkpointId)}#${esc(instance)}#${pad(version)}`,
  }),
  stagedPk: (sink: string): string => `ST#${esc(sink)}`,
  stagedPrefix: (epoch: number, instance: string): string => `${pad(epoch)}#${esc(instance)}#`,
  staged: (sink: string, epoch: number, instance: string, version: number): ItemKey => ({
    pk: `ST#${esc(sink)}`,
    sk: `${pad(epoch)}#${esc(instance)}#${pad(version)}`,
  }),
  sinkBatchPk: (sink: string): string => `SB#${esc(sink)}`,
  sinkBatch: (sink: string, batchId: string): ItemKey => ({ pk: `SB#${esc(sink)}`, sk: keyPart(batchId) }),
  sinkUpsertPk: (sink: string): string => `SU#${esc(sink)}`,
  sinkUpsert: (sink: string, key: string): ItemKey => ({ pk: `SU#${esc(sink)}`, sk: keyPart(key) }),
  deadLetterPk: 'DL',
  deadLetter: (id: string): ItemKey => ({ pk: 'DL', sk: keyPart(id) }),
  logPk: (partition: number): string => `L#${partition}`,
  logHead: (partition: number): ItemKey => ({ pk: `L#${partition}`, sk: 'H' }),
  /** A segment of the source log, keyed by its last offset. */
  logSegment: (partition: number, lastOffset: number): ItemKey => ({ pk: `L#${partition}`, sk: `E#${pad(lastOffset)}` }),
  logDedup: (partition: number, id: string): ItemKey => ({ pk: `LD#${partition}#${keyPart(id)}`, sk: 'D' }),
  logTruncation: (partition: number): ItemKey => ({ pk: `L#${partition}`, sk: 'T' }),
  logSpill: (partition: number, offset: number): ItemKey => ({ pk: `L#${partition}`, sk: `S#${pad(offset)}` }),
};

/** The value of an `A#` item: an instance's snapshot of a checkpoint and/or its ack. */
export interface CheckpointEntry {
  readonly snapshot?: OperatorSnapshotState;
  readonly ack?: CheckpointAck;
}

/** The job table's TTL attribute (epoch seconds); infra/cairn-job.ts and provision.ts enable TTL on it. */
export const TTL_ATTRIBUTE = 'exp';

/** A TTL value in epoch seconds for a time in ms (rounded up: never expires before `at`). */
export const ttlSeconds = (at: number): number => Math.ceil(at / 1000);

/** Whether an item whose TTL attribute is `exp` is past it at `now` (ms): such an item counts as absent. */
export const ttlPassed = (exp: unknown, now: number): boolean => typeof exp === 'number' && exp * 1000 <= now;

/** Upper bound of a string key range that starts with `prefix` (for BETWEEN / < queries). */
export const prefixEnd = (prefix: string): string => `${prefix}\uffff`;
