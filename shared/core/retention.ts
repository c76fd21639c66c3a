/**
 * The version-retention rule, written once for every state store. A prune to `keepFrom` (the
 * epoch of the oldest retained checkpoint) keeps exactly what a restore to any retained
 * checkpoint can read:
 * - no version record when the key's current value dates from `keepFrom` or before (every
 *   retained checkpoint sees that value), or when the key is absent with no later version;
 * - otherwise the newest version at or before `keepFrom` (what the oldest retained checkpoint
 *   restores) and every later one. A key made absent by a restore may still have later
 *   versions that retained checkpoints need.
 * A store that keeps closed values per step instead of per key (DynamoDB's change records)
 * drops those of epochs up to `keepFrom` (closedValuesExpired). A tombstone (a deleted key's
 * null value) goes once it dates from `keepFrom` or before, and a checkpoint's snapshot and
 * channel-state records go once the checkpoint is older than `keepFrom`.
 */

export interface VersionedValue {
  readonly epoch: number;
}

/** The key's versions a prune to `keepFrom` keeps (a subset of `versions`, in their order). */
export function versionsToKeep<V extends VersionedValue>(current: { readonly epoch: number } | undefined, versions: readonly V[], keepFrom: number): V[] {
  const newer = versions.filter((v) => v.epoch > keepFrom);
  if (current ? current.epoch <= keepFrom : newer.length === 0) return [];
  const newestOlder = versions.filter((v) => v.epoch <= keepFrom).reduce<V | undefined>((acc, v) => (!acc || v.epoch > acc.epoch ? v : acc), undefined);
  return versions.filter((v) => v === newestOlder || v.epoch > keepFrom);
}

/**
 * Whether what a store keeps of the values that first writes in `epoch` closed (the DynamoDB
 * store's change records, one per step) may go by a prune to `keepFrom`: a restore to a
 * retained checkpoint N >= keepFrom reads only first writes after N.
 */
export function closedValuesExpired(epoch: number, keepFrom: number): boolean {
  return epoch <= keepFrom;
}

/** Whether a deleted key's tombstone may be removed by a prune to `keepFrom`. */
export function tombstoneExpired(current: { readonly epoch: number; readonly value: unknown } | undefined, keepFrom: number): boolean {
  return current !== undefined && current.value === null && current.epoch <= keepFrom;
}

/** Whether a checkpoint's snapshot and channel-state records may be removed by a prune to `keepFrom`. */
export function checkpointDataExpired(checkpointId: number, keepFrom: number): boolean {
  return checkpointId < keepFrom;
}

// ---------- the rest of the job's storage: source log, ingest dedup, checkpoint metadata ----------
//
// Written once here (the policy); every store only executes it (the I/O). What may go:
// - a source-log entry once its offset is below every retained checkpoint's source offset for
//   its partition: a rollback to any retained checkpoint replays from that checkpoint's offsets,
//   and nothing else reads below them (live source instances are past the last completed
//   checkpoint's offsets). With no retained checkpoint, nothing goes (a rollback replays from 0).
// - an ingest dedup record once its dedup window has passed: an id must stay deduplicated only
//   as long as the ingress can deliver it again. The deployed ingress queue keeps a message at
//   most 14 days (SQS's maximum retention period, counted from the first send whatever the
//   receives and visibility timeouts), so the default window is 14 days plus one day of margin.
//   Whether the id's entry is still in the log does not matter: a dedup record answers "was
//   this id appended", and after the window no delivery can ask. A producer that re-sends the
//   same id on its own after the window (not an SQS redelivery) appends it again.
// - a checkpoint record (and any ack left under it) once it is older than every retained and
//   pending checkpoint and than the newest `history` checkpoints, which stay for `cairn status`
//   and `cairn checkpoints`. Acks may instead expire ACK_RETENTION_MS after they were written
//   (below): only a pending checkpoint reads them, for at most its timeout.

const DAY_MS = 24 * 60 * 60 * 1000;

/** SQS's maximum message retention (14 days) + 1 day of margin. */
export const DEFAULT_DEDUP_WINDOW_MS = 15 * DAY_MS;

