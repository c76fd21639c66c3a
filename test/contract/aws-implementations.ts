import type { PortImplementation } from './implementations.js';

/**
 * The AWS adapters (DynamoDB, S3, ... against the local cloud's emulators, or LocalStack / a
 * real account through AWS_ENDPOINT_URL) register here, one descriptor per port (see the
 * descriptor types and the reopen capability in ./implementations.ts). Every contract suite
 * in test/contract runs each descriptor of its port unchanged.
 */
export const awsImplementations: readonly PortImplementation[] = [];
