import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { CheckpointRecord, DeadLetter, JobRecord, OperatorSnapshotState } from '../core/ports.js';
import { isAlive, StateDirLock } from '../embedded/lock.js';
import { committedOutput } from '../embedded/stores.js';

/**
 * A read-only view of a state directory, for `cairn checkpoints` while a run holds the lock.
 * `EmbeddedDb.open` would replay the journal and compact it (a write), so this reads the
 * snapshot and the journal itself, never writing. It knows the embedded stores' table
 * layout (shared/embedded/stores.ts): job, cp, snap, chst, loghead, dlq, sinkb, sinku, and the
 * durable dead-letter queues (queue:<name>-dlq, shared/embedded/fifo-queue.ts).
 *
 * A torn last journal line (a write in progress, or a killed process) is ignored, as the
 * database does on open. A compaction racing with the read (only done when a run opens the
 * directory) is detected by the snapshot file changing under us, and the read is retried.
 */

const JOURNAL = 'journal.jsonl';
const SNAPSHOT = 'snapshot.json';
const TABLES = new Set(['job', 'cp', 'snap', 'chst', 'loghead', 'dlq', 'sinkb', 'sinku']);
const isDlqTable = (name: string): boolean => name.startsWith('queue:') && name.endsWith('-dlq');

export interface StateView {
  readonly dir: string;
  readonly job: JobRecord | undefined;
  /** Ascending id. */
  readonly checkpoints: readonly CheckpointRecord[];
  /** Checkpoint id -> instance -> snapshotted operator state (present only while restorable). */
  readonly snapshots: ReadonlyMap<number, ReadonlyMap<string, OperatorSnapshotState>>;
  /** Checkpoint id -> channel-state records stored for it. */
  readonly channelState: ReadonlyMap<number, number>;
  readonly partitions: readonly { readonly partition: number; readonly head: number; readonly sealed: boolean }[];
  readonly deadLetters: readonly DeadLetter[];
  /** Sink uid -> its committed output, in commit order. */
  readonly sinkOutput: ReadonlyMap<string, readonly unknown[]>;
  /** Messages redriven to a dead-letter queue after max receive count, with the reason. */
  readonly redriven: readonly { readonly queue: string; readonly reason: string; readonly body: unknown }[];
  /** Pid of the live process holding the directory's lock, if any. */
  readonly runningPid: number | undefined;
}

export type CheckpointState = 'retained' | 'pruned' | 'discarded' | 'pending' | 'aborted';

export class NoStateError extends Error {
  override readonly name = 'NoStateError';
}

export function readState(stateDir: string): StateView {
  const dbDir = join(stateDir, 'db');
  if (!existsSync(join(dbDir, SNAPSHOT)) && !existsSync(join(dbDir, JOURNAL))) {
    throw new NoStateError(`no job state in ${stateDir} (run \`cairn run <job> --state-dir ${stateDir}\` first)`);
  }
  for (let attempt = 0; ; attempt++) {
    const before = fingerprint(join(dbDir, SNAPSHOT));
    const tables = new Map<string, Map<string, unknown>>();
    for (const name of TABLES) tables.set(name, new Map());
    const snapshot = readIfExists(join(dbDir, SNAPSHOT));
    if (snapshot !== undefined && snapshot.length > 0) {
      const data = JSON.parse(snapshot) as Record<string, [string, unknown][]>;
      for (const [name, entries] of Object.entries(data)) if (TABLES.has(name) || isDlqTable(name)) tables.set(name, new Map(entries));
    }
    const journal = readIfExists(join(dbDir, JOURNAL)) ?? '';
    for (const line of journal.split('\n')) {
      if (line.length === 0) continue;
      let ops: unknown[][];
      try {
        ops = JSON.parse(line) as unknown[][];
      } catch {
        break; // torn last line: that write has not happened (yet)
      }
      for (const op of ops) {
        const name = op[0] as string;
        if (isDlqTable(name) && !tables.has(name)) tables.set(name, new Map());
        const table = tables.get(name);
        if (!table) continue;
        if (op.length === 2) table.delete(op[1] as string);
        else table.set(op[1] as string, op[2]);
      }
    }
    if (fingerprint(join(dbDir, SNAPSHOT)) !== before && attempt < 3) continue;
    return view(stateDir, tables);
  }
}