/** When the dedup record of an id ingested at `ingestedAt` may go. */
export function dedupExpiresAt(ingestedAt: number, windowMs: number = DEFAULT_DEDUP_WINDOW_MS): number {
  return ingestedAt + windowMs;
}

/**
 * Whether a dedup record no longer deduplicates at `now`. Records written before retention
 * existed carry no expiry and deduplicate forever. Readers treat an expired record as absent,
 * so a store that deletes late (DynamoDB's TTL, within days) behaves as one that deletes at once.
 */
export function dedupExpired(expiresAt: number | undefined, now: number): boolean {
  return expiresAt !== undefined && expiresAt <= now;
}

/** The retained checkpoints as the log's truncation needs them (undefined: the record could not be read). */
export type RetainedOffsets = readonly ({ readonly sourceOffsets?: Readonly<Record<string, number>> } | undefined)[];

/**
 * Per source-log partition, the offset below which entries may go: the lowest source offset any
 * retained checkpoint recorded for an instance reading that partition. `readers` maps each
 * partition to the source instances that read it. A partition with a retained checkpoint that
 * lacks its offset (or a record that could not be read) keeps everything; with no retained
 * checkpoint at all, the result is empty (nothing goes).
 */
export function logTruncationPoints(retained: RetainedOffsets, readers: ReadonlyMap<number, readonly string[]>): Map<number, number> {
  const cuts = new Map<number, number>();
  if (retained.length === 0) return cuts;
  for (const [partition, instances] of readers) {
    let cut = Number.POSITIVE_INFINITY;
    for (const checkpoint of retained) {
      for (const instance of instances) {
        const offset = checkpoint?.sourceOffsets?.[instance];
        cut = Math.min(cut, offset ?? 0);
      }
    }
    if (Number.isFinite(cut) && cut > 0) cuts.set(partition, cut);
  }
  return cuts;
}

/**
 * An instance's acknowledgement of a checkpoint is read only while that checkpoint is pending,
 * at most its timeout (a day at most, see CheckpointConfig.timeoutMs); a store may let it expire
 * this long after it was written (DynamoDB's TTL deletes it for free) instead of deleting it.
 */
export const ACK_RETENTION_MS = 2 * DAY_MS;

/** When an acknowledgement written at `at` may go. */
export function ackExpiresAt(at: number): number {
  return at + ACK_RETENTION_MS;
}

/** Finished checkpoint records kept for `cairn status` / `cairn checkpoints` besides the retained and pending ones. */
export const DEFAULT_CHECKPOINT_HISTORY = 100;

/**
 * Checkpoint records with an id below this may go (with their acks): older than every retained
 * and pending checkpoint and than the newest `history` ids allocated.
 */
export function checkpointsForgottenBelow(
  job: { readonly nextCheckpointId: number; readonly retainedCheckpoints: readonly number[]; readonly pendingCheckpoints: readonly number[] },
  history: number = DEFAULT_CHECKPOINT_HISTORY,
): number {
  return Math.max(0, Math.min(job.nextCheckpointId - history, ...job.retainedCheckpoints, ...job.pendingCheckpoints));
}

/** Retention runs on every n-th completed checkpoint: about once per `pruneIntervalMs` of checkpoints at `intervalMs`. */
export function checkpointsPerPrune(config: { readonly intervalMs: number; readonly pruneIntervalMs: number }): number {
  return Math.max(1, Math.ceil(config.pruneIntervalMs / config.intervalMs));
}

/**
 * Whether the checkpoint that just completed runs retention: the oldest retained checkpoint
 * (`keepFrom`) moved into a later run of `every` checkpoint ids than before it completed (ids
 * skipped by aborted checkpoints cannot skip a run), or the checkpoint is the job's final one.
 * Pruning later only keeps more: every retained checkpoint stays restorable either way.
 */
export function pruneDue(keepFromBefore: number | undefined, keepFrom: number | undefined, every: number, final: boolean): boolean {
  if (keepFrom === undefined) return false;
  if (final || keepFromBefore === undefined || every <= 1) return true;
  return Math.floor(keepFrom / every) > Math.floor(keepFromBefore / every);
}
