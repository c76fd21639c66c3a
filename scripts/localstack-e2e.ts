/**
 * `npm run test:localstack`: deploys the word-count stack to the LocalStack named by
 * AWS_ENDPOINT_URL (CDK CLI, or `CAIRN_CDK=cdklocal`), pushes events into its ingress queue
 * with the plain AWS SDK, and waits until the transactional sink holds exactly the oracle's
 * output. Without a LocalStack endpoint it says that it did not run and exits 2: it is never
 * counted as passed. (Our own emulator edge is not a LocalStack: it cannot run CloudFormation.)
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { wordCount } from '../examples/word-count.js';
import { createAwsStores } from '../shared/aws/index.js';
import { jobResourcesFromOutputs } from '../shared/aws/ops/job-resources.js';
import { statusCommand } from '../shared/cli/operate.js';

const EVENTS = Number(process.env.CAIRN_LOCALSTACK_EVENTS ?? 500);
const TIMEOUT_MS = Number(process.env.CAIRN_LOCALSTACK_TIMEOUT_MS ?? 600_000);
const STACK = 'Cairn-word-count';

function notRun(reason: string): never {
  process.stdout.write(`test:localstack did NOT run: ${reason}\nlocalstack: 0 passed, 0 failed, 1 skipped\n`);
  process.exit(2);
}

async function isLocalStack(endpoint: string): Promise<boolean> {
  try {
    const response = await fetch(new URL('/_localstack/health', endpoint), { signal: AbortSignal.timeout(5_000) });
    return response.ok && typeof ((await response.json()) as { services?: unknown }).services === 'object';
  } catch {
    return false;
  }
}

const endpoint = process.env.AWS_ENDPOINT_URL;
if (!endpoint) notRun('AWS_ENDPOINT_URL is not set; start LocalStack (with LOCALSTACK_AUTH_TOKEN) and set AWS_ENDPOINT_URL=http://localhost:4566');
if (!(await isLocalStack(endpoint))) notRun(`${endpoint} is not a LocalStack (no /_localstack/health)`);

const region = process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1';
const env = { ...process.env, AWS_REGION: region, AWS_ACCESS_KEY_ID: process.env.AWS_ACCESS_KEY_ID ?? 'test', AWS_SECRET_ACCESS_KEY: process.env.AWS_SECRET_ACCESS_KEY ?? 'test' };
const cdk = process.env.CAIRN_CDK ?? 'cdk';
const outputsFile = '.cache/localstack-outputs.json';
for (const args of [['bootstrap'], ['deploy', STACK, '-c', 'job=word-count', '--require-approval', 'never', '--outputs-file', outputsFile]]) {
  process.stdout.write(`$ npx ${cdk} ${args.join(' ')}\n`);
  const result = spawnSync('npx', [cdk, ...args], { stdio: 'inherit', env });
  if (result.status !== 0) {
    process.stdout.write(`localstack: 0 passed, 1 failed\n`);
    process.exit(1);
  }
}
const outputs = (JSON.parse(readFileSync(outputsFile, 'utf8')) as Record<string, Record<string, string>>)[STACK] ?? {};
// The same reading of the outputs as `cairn status --stack` (fixed keys written by CairnJob).
const { ingressQueueUrl: queueUrl, tableName, bucket } = jobResourcesFromOutputs(outputs);

const events = wordCount.generate(EVENTS, 42);
const sqs = new SQSClient({ endpoint, region });
for (let i = 0; i < events.length; i += 10) {
  const chunk = events.slice(i, i + 10);
  await sqs.send(new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: chunk.map((e, n) => ({ Id: String(n), MessageBody: JSON.stringify(e.event) })) }));
}
process.stdout.write(`pushed ${EVENTS} events to ${queueUrl}\n`);

const stores = await createAwsStores({ tableName, bucket, endpoint, region });
const expected = JSON.stringify(wordCount.oracle(events.map((e) => e.event)));
const deadline = Date.now() + TIMEOUT_MS;
for (;;) {
  const output = wordCount.canonical(await stores.sinks.read('counts'));
  if (JSON.stringify(output) === expected) {
    process.stdout.write(`sink equals the oracle (${output.length} records)\n$ cairn status word-count --stack ${STACK}\n`);
    await statusCommand('word-count', { stack: STACK, endpoint, region });
    process.stdout.write('localstack: 1 passed, 0 failed\n');
    process.exit(0);
  }
  if (Date.now() > deadline) {
    process.stdout.write(`sink has ${output.length} records, the oracle ${(JSON.parse(expected) as unknown[]).length}, after ${TIMEOUT_MS} ms\nlocalstack: 0 passed, 1 failed\n`);
    process.exit(1);
  }
  await new Promise((resolve) => setTimeout(resolve, 5_000));
}
