import { randomUUID } from 'node:crypto';
import { inject } from 'vitest';
import { createAwsStores, deleteJobTable, type AwsStores, type AwsStoresOptions } from '../../shared/aws/index.js';

export const credentials = { accessKeyId: 'test', secretAccessKey: 'test' };

export function cloudEndpoint(): string {
  const url = (inject as (key: string) => unknown)('cloudEndpoint') as string | undefined;
  if (!url) throw new Error('no cloud endpoint');
  return url;
}

export const unique = (prefix: string): string => `${prefix}-${randomUUID().slice(0, 10)}`;

/** Stores over a fresh table; `done()` deletes the table and closes the clients. */
export async function freshStores(options: Partial<AwsStoresOptions> = {}): Promise<AwsStores & { table: string; done(): Promise<void> }> {
  const table = options.tableName ?? unique('cairn-aws');
  const stores = await createAwsStores({
    tableName: table,
    bucket: 'cairn-aws-tests',
    endpoint: cloudEndpoint(),
    region: 'us-east-1',
    credentials,
    provision: true,
    ...options,
  });
  return {
    ...stores,
    table,
    done: async () => {
      await deleteJobTable(stores.clients.dynamo, table);
      stores.destroy();
    },
  };
}
