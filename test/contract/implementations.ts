import { describe, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BlobStore, CheckpointStore, DeadLetterStore, SinkStore, SourceLog, StateStore } from '../../shared/core/ports.js';
import { EmbeddedDb } from '../../shared/embedded/db.js';
import { EmbeddedBlobStore, EmbeddedCheckpointStore, EmbeddedDeadLetterStore, EmbeddedSinkStore, EmbeddedSourceLog, EmbeddedStateStore } from '../../shared/embedded/stores.js';
import { awsImplementations } from './aws-implementations.js';
import { CONTRACT_DEDUP_WINDOW_MS, ManualClock } from './clock.js';

/**
 * Implementation descriptors of the contract suites (TESTING.md, layer 2). Every port has one
 * suite in this directory; each suite runs `describe.each` over the descriptors of its port.
 * An implementation is done when its suite passes unchanged.
 *
 * A descriptor's `create()` gives a FRESH, empty backing store (tests never share one) and a
 * `cleanup()` that removes it.
 *
 * Capabilities are explicit flags, never guessed from the name:
 * - `reopen`: the created resource has `reopen()`, which drops this client (closing files,
 *   connections) and opens a new one over the SAME backing store. The durability tests
 *   (write, reopen, read back) run only where it is true. After `reopen()`, only the returned
 *   resource is used; its `cleanup()` removes the backing store.
 */

export interface Capabilities {
  readonly reopen: boolean;
  /** A finished checkpoint's acks stay until they expire (DynamoDB's TTL, ACK_RETENTION_MS after they were written) or their record is forgotten, instead of going when it finishes. */
  readonly acksExpire?: boolean;
}

interface Resource<Self> {
  cleanup(): Promise<void>;
  /** Present iff the descriptor's `capabilities.reopen` is true. */
  reopen?(): Promise<Self>;
}

/**
 * StateStore, CheckpointStore, SinkStore and DeadLetterStore over ONE backing store: a step
 * commit writes acks (seen by CheckpointStore.listAcks), idempotent-sink upserts (seen by
 * SinkStore.read) and dead letters (seen by DeadLetterStore.list) and is fenced by the job
 * generation stored by CheckpointStore.putJob. Used by the suites of those four ports.
 */
export interface StoreFamily extends Resource<StoreFamily> {
  readonly stateStore: StateStore;
  readonly checkpoints: CheckpointStore;
  readonly sinks: SinkStore;
  readonly deadLetters: DeadLetterStore;
}

export interface SourceLogResource extends Resource<SourceLogResource> {
  readonly log: SourceLog;
  /** The log's clock (appends, dedup expiry); its dedup window is CONTRACT_DEDUP_WINDOW_MS (./clock.ts). */
  readonly clock: ManualClock;
}

export interface BlobStoreResource extends Resource<BlobStoreResource> {
  readonly blobs: BlobStore;
}

export interface StoreFamilyImplementation {
  readonly port: 'store-family';
  readonly name: string;
  readonly capabilities: Capabilities;
  create(): Promise<StoreFamily>;
}

export interface SourceLogImplementation {
  readonly port: 'source-log';
  readonly name: string;
  readonly capabilities: Capabilities;
  create(): Promise<SourceLogResource>;
}

export interface BlobStoreImplementation {
  readonly port: 'blob-store';
  readonly name: string;
  readonly capabilities: Capabilities;
  create(): Promise<BlobStoreResource>;
}

/** One registered implementation of one port (or of the store family). */
export type PortImplementation = StoreFamilyImplementation | SourceLogImplementation | BlobStoreImplementation;

// ---------- embedded ----------

/** A backing EmbeddedDb: in memory, or in a temp directory that can be closed and reopened. */
function embeddedBacking<R extends Resource<R>>(durable: boolean, build: (db: EmbeddedDb) => Omit<R, 'cleanup' | 'reopen'>): () => Promise<R> {
  return () => {
    if (!durable) {
      const db = EmbeddedDb.memory();
      return Promise.resolve({ ...build(db), cleanup: () => Promise.resolve() } as unknown as R);
    }
    const dir = mkdtempSync(join(tmpdir(), 'cairn-contract-'));
    const open = (): R => {
      const db = EmbeddedDb.open(dir);
      return {
        ...build(db),
        cleanup: () => {
          db.close();
          rmSync(dir, { recursive: true, force: true });
          return Promise.resolve();
        },
        reopen: () => {
          db.close();
          return Promise.resolve(open());
        },
      } as unknown as R;
    };
    return Promise.resolve(open());
  };
}

function embedded(durable: boolean): PortImplementation[] {
  const name = durable ? 'embedded (journal on disk)' : 'embedded (memory)';
  const capabilities: Capabilities = { reopen: durable };
  return [
    {
      port: 'store-family',
      name,
      capabilities,
      create: embeddedBacking<StoreFamily>(durable, (db) => ({
        stateStore: new EmbeddedStateStore(db),
        checkpoints: new EmbeddedCheckpointStore(db),
        sinks: new EmbeddedSinkStore(db),
        deadLetters: new EmbeddedDeadLetterStore(db),
      })),
    },
    {
      port: 'source-log',
      name,
      capabilities,
      create: () => {
        const clock = new ManualClock();
        return embeddedBacking<SourceLogResource>(durable, (db) => ({ log: new EmbeddedSourceLog(db, { clock, dedupWindowMs: CONTRACT_DEDUP_WINDOW_MS }), clock }))();
      },
    },
    { port: 'blob-store', name, capabilities, create: embeddedBacking<BlobStoreResource>(durable, (db) => ({ blobs: new EmbeddedBlobStore(db) })) },
  ];
}

export const embeddedImplementations: readonly PortImplementation[] = [...embedded(false), ...embedded(true)];

export const allImplementations: readonly PortImplementation[] = [...embeddedImplementations, ...awsImplementations];

export function implementationsOf<P extends PortImplementation['port']>(port: P): Extract<PortImplementation, { port: P }>[] {
  return allImplementations.filter((i): i is Extract<PortImplementation, { port: P }> => i.port === port);
}

/** Runs `body` on a fresh resource and always cleans up the resource it ends with (reopen hands over). */
export async function withResource<R extends Resource<R>>(impl: { create(): Promise<R> }, body: (resource: R, reopen: () => Promise<R>) => Promise<void>): Promise<void> {
  let current = await impl.create();
  const reopen = async (): Promise<R> => {
    if (!current.reopen) throw new Error('this implementation declares the reopen capability but its resource has no reopen()');
    current = await current.reopen();
    return current;
  };
  try {
    await body(current, reopen);
  } finally {
    await current.cleanup();
  }
}

/**
 * Defines a test only where the implementation has the capability (durability tests for stores
 * that can be reopened). An in-memory store has no such test at all, rather than a skipped one.
 */
export function itWhen(capable: boolean): (name: string, fn: () => Promise<void>, timeout?: number) => void {
  return capable ? (name, fn, timeout) => it(name, fn, timeout) : () => undefined;
}

/** A describe block only where the implementation has the capability. */
export function describeWhen(capable: boolean): (name: string, fn: () => void) => void {
  return capable ? (name, fn) => describe(name, fn) : () => undefined;
}
