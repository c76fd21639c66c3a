/**
 * The faults of `npm run test:localstack -- --faults`, injected into the deployed stack from
 * outside (no engine hook exists for the deployed functions):
 *
 * - a function that fails once: CAIRN_LAMBDA_FAULT on its configuration, read by our Lambda
 *   runtime (scripts/localstack/cairn_executor/.../runtime.mjs): it throws or crashes once,
 *   after the handler returned (its effects done, its response lost), so SQS redelivers the
 *   whole batch after the visibility timeout;
 * - a message reaching an operator's dead-letter queue: its event source mapping is paused
 *   while this process receives its messages (without deleting them) until SQS redrives one to
 *   the DLQ (what a consumer failing maxReceiveCount times does), then resumed. FIFO hands out
 *   the heads of several message groups in turn, so another head may be one receive short of
 *   the limit and follow it into the DLQ at its next receive: one rollback either way;
 * - the rollback: the DLQ-depth alarm goes to ALARM in LocalStack, but LocalStack community
 *   sends no "CloudWatch Alarm State Change" event to EventBridge, so this process plays that
 *   part: on the alarm's transition to ALARM it starts the DeadLetterRollback rule's target
 *   with the rule's own input transformer applied (a checkpoint execution with `restart`),
 *   and the recovery workflow rolls the job back.
 *
 * CloudWatch and EventBridge have no SDK client in this project: both are called with plain
 * HTTP (LocalStack does not check signatures).
 */
import { GetEventSourceMappingCommand, GetFunctionConfigurationCommand, LambdaClient, UpdateEventSourceMappingCommand, UpdateFunctionConfigurationCommand } from '@aws-sdk/client-lambda';
import { ChangeMessageVisibilityCommand, GetQueueAttributesCommand, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';

export interface Where {
  readonly endpoint: string;
  readonly region: string;
  readonly credentials: { accessKeyId: string; secretAccessKey: string };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function authorization(where: Where, service: string): string {
  return `AWS4-HMAC-SHA256 Credential=${where.credentials.accessKeyId}/20260101/${where.region}/${service}/aws4_request, SignedHeaders=host, Signature=0`;
}

/** One CloudWatch call in the query protocol; returns the XML. */
async function cloudwatch(where: Where, params: Record<string, string>): Promise<string> {
  const response = await fetch(where.endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8', authorization: authorization(where, 'monitoring') },
    body: new URLSearchParams({ Version: '2010-08-01', ...params }).toString(),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`CloudWatch ${params.Action}: HTTP ${response.status} ${text.slice(0, 300)}`);
  return text;
}

/** One EventBridge call (JSON 1.1). */
async function events<T>(where: Where, action: string, body: object): Promise<T> {
  const response = await fetch(where.endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': `AWSEvents.${action}`, authorization: authorization(where, 'events') },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`EventBridge ${action}: HTTP ${response.status} ${text.slice(0, 300)}`);
  return JSON.parse(text) as T;
}

export async function alarmState(where: Where, alarmName: string): Promise<string | undefined> {
  const xml = await cloudwatch(where, { Action: 'DescribeAlarms', 'AlarmNames.member.1': alarmName });
  return /<StateValue>([^<]+)<\/StateValue>/.exec(xml)?.[1];
}

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

/**
 * Moves one message of `queueUrl` to its dead-letter queue the way SQS does: received (and
 * not deleted) until its receive count passes the redrive policy's maxReceiveCount. The queue's
 * event source mapping is disabled meanwhile, so that no function takes the message first.
 * `whilePaused` runs once the mapping is off (e.g. pushing events, so the queue has messages).
 */
export async function redriveOneMessage(where: Where, mappingUuid: string, queueUrl: string, dlqUrl: string, whilePaused: () => Promise<void>, say: (line: string) => void): Promise<string> {
  const lambda = new LambdaClient(where);
  const sqs = new SQSClient(where);
  await setMapping(lambda, mappingUuid, false);
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
    await setMapping(lambda, mappingUuid, true);
  }
}

interface RuleTarget {
  readonly Arn: string;
  readonly Input?: string;
  readonly InputTransformer?: { readonly InputPathsMap?: Record<string, string>; readonly InputTemplate: string };
}

function jsonPath(value: unknown, path: string): unknown {
  return path
    .replace(/^\$\.?/, '')
    .split('.')
    .filter((k) => k !== '')
    .reduce<unknown>((v, key) => (v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[key] : undefined), value);
}

/** What EventBridge would do for the alarm's state change: start each of the rule's targets with its input. */
export async function deliverAlarmEvent(where: Where, ruleName: string, alarm: { name: string; arn: string }): Promise<string[]> {
  const event = {
    version: '0',
    source: 'aws.cloudwatch',
    'detail-type': 'CloudWatch Alarm State Change',
    region: where.region,
    resources: [alarm.arn],
    detail: { alarmName: alarm.name, state: { value: 'ALARM' }, previousState: { value: 'OK' } },
  };
  const { Targets } = await events<{ Targets?: RuleTarget[] }>(where, 'ListTargetsByRule', { Rule: ruleName });
  const sfn = new SFNClient(where);
  const started: string[] = [];
  for (const target of Targets ?? []) {
    let input = target.Input ?? JSON.stringify(event);
    if (target.InputTransformer) {
      input = target.InputTransformer.InputTemplate;
      for (const [key, path] of Object.entries(target.InputTransformer.InputPathsMap ?? {})) {
        const value = jsonPath(event, path);
        input = input.split(`<${key}>`).join(typeof value === 'string' ? value : JSON.stringify(value));
      }
    }
    if (!target.Arn.includes(':states:')) throw new Error(`rule ${ruleName} has a target this test cannot play: ${target.Arn}`);
    const execution = await sfn.send(new StartExecutionCommand({ stateMachineArn: target.Arn, input }));
    started.push(`${execution.executionArn} ${input}`);
  }
  return started;
}
