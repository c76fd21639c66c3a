import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { SFNClient } from '@aws-sdk/client-sfn';
import { CoordinatorWaker } from '../aws/adapters/coordinator-waker.js';
import type { JobDefinition } from '../core/definition.js';
import { coordinatorEnvFrom, createCoordinatorHandler, createCoordinatorRuntime, type CoordinatorEvent } from './coordinator-handler.js';
import { createDeadLetterHandler } from './dead-letter-handler.js';
import { deadLetterEnvFrom, environmentFrom, once } from './environment.js';
import { createIngestHandler } from './ingest-handler.js';
import { createOperatorHandler } from './operator-handler.js';
import { powertools } from './telemetry.js';

/**
 * `cairn/lambda`: the Lambda handlers of a job, as thin factories over its definition (in the
 * spirit of Restate's createEndpointHandler). A function's entry file bundles the job with them:
 *
 *   import job from './job.js';
 *   export const { operator, ingest, coordinator, deadLetter } = createHandlers(job);
 *
 * Each handler builds its wiring from the environment the CairnJob construct sets (table,
 * bucket, queue URLs, checkpoint config) once per execution environment, at the first call.
 */
export interface JobHandlers {
  /** Every operator vertex (SQS FIFO event source with ReportBatchItemFailures). */
  readonly operator: (event: SQSEvent, context: Context) => Promise<SQSBatchResponse>;
  /** The ingress queue's event source. */
  readonly ingest: (event: SQSEvent, context: Context) => Promise<SQSBatchResponse>;
  /** The coordinator state machines' task states. */
  readonly coordinator: (event: CoordinatorEvent, context?: Context) => Promise<unknown>;
  /** Every dead-letter queue (ingress and operators): keeps each message as a dead letter, reports a lost one and wakes the coordinator. */
  readonly deadLetter: (event: SQSEvent, context: Context) => Promise<SQSBatchResponse>;
}

export function createHandlers(definition: JobDefinition, env: NodeJS.ProcessEnv = process.env): JobHandlers {
  const service = (role: string): string => env.POWERTOOLS_SERVICE_NAME ?? `cairn-${definition.name}-${role}`;
  const operator = once(async () => {
    const { topology, config, limits, stores } = await environmentFrom(definition, env);
    return createOperatorHandler({
      job: topology,
      config,
      limits,
      state: stores.stateStore,
      log: stores.sourceLog,
      transport: stores.transport,
      deadLetters: stores.deadLetters,
      telemetry: powertools(service('operator')),
    });
  });
  const ingest = once(async () => {
    const { topology, config, limits, stores } = await environmentFrom(definition, env);
    const waker = env.CAIRN_COORDINATOR_ARN ? new CoordinatorWaker(new SFNClient(env.AWS_ENDPOINT_URL ? { endpoint: env.AWS_ENDPOINT_URL } : {}), env.CAIRN_COORDINATOR_ARN) : undefined;
    return createIngestHandler({
      ...(waker ? { wake: async (name: string) => void (await waker.wake(name)) } : {}),
      job: topology,
      config,
      limits,
      log: stores.sourceLog,
      deadLetters: stores.deadLetters,
      transport: stores.transport,
      checkpoints: stores.checkpoints,
      telemetry: powertools(service('ingest')),
    });
  });
  const deadLetter = once(async () => {
    const { stores } = await environmentFrom(definition, env);
    const { queues, checkpointStateMachineArn } = deadLetterEnvFrom(env);
    const sfn = new SFNClient({ ...(env.AWS_ENDPOINT_URL ? { endpoint: env.AWS_ENDPOINT_URL } : {}), ...(env.AWS_REGION ? { region: env.AWS_REGION } : {}) });
    return createDeadLetterHandler({
      checkpoints: stores.checkpoints,
      deadLetters: stores.deadLetters,
      queues,
      coordinator: new CoordinatorWaker(sfn, checkpointStateMachineArn),
      telemetry: powertools(service('dead-letter')),
    });
  });
  const coordinator = createCoordinatorHandler(once(() => createCoordinatorRuntime(definition, coordinatorEnvFrom(env))));
  return {
    operator: async (event, context) => (await operator())(event, context),
    ingest: async (event, context) => (await ingest())(event, context),
    coordinator: coordinator.handler,
    deadLetter: async (event, context) => (await deadLetter())(event, context),
  };
}

export { createCoordinatorHandler, createCoordinatorRuntime, coordinatorEnvFrom, type CoordinatorEnv, type CoordinatorEvent } from './coordinator-handler.js';
export { CoordinatorTasks, DEFAULT_RUN_OPTIONS, type DecideOutput, type RunInput, type RunOptions, type RunOutput } from './coordinator-tasks.js';
export { createDeadLetterHandler, wakeNameOf, type CoordinatorWake, type DeadLetterHandler, type DeadLetterHandlerDeps } from './dead-letter-handler.js';
export { deadLetterEnvFrom, environmentFrom, HandlerConfigError, type DeadLetterEnvironment, type HandlerEnvironment } from './environment.js';
export { createIngestHandler, EVENT_ID_ATTRIBUTE, eventIdOf, type IngestHandler, type IngestHandlerDeps } from './ingest-handler.js';
export { createOperatorHandler, type OperatorHandler, type OperatorHandlerDeps } from './operator-handler.js';
