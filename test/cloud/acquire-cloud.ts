/**
 * How the local-cloud tests get an AWS endpoint: AWS_ENDPOINT_URL when set (a real
 * LocalStack, say), else a local cloud started here. A missing emulator is an error in
 * CI and locally alike (never a silent skip), saying what to run.
 */
import { LocalCloudUnavailableError, startLocalCloud } from '../../shared/aws/local-cloud/local-cloud.js';

export interface AcquiredCloud {
  readonly endpoint: string;
  release(): Promise<void>;
}

export async function acquireCloud(): Promise<AcquiredCloud> {
  const external = process.env.AWS_ENDPOINT_URL;
  if (external !== undefined && external !== '') return { endpoint: external, release: () => Promise.resolve() };
  const rawPort = process.env.CAIRN_EDGE_PORT;
  const edgePort = rawPort !== undefined && rawPort !== '' ? Number(rawPort) : 0;
  try {
    const cloud = await startLocalCloud({ edgePort });
    return { endpoint: cloud.endpoint, release: () => cloud.stop() };
  } catch (err) {
    if (err instanceof LocalCloudUnavailableError) {
      const who = process.env.CI === 'true' ? 'CI must install the emulators before this layer runs' : 'install them once on this machine';
      throw new Error(`The local-cloud test layer cannot run: ${err.reason}.\n${who}: npm run cloud:install (needs Java 17+, Maven 3.8+, Python 3 with venv).`, {
        cause: err,
      });
    }
    throw err;
  }
}
