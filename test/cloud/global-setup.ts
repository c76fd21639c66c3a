/**
 * Starts the local cloud once for the whole `npm run test:cloud` run and hands its
 * endpoint to the tests (`inject('cloudEndpoint')`); stops it at the end.
 */
import type { TestProject } from 'vitest/node';
import { acquireCloud } from './acquire-cloud.js';

declare module 'vitest' {
  export interface ProvidedContext {
    cloudEndpoint: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const started = Date.now();
  const cloud = await acquireCloud();
  console.log(`[cloud] AWS endpoint ${cloud.endpoint}, ready in ${Date.now() - started} ms`);
  project.provide('cloudEndpoint', cloud.endpoint);
  return () => cloud.release();
}
