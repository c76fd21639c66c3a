/**
 * Lambda entry point of the ingest function (the ingress queue's event source, standard or
 * FIFO, with ReportBatchItemFailures). `createIngestHandler` takes the job and ports (tests and
 * the local runner inject them); `handler` builds them from the environment (functions/lib/env.ts).
 */
import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { environmentFrom, once } from './lib/env.js';
import { createIngestHandler, type IngestHandler } from './lib/ingest-handler.js';
import { powertools } from './lib/telemetry.js';

export { createIngestHandler, type IngestHandler, type IngestHandlerDeps, type IngestInvocationOutcome } from './lib/ingest-handler.js';

const fromEnvironment = once(async (): Promise<IngestHandler> => {
  const { topology, limits, stores } = await environmentFrom();
  return createIngestHandler({
    job: topology,
    limits,
    log: stores.sourceLog,
    deadLetters: stores.deadLetters,
    transport: stores.transport,
    checkpoints: stores.checkpoints,
    telemetry: powertools(process.env.POWERTOOLS_SERVICE_NAME ?? `cairn-${topology.graph.name}-ingest`),
  });
});

export const handler = async (event: SQSEvent, context: Context): Promise<SQSBatchResponse> => (await fromEnvironment())(event, context);
