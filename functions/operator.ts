/**
 * Lambda entry point of an operator vertex (SQS FIFO event source with
 * ReportBatchItemFailures). `createOperatorHandler` takes the job and ports (tests and the
 * local runner inject them); `handler` builds them from the environment (functions/lib/env.ts).
 */
import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { environmentFrom, once } from './lib/env.js';
import { createOperatorHandler, type OperatorHandler } from './lib/operator-handler.js';
import { powertools } from './lib/telemetry.js';

export { createOperatorHandler, type OperatorHandler, type OperatorHandlerDeps, type OperatorInvocationOutcome } from './lib/operator-handler.js';

const fromEnvironment = once(async (): Promise<OperatorHandler> => {
  const { topology, config, limits, stores } = await environmentFrom();
  return createOperatorHandler({
    job: topology,
    config,
    limits,
    state: stores.stateStore,
    log: stores.sourceLog,
    transport: stores.transport,
    deadLetters: stores.deadLetters,
    telemetry: powertools(process.env.POWERTOOLS_SERVICE_NAME ?? `cairn-${topology.graph.name}-operator`),
  });
});

export const handler = async (event: SQSEvent, context: Context): Promise<SQSBatchResponse> => (await fromEnvironment())(event, context);
