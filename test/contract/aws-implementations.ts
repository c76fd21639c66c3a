import { randomUUID } from 'node:crypto';
import { inject } from 'vitest';
import { createAwsStores, deleteJobTable, DynamoSourceLog, ensureBucket, S3BlobStore, type AwsStores } from '../../shared/aws/index.js';
import { CONTRACT_DEDUP_WINDOW_MS, ManualClock } from './clock.js';
import type { BlobStoreResource, Capabilities, PortImplementation, SourceLogResource, StoreFamily } from './implementations.js';

/**
 * The AWS adapters (DynamoDB, S3, ... against the local cloud's emulators, or LocalStack / a
 * real account through AWS_ENDPOINT_URL) register here, one descriptor per port (see the
 * descriptor types and the reopen capability in ./implementations.ts). Every contract suite
 * in test/contract runs each descriptor of its port unchanged.
 *
 * Every create() makes its own DynamoDB table (and S3 key prefix), so tests are independent;
 * reopen() drops the SDK clients and builds new ones over the same table and bucket.
 */

const BUCKET = 'cairn-contract';
const name = 'aws (DynamoDB + S3, local cloud)';
const capabilities: Capabilities = { reopen: true, acksExpire: true };

function endpoint(): string {
  const provided = (inject as (key: string) => unknown)('cloudEndpoint') as string | undefined;
  const url = provided ?? process.env.AWS_ENDPOINT_URL;
  if (url === undefined || url === '') throw new Error('no AWS endpoint: run under the vitest global setup (local cloud) or set AWS_ENDPOINT_URL');
  return url;
}

async function stores(tableName: string, provision: boolean): Promise<AwsStores> {
  return createAwsStores({
    tableName,
    bucket: BUCKET,
    endpoint: endpoint(),
    region: 'us-east-1',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    provision,
  });
}

/** A fresh table; `build` picks the ports of the resource from the stores. */
function tableBacked<R extends { cleanup(): Promise<void>; reopen?(): Promise<R> }>(build: (s: AwsStores, table: string) => Omit<R, 'cleanup' | 'reopen'>): () => Promise<R> {
  return async () => {
    const table = `cairn-ct-${randomUUID().slice(0, 12)}`;
    const open = async (provision: boolean): Promise<R> => {
      const s = await stores(table, provision);
      return {
        ...build(s, table),
        cleanup: async () => {
          await deleteJobTable(s.clients.dynamo, table);
          s.destroy();
        },
        reopen: () => {
          s.destroy();
          return open(false);
        },
      } as R;
    };
    return open(true);
  };
}

export const awsImplementations: readonly PortImplementation[] = [
  {
    port: 'store-family',
    name,
    capabilities,
    create: tableBacked<StoreFamily>((s) => ({ stateStore: s.stateStore, checkpoints: s.checkpoints, sinks: s.sinks, deadLetters: s.deadLetters })),
  },
  {
    port: 'source-log',
    name,
    capabilities,
    create: () => {
      const clock = new ManualClock();
      return tableBacked<SourceLogResource>((s) => ({ log: new DynamoSourceLog(s.io, { clock, dedupWindowMs: CONTRACT_DEDUP_WINDOW_MS }), clock }))();
    },
  },
  {
    port: 'blob-store',
    name: 'aws (S3, local cloud)',
    capabilities,
    create: async () => {
      const prefix = `contract/${randomUUID()}/`;
      const open = async (provision: boolean): Promise<BlobStoreResource> => {
        const s = await stores(`cairn-ct-unused`, false);
        if (provision) await ensureBucket(s.clients.s3, BUCKET);
        return {
          blobs: new S3BlobStore(s.clients.s3, BUCKET, prefix),
          cleanup: () => {
            s.destroy();
            return Promise.resolve();
          },
          reopen: () => {
            s.destroy();
            return open(false);
          },
        };
      };
      return open(true);
    },
  },
];
