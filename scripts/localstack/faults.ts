/**
 * The faults of `npm run test:localstack` (the fault run, on by default), injected into the
 * deployed stack from outside (no engine hook exists for the deployed functions):
 *
 * - a function that fails once: CAIRN_LAMBDA_FAULT on its configuration, read by our Lambda
 *   runtime (scripts/localstack/cairn_executor/.../runtime.mjs): it throws or crashes once,
 *   after the handler returned (its effects done, its response lost), so SQS redelivers the
 *   whole batch after the visibility timeout;
 * - a message reaching an operator's dead-letter queue: its event source mapping is paused
 *   while this process receives its messages (without deleting them) until SQS redrives one to
 *   the DLQ (what a consumer failing maxReceiveCount times does), then resumed. FIFO hands out
 *   the heads of several message groups in turn, so another head may be one receive short of
 *   the limit and follow it into the DLQ at its next receive: one rollback either way. The
 *   DLQ's own consumer (the stack's dead-letter function) is paused meanwhile, so that this
 *   process sees the message arrive there, and resumed with the rest;
 * - the rollback: nothing of this process. The deployed dead-letter function keeps the message
 *   as a dead letter, reports the failure on the job record and wakes the coordinator
 *   (StartExecution named after the failure), whose recovery workflow rolls the job back.
 */
import {
  GetEventSourceMappingCommand,
  GetFunctionConfigurationCommand,
  LambdaClient,
  ListEventSourceMappingsCommand,
  UpdateEventSourceMappingCommand,
  UpdateFunctionConfigurationCommand,
} from '@aws-sdk/client-lambda';
import { ChangeMessageVisibilityCommand, GetQueueAttributesCommand, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';

export interface Where {
  readonly endpoint: string;
  readonly region: string;
  readonly credentials: { accessKeyId: string; secretAccessKey: string };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Sets CAIRN_LAMBDA_FAULT on a function (merged into its environment) and waits for the update. */
export async function injectFunctionFault(where: Where, functionName: string, fault: { point: 'before' | 'after'; kind: 'throw' | 'crash'; once: string }): Promise<void> {
  const lambda = new LambdaClient(where);
  const config = await lambda.send(new GetFunctionConfigurationCommand({ FunctionName: functionName }));
  await lambda.send(
    new UpdateFunctionConfigurationCommand({ FunctionName: functionName, Environment: { Variables: { ...(config.Environment?.Variables ?? {}), CAIRN_LAMBDA_FAULT: JSON.stringify(fault) } } }),
  );
  for (let i = 0; i < 120; i++) {
    const now = await lambda.send(new GetFunctionConfigurationCommand({ FunctionName: functionName }));
    if (now.LastUpdateStatus === 'Successful' && now.State === 'Active') return;
    if (now.LastUpdateStatus === 'Failed') throw new Error(`updating ${functionName} failed: ${now.LastUpdateStatusReason}`);
    await sleep(500);
  }
  throw new Error(`updating ${functionName} did not finish`);
}

async function setMapping(lambda: LambdaClient, uuid: string, enabled: boolean): Promise<void> {
  await lambda.send(new UpdateEventSourceMappingCommand({ UUID: uuid, Enabled: enabled }));
  for (let i = 0; i < 120; i++) {
    const state = (await lambda.send(new GetEventSourceMappingCommand({ UUID: uuid }))).State;
    if (state === (enabled ? 'Enabled' : 'Disabled')) return;
    await sleep(500);
  }
  throw new Error(`event source mapping ${uuid} did not become ${enabled ? 'Enabled' : 'Disabled'}`);
}

async function visible(sqs: SQSClient, queueUrl: string): Promise<number> {
  const attributes = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['ApproximateNumberOfMessages'] }))).Attributes ?? {};
  return Number(attributes.ApproximateNumberOfMessages ?? 0);
}

/** The event source mapping that reads `queueUrl` (by its ARN). */
export async function mappingOfQueue(where: Where, queueUrl: string): Promise<string> {
  const sqs = new SQSClient(where);
  const arn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['QueueArn'] }))).Attributes?.QueueArn;
  if (!arn) throw new Error(`${queueUrl} has no QueueArn`);
  const mappings = (await new LambdaClient(where).send(new ListEventSourceMappingsCommand({ EventSourceArn: arn }))).EventSourceMappings ?? [];
  const uuid = mappings.find((m) => m.EventSourceArn === arn)?.UUID;
  if (!uuid) throw new Error(`no event source mapping reads ${arn}`);
  return uuid;
}

/**
 * Moves one message of `queueUrl` to its dead-letter queue the way SQS does: received (and
 * not deleted) until its receive count passes the redrive policy's maxReceiveCount. The queue's
 * event source mapping and the DLQ's (its consumer) are disabled meanwhile, so that no function
 * takes the message first and this process sees it arrive. `whilePaused` runs once the
 * mappings are off (e.g. pushing events, so the queue has messages).
 */
export async function redriveOneMessage(
  where: Where,
  mappings: { readonly queue: string; readonly dlq: string },
  queueUrl: string,
  dlqUrl: string,
  whilePaused: () => Promise<void>,
  say: (line: string) => void,
): Promise<string> {
  const lambda = new LambdaClient(where);
  const sqs = new SQSClient(where);
  await setMapping(lambda, mappings.queue, false);
  await setMapping(lambda, mappings.dlq, false);
  try {
    await whilePaused();
    const before = await visible(sqs, dlqUrl);
    let victim: string | undefined;
    for (let attempt = 1; attempt <= 60; attempt++) {
      const received = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 1, WaitTimeSeconds: 2, AttributeNames: ['All'] }));
      const message = received.Messages?.[0];
      if (message) {
        victim ??= message.MessageId;
        say(`    received ${message.MessageId} (receive count ${message.Attributes?.ApproximateReceiveCount}) without deleting it`);
        // Back to visible at once: the next receive counts again.
        if (message.ReceiptHandle) await sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: queueUrl, ReceiptHandle: message.ReceiptHandle, VisibilityTimeout: 0 }));
      }
      if ((await visible(sqs, dlqUrl)) > before) return victim ?? '?';
    }
    throw new Error(`no message of ${queueUrl} reached ${dlqUrl}`);
  } finally {
    // The DLQ's consumer first: it takes the message at once; then the queue's mapping.
    await setMapping(lambda, mappings.dlq, true);
    await setMapping(lambda, mappings.queue, true);
  }
}
