/**
 * `cairn run <job> --target local-cloud` as a user runs it (a child process against this test
 * run's local cloud via AWS_ENDPOINT_URL): progress, timeline, an injected crash with rollback,
 * an event pushed by another SQS client while it runs, and the oracle check.
 */
import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { expect, it } from 'vitest';
import { cloudEndpoint, credentials, region } from './helpers.js';

const ROOT = resolve(import.meta.dirname, '../..');
const MAIN = join(ROOT, 'shared/cli/main.ts');

function cairn(args: readonly string[], onOutput?: (output: string) => void): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, AWS_ENDPOINT_URL: cloudEndpoint(), AWS_REGION: region, AWS_ACCESS_KEY_ID: credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey },
  });
  let output = '';
  const on = (chunk: string): void => {
    output += chunk;
    onOutput?.(output);
  };
  child.stdout.setEncoding('utf8').on('data', on);
  child.stderr.setEncoding('utf8').on('data', on);
  return new Promise((done) => child.on('close', (code) => done({ code, output })));
}

it('runs a job on the local cloud with an injected crash and an event from another client; exactly-once', async () => {
  const producer = new SQSClient({ endpoint: cloudEndpoint(), region, credentials });
  let sent: Promise<unknown> | undefined;
  const { code, output } = await cairn(['run', 'word-count', '--target', 'local-cloud', '--events', '300', '--rate', '150', '--interval', '300', '--crash-at', '400'], (text) => {
    const url = /ingress queue: (\S+)/.exec(text)?.[1];
    if (url && !sent) {
      sent = producer.send(new SendMessageCommand({ QueueUrl: url, MessageBody: JSON.stringify({ line: 'pushed from outside' }), MessageGroupId: 'outside', MessageDeduplicationId: 'outside-1' }));
    }
  });
  await sent;
  producer.destroy();
  expect(output, output).toMatch(/cairn run word-count on the local cloud at http:\/\/127\.0\.0\.1:\d+: 300 events \(seed 1\), checkpoints every 300 ms/);
  expect(output).toMatch(/restart: rolling back to checkpoint \d+ \(injected crash in \S+ at record 400\)/);
  expect(output).toMatch(/word-count: FINISHED after/);
  expect(output).toMatch(/checkpoint timeline\n\s+id\s+trigger\s+status\s+restorable/);
  expect(output).toMatch(/AWS requests: DynamoDB [\d,]+ · S3 [\d,]+ · SQS [\d,]+ \(per 1,000 events: /);
  expect(output).toMatch(/results: exactly-once ✔ \([\d,]+ records match the oracle over the 301 events in the source log\)/);
  expect(code, output).toBe(0);
}, 120_000);

it('refuses the embedded-only options', async () => {
  const { code, output } = await cairn(['run', 'word-count', '--target', 'local-cloud', '--memory']);
  expect(code).toBe(2);
  expect(output).toMatch(/--memory only apply to the embedded target/);
});
