/**
 * The version-retention rule, written once for every state store. A prune to `keepFrom` (the
 * epoch of the oldest retained checkpoint) keeps exactly what a restore to any retained
 * checkpoint can read:
 * - no version record when the key's current value dates from `keepFrom` or before (every
 *   retained checkpoint sees that value), or when the key is absent with no later version;
 * - otherwise the newest version at or before `keepFrom` (what the oldest retained checkpoint
 *   restores) and every later one. A key made absent by a restore may still have later
 *   versions that retained checkpoints need.
 * A tombstone (a deleted key's null value) goes once it dates from `keepFrom` or before, and a
 * checkpoint's snapshot and channel-state records go once the checkpoint is older than `keepFrom`.
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

/** Whether a deleted key's tombstone may be removed by a prune to `keepFrom`. */
export function tombstoneExpired(current: { readonly epoch: number; readonly value: unknown } | undefined, keepFrom: number): boolean {
  return current !== undefined && current.value === null && current.epoch <= keepFrom;
}

/** Whether a checkpoint's snapshot and channel-state records may be removed by a prune to `keepFrom`. */
export function checkpointDataExpired(checkpointId: number, keepFrom: number): boolean {
  return checkpointId < keepFrom;
}
