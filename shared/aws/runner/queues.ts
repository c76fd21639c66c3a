import { CreateQueueCommand, DeleteQueueCommand, GetQueueAttributesCommand, type SQSClient } from '@aws-sdk/client-sqs';

/**
 * The queues of a job on SQS, as the deployed stack has them: an ingress queue (standard or
 * FIFO) and one FIFO queue per vertex, each with a dead-letter queue (RedrivePolicy with
 * maxReceiveCount). Idempotent: CreateQueue with the same attributes returns the same URL.
 */

export interface QueuePair {
  readonly name: string;
  readonly url: string;
  readonly arn: string;
  readonly dlqUrl: string;
  readonly dlqArn: string;
}

export interface JobQueues {
  readonly ingress: QueuePair;
  /** Vertex id -> its FIFO queue. */
  readonly operators: Readonly<Record<string, QueuePair>>;
}

export interface JobQueuesOptions {
  /** Resource name prefix, e.g. `cairn-word-count-1a2b3c`. */
  readonly prefix: string;
  readonly vertices: readonly string[];
  readonly ingress: 'fifo' | 'standard';
  readonly visibilityTimeoutSeconds: number;
  readonly maxReceiveCount: number;
}

/** The queue name of a queue URL (its last path segment). */
export function queueNameOfUrl(url: string): string {
  return url.slice(url.lastIndexOf('/') + 1);
}

/** SQS queue names: 1-80 characters of [A-Za-z0-9_-], plus `.fifo` for FIFO queues. */
export function queueName(prefix: string, name: string, fifo: boolean): string {
  const base = `${prefix}-${name}`.replace(/[^A-Za-z0-9_-]/g, '_');
  return fifo ? `${base.slice(0, 75)}.fifo` : base.slice(0, 80);
}

async function arnOf(sqs: SQSClient, url: string): Promise<string> {
  const { Attributes } = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }));
  const arn = Attributes?.QueueArn;
  if (!arn) throw new Error(`queue ${url} has no QueueArn`);
  return arn;
}

async function createPair(sqs: SQSClient, prefix: string, name: string, fifo: boolean, options: JobQueuesOptions): Promise<QueuePair> {
  const fifoAttributes: Record<string, string> = fifo ? { FifoQueue: 'true', ContentBasedDeduplication: 'false' } : {};
  const dlqName = queueName(prefix, `${name}-dlq`, fifo);
  const dlq = await sqs.send(new CreateQueueCommand({ QueueName: dlqName, Attributes: { ...fifoAttributes, MessageRetentionPeriod: '1209600' } }));
  if (!dlq.QueueUrl) throw new Error(`CreateQueue ${dlqName} returned no URL`);
  const dlqArn = await arnOf(sqs, dlq.QueueUrl);
  const mainName = queueName(prefix, name, fifo);
  const main = await sqs.send(
    new CreateQueueCommand({
      QueueName: mainName,
      Attributes: {
        ...fifoAttributes,
        VisibilityTimeout: String(options.visibilityTimeoutSeconds),
        RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: options.maxReceiveCount }),
      },
    }),
  );
  if (!main.QueueUrl) throw new Error(`CreateQueue ${mainName} returned no URL`);
  return { name: mainName, url: main.QueueUrl, arn: await arnOf(sqs, main.QueueUrl), dlqUrl: dlq.QueueUrl, dlqArn };
}

export async function createJobQueues(sqs: SQSClient, options: JobQueuesOptions): Promise<JobQueues> {
  const ingress = await createPair(sqs, options.prefix, 'ingress', options.ingress === 'fifo', options);
  const operators: Record<string, QueuePair> = {};
  for (const vertex of options.vertices) operators[vertex] = await createPair(sqs, options.prefix, vertex, true, options);
  return { ingress, operators };
}

export async function deleteJobQueues(sqs: SQSClient, queues: JobQueues): Promise<void> {
  const urls = [queues.ingress, ...Object.values(queues.operators)].flatMap((p) => [p.url, p.dlqUrl]);
  await Promise.all(
    urls.map((url) =>
      sqs.send(new DeleteQueueCommand({ QueueUrl: url })).catch((error: unknown) => {
        if ((error as Error).name !== 'QueueDoesNotExist' && (error as Error).name !== 'AWS.SimpleQueueService.NonExistentQueue') throw error;
      }),
    ),
  );
}