/** Restorable = completed and its snapshots not yet pruned. */
export function checkpointState(c: { status: CheckpointRecord['status']; abortReason?: string | undefined; snapshotted: boolean }): CheckpointState {
  if (c.status === 'PENDING') return 'pending';
  // Pruned: older than every retained checkpoint. Discarded: newer than a checkpoint restored later.
  if (c.status === 'COMPLETED') return c.snapshotted ? 'retained' : 'pruned';
  return c.abortReason?.startsWith('discarded by restore') ? 'discarded' : 'aborted';
}

export function stateOf(view: StateView, checkpoint: CheckpointRecord): CheckpointState {
  return checkpointState({ status: checkpoint.status, abortReason: checkpoint.abortReason, snapshotted: view.snapshots.has(checkpoint.id) });
}

function view(dir: string, tables: Map<string, Map<string, unknown>>): StateView {
  const table = <V>(name: string): Map<string, V> => tables.get(name) as Map<string, V>;
  const snapshots = new Map<number, Map<string, OperatorSnapshotState>>();
  for (const [key, state] of table<OperatorSnapshotState>('snap')) {
    const split = key.lastIndexOf('|');
    const id = Number(key.slice(split + 1));
    const byInstance = snapshots.get(id) ?? new Map<string, OperatorSnapshotState>();
    byInstance.set(key.slice(0, split), state);
    snapshots.set(id, byInstance);
  }
  const channelState = new Map<number, number>();
  for (const [key, entries] of table<unknown[]>('chst')) {
    const id = Number(key.split('|')[1]);
    channelState.set(id, (channelState.get(id) ?? 0) + entries.length);
  }
  const owner = StateDirLock.owner(dir);
  return {
    dir,
    job: table<JobRecord>('job').get('job'),
    checkpoints: [...table<CheckpointRecord>('cp').values()].sort((a, b) => a.id - b.id),
    snapshots,
    channelState,
    partitions: [...table<{ head: number; sealed: boolean }>('loghead')]
      .map(([partition, h]) => ({ partition: Number(partition), head: h.head, sealed: h.sealed }))
      .sort((a, b) => a.partition - b.partition),
    deadLetters: [...table<DeadLetter>('dlq').values()].sort((a, b) => a.at - b.at || a.id.localeCompare(b.id)),
    sinkOutput: sinkOutputOf(table<unknown[]>('sinkb'), table<unknown>('sinku')),
    redriven: [...tables]
      .filter(([name]) => isDlqTable(name))
      .flatMap(([name, messages]) =>
        [...(messages as Map<string, { reason?: string; body: unknown }>).values()].map((m) => ({ queue: name.slice('queue:'.length, -'-dlq'.length), reason: m.reason ?? '', body: m.body })),
      ),
    runningPid: owner !== undefined && owner !== process.pid && isAlive(owner) ? owner : undefined,
  };
}

function sinkOutputOf(batches: Map<string, unknown[]>, upserts: Map<string, unknown>): Map<string, unknown[]> {
  const sinkOf = (key: string): string => key.slice(0, key.indexOf('|'));
  const sinks = new Set([...batches.keys(), ...upserts.keys()].map(sinkOf));
  const out = new Map<string, unknown[]>();
  for (const sink of [...sinks].sort()) {
    const mine = <V>(m: Map<string, V>): [string, V][] => [...m].filter(([key]) => sinkOf(key) === sink);
    out.set(sink, committedOutput(mine(batches), mine(upserts)));
  }
  return out;
}

function readIfExists(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

function fingerprint(path: string): string {
  try {
    const s = statSync(path);
    return `${s.ino}:${s.size}:${s.mtimeMs}`;
  } catch {
    return 'none';
  }
}
