import { DEFAULT_DEDUP_WINDOW_MS } from '../../shared/core/retention.js';
import { HOURS_PER_MONTH } from '../aws-prices.js';

/**
 * Storage by what keeps it (shared/core/retention.ts), from the job table's items:
 * - `dedup`: ingest dedup items, deleted by DynamoDB's TTL at the end of the dedup window;
 * - `log`: source-log entries, heads and truncation marks, truncated below the oldest retained
 *   checkpoint at every completed checkpoint;
 * - `checkpoints`: checkpoint records and acks (the last `history`), job and instance records,
 *   snapshots, channel state, staged sink output: bounded by retention;
 * - `state`: the job's keyed state and its versions (versions pruned below the oldest retained
 *   checkpoint; the current values grow with the job's distinct keys, as the job defines);
 * - `output`: published transactional batches and idempotent upserts: the job's results, kept
 *   as long as their user keeps them;
 * - `deadLetters`: what the job could not process, with the reason.
 */
export type StorageKind = 'dedup' | 'log' | 'checkpoints' | 'state' | 'output' | 'deadLetters';

export const STORAGE_KINDS: readonly StorageKind[] = ['dedup', 'log', 'checkpoints', 'state', 'output', 'deadLetters'];

export function storageKindOf(pk: string): StorageKind {
  if (pk.startsWith('LD#')) return 'dedup';
  if (pk.startsWith('L#')) return 'log';
  if (pk.startsWith('SB#') || pk.startsWith('SU#')) return 'output';
  if (pk === 'DL') return 'deadLetters';
  if (pk.startsWith('K#') || pk.startsWith('V#') || pk.startsWith('C#') || pk.startsWith('N#')) return 'state';
  return 'checkpoints';
}

export type KindBytes = Record<StorageKind, number>;

export const noKindBytes = (): KindBytes => ({ dedup: 0, log: 0, checkpoints: 0, state: 0, output: 0, deadLetters: 0 });

const MONTH_MS = HOURS_PER_MONTH * 3600 * 1000;

/** Months a dedup item stays stored: its dedup window (then TTL deletes it, for free). */
export const DEDUP_MONTHS = DEFAULT_DEDUP_WINDOW_MS / MONTH_MS;

/** Kinds whose size retention bounds (the log between the oldest retained cut and the head; the last `history` checkpoints): a stock, not a per-event cost. */
export const BOUNDED_KINDS: readonly StorageKind[] = ['log', 'checkpoints'];

/** Kinds that grow with the events at steady load: dedup items (for their window), the job's keyed state and results. */
export const PER_EVENT_KINDS: readonly StorageKind[] = ['dedup', 'state', 'output', 'deadLetters'];

/**
 * Byte-months of storage that `growth` (bytes added over a window, by kind) leaves behind: dedup
 * items for their window (then TTL deletes them), every other kind given a month of what the
 * window added (nothing deletes that). Negative growth counts as 0. Bounded kinds are left out
 * by default: at steady load they do not grow (a short window still sees them fill up to their
 * bound, e.g. the first `history` checkpoint records), so they are reported as a stock instead.
 */
export function byteMonths(growth: KindBytes, kinds: readonly StorageKind[] = PER_EVENT_KINDS): number {
  return kinds.reduce((sum, kind) => sum + Math.max(0, growth[kind]) * (kind === 'dedup' ? DEDUP_MONTHS : 1), 0);
}

/** What Cairn itself keeps per event (not the job's keyed state, results or dead letters): its dedup items. */
export const ENGINE_KINDS: readonly StorageKind[] = ['dedup'];
