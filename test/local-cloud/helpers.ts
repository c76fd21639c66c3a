import { inject } from 'vitest';
import { createLocalCloudJob, type LocalCloudJob, type LocalCloudJobOptions } from '../../shared/aws/runner/index.js';

export const credentials = { accessKeyId: 'test', secretAccessKey: 'test' };
export const region = 'us-east-1';

export function cloudEndpoint(): string {
  const url = (inject as (key: string) => unknown)('cloudEndpoint') as string | undefined;
  if (!url) throw new Error('no cloud endpoint: the global setup (test/cloud/global-setup.ts) provides it');
  return url;
}

/** A job on the local cloud of this test run; `destroy()` it in a finally. */
export function localJob(options: Omit<LocalCloudJobOptions, 'endpoint'>): Promise<LocalCloudJob> {
  return createLocalCloudJob({ endpoint: cloudEndpoint(), region, credentials, ...options });
}

/** `Service: n per 1,000 events` lines. */
export function perThousand(snapshot: Record<string, number>, events: number): Record<string, number> {
  const byService: Record<string, number> = {};
  for (const [key, n] of Object.entries(snapshot)) {
    const service = key.slice(0, key.indexOf('.'));
    byService[service] = (byService[service] ?? 0) + n;
  }
  return Object.fromEntries(Object.entries(byService).map(([s, n]) => [s, Math.round((n * 1000) / events)]));
}
