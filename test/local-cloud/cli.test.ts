/**
 * `cairn run <job> --target local-cloud` as a user runs it (a child process against this test
 * run's local cloud via AWS_ENDPOINT_URL): progress, timeline, an injected crash with rollback,
 * an event pushed by another SQS client while it runs, and the oracle check.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { createServer } from 'node:net';
import { expect, it } from 'vitest';
import { cloudEndpoint, credentials, region } from './helpers.js';

const ROOT = resolve(import.meta.dirname, '../..');
const MAIN = join(ROOT, 'shared/cli/main.ts');

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolvePort(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

function cairn(args: readonly string[], onOutput?: (output: string, child: ChildProcess) => void, env: Record<string, string | undefined> = {}): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    // (This machine's Node 20 makes the SDK print a deprecation notice on stderr; the outputs are compared exactly.)
    env: {
      ...process.env,
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      AWS_ENDPOINT_URL: cloudEndpoint(),
      AWS_REGION: region,
      AWS_ACCESS_KEY_ID: credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
      ...env,
    },
  });
  let output = '';
  const on = (chunk: string): void => {
    output += chunk;
    onOutput?.(output, child);
  };
  child.stdout.setEncoding('utf8').on('data', on);
  child.stderr.setEncoding('utf8').on('data', on);
  return new Promise((done) => child.on('close', (code) => done({ code, output })));
}

it('runs a job on the local cloud with an injected crash and an event from another client; exactly-once', async () => {
  const producer = new SQSClient({ endpoint: cloudEndpoint(), region, credentials });
  let sent: Promise<unknown> | undefined;
  const { code, output } = await cairn(['run', 'word-count', '--target', 'local-cloud', '--ephemeral', '--events', '300', '--rate', '150', '--interval', '300', '--crash-at', '400'], (text) => {
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
});

it('runs a user job (defineJob) over --input on the local cloud: the bad line as a dead letter, the committed output written', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-lc-input-'));
  try {
    const input = join(dir, 'events.jsonl');
    writeFileSync(input, ['{"user":"a","amount":5}', '{"user":"b","amount":2}', 'not json', '{"user":"a","amount":3}', ''].join('\n'));
    const output = join(dir, 'out.jsonl');
    const { code, output: text } = await cairn(['run', join(ROOT, 'test/fixtures/totals-job.ts'), '--target', 'local-cloud', '--ephemeral', '--input', input, '--output', output, '--interval', '200']);
    expect(text).toMatch(/cairn run totals on the local cloud at http:\/\/127\.0\.0\.1:\d+: 4 events from the input, checkpoints every 200 ms/);
    expect(text).toMatch(/totals: FINISHED after/);
    expect(text).toContain('dead letters: 1 (malformed-json 1)');
    // Through SQS too: the line's id travels as the CairnEventId message attribute.
    expect(text).toMatch(/malformed-json at input line 3: malformed JSON: .* · not json/);
    expect(text).toContain(`output: 3 committed records of sink 'totals' written to ${output}`);
    expect(code, text).toBe(0);
    expect(readFileSync(output, 'utf8').trim().split('\n').sort()).toEqual(['{"user":"a","total":5}', '{"user":"a","total":8}', '{"user":"b","total":2}']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

it("runs the minified bundle the stack deploys: a class name in the output is esbuild's, not the source's; the same totals as the embedded run", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-lc-bundle-'));
  const job = join(ROOT, 'test/fixtures/named-job.ts');
  try {
    const input = join(dir, 'events.jsonl');
    writeFileSync(input, ['{"user":"a","amount":5}', '{"user":"b","amount":2}', '{"user":"a","amount":3}', ''].join('\n'));
    const records = (file: string): Array<{ user: string; total: number; by: string }> =>
      readFileSync(file, 'utf8')
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as { user: string; total: number; by: string })
        .sort((x, y) => x.user.localeCompare(y.user) || x.total - y.total);

    const embedded = await cairn(['run', job, '--memory', '--input', input, '--output', join(dir, 'embedded.jsonl')]);
    expect(embedded.code, embedded.output).toBe(0);
    expect(records(join(dir, 'embedded.jsonl'))).toEqual([
      { user: 'a', total: 5, by: 'Tally' },
      { user: 'a', total: 8, by: 'Tally' },
      { user: 'b', total: 2, by: 'Tally' },
    ]);

    const cloud = await cairn(['run', job, '--target', 'local-cloud', '--ephemeral', '--input', input, '--output', join(dir, 'cloud.jsonl')]);
    expect(cloud.output).toMatch(/running named as the stack bundles it \(esbuild, minified\): ready in /);
    expect(cloud.code, cloud.output).toBe(0);
    const got = records(join(dir, 'cloud.jsonl'));
    const mangled = got[0]?.by ?? '';
    expect(mangled).not.toBe('Tally');
    expect(mangled).toMatch(/^[A-Za-z_$][\w$]{0,2}$/);
    expect(got).toEqual([
      { user: 'a', total: 5, by: mangled },
      { user: 'a', total: 8, by: mangled },
      { user: 'b', total: 2, by: mangled },
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

it('keeps the job on a local cloud that outlives the run: output and dead letters readable after it, a killed run resumed by the same command, then destroyed', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-lc-keep-'));
  const job = join(ROOT, 'test/fixtures/totals-job.ts');
  try {
    const input = join(dir, 'events.jsonl');
    const lines = Array.from({ length: 40 }, (_, i) => JSON.stringify({ user: `u${i % 4}`, amount: 1 }));
    lines.splice(2, 0, 'not json');
    writeFileSync(input, `${lines.join('\n')}\n`);
    const args = ['run', job, '--target', 'local-cloud', '--input', input, '--interval', '200', '--rate', '20'];
    // Killed (SIGKILL) once some events are in: nothing of it is cleaned up.
    let kill: NodeJS.Timeout | undefined;
    const killed = await cairn(args, (text, child) => {
      // About a third of the input in (20 events/s).
      if (!kill && text.includes('operate it from another terminal')) kill = setTimeout(() => child.kill('SIGKILL'), 700);
    });
    expect(killed.output).not.toMatch(/FINISHED/);
    expect(killed.code, killed.output).toBeNull();
    const resumed = await cairn([...args.filter((a) => a !== '--rate' && a !== '20')]);
    expect(resumed.output).toMatch(/resuming the job of the previous run \(RUNNING, generation \d+/);
    expect(resumed.output).toMatch(/totals: FINISHED after/);
    expect(resumed.output).toContain("the job's table and queues stay: cairn output totals --target local-cloud");
    expect(resumed.code, resumed.output).toBe(0);
    // Read after the run, by name or by module path, from the job's table.
    const output = await cairn(['output', job, '--target', 'local-cloud', '--sink', 'totals']);
    const totals = output.output
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { user: string; total: number });
    // Exactly once across the kill: each user's running total 1..10, every value once.
    for (let u = 0; u < 4; u++)
      expect(
        totals
          .filter((t) => t.user === `u${u}`)
          .map((t) => t.total)
          .sort((a, b) => a - b),
        `u${u}`,
      ).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(totals).toHaveLength(40);
    const letters = await cairn(['dead-letters', 'totals', '--target', 'local-cloud', '--json']);
    expect((JSON.parse(letters.output) as { deadLetters: Array<{ reason: string; line: number }> }).deadLetters.map((l) => [l.reason, l.line])).toEqual([['malformed-json', 3]]);
    const destroyed = await cairn(['destroy', 'totals', '--target', 'local-cloud']);
    expect(destroyed.output).toMatch(/^deleted the table cairn-totals-\w+, its bucket and 3 queues \(with their dead-letter queues\) of totals\n$/);
    const gone = await cairn(['output', 'totals', '--target', 'local-cloud', '--sink', 'totals']);
    expect(gone.code).toBe(1);
    expect(gone.output).toMatch(/no local-cloud run of totals recorded/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

it('reuses the local cloud running on the edge port (CAIRN_EDGE_PORT) instead of starting another', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-lc-reuse-'));
  try {
    const input = join(dir, 'events.jsonl');
    writeFileSync(input, '{"user":"a","amount":5}\n');
    const port = new URL(cloudEndpoint()).port;
    const { code, output } = await cairn(['run', join(ROOT, 'test/fixtures/totals-job.ts'), '--target', 'local-cloud', '--ephemeral', '--input', input], undefined, {
      AWS_ENDPOINT_URL: undefined,
      CAIRN_EDGE_PORT: port,
    });
    expect(output).toContain(`using the local cloud running at http://127.0.0.1:${port}`);
    expect(output).not.toContain('starting the local cloud');
    expect(output).toMatch(new RegExp(`cairn run totals on the local cloud at http://127\\.0\\.0\\.1:${port}: 1 events from the input`));
    expect(code, output).toBe(0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

it('with no local cloud running, starts one in the background that outlives the run; `cairn cloud down` stops it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-lc-up-'));
  const port = String(await freePort());
  const env = { AWS_ENDPOINT_URL: undefined, CAIRN_EDGE_PORT: port };
  try {
    const input = join(dir, 'events.jsonl');
    writeFileSync(input, '{"user":"a","amount":5}\n{"user":"a","amount":2}\n');
    const job = join(ROOT, 'test/fixtures/totals-job.ts');
    const run = await cairn(['run', job, '--target', 'local-cloud', '--input', input, '--interval', '200'], undefined, env);
    expect(run.output).toMatch(new RegExp(`started the local cloud at http://127\\.0\\.0\\.1:${port} \\(pid \\d+\\); it keeps running after this job: stop it with \`cairn cloud down\``));
    expect(run.output).toMatch(/totals: FINISHED after/);
    expect(run.code, run.output).toBe(0);
    // The run is over; its cloud, table and results are not.
    const status = await cairn(['cloud', 'status'], undefined, env);
    expect(JSON.parse(status.output)).toMatchObject({ endpoint: `http://127.0.0.1:${port}` });
    const output = await cairn(['output', 'totals', '--target', 'local-cloud', '--sink', 'totals'], undefined, env);
    expect(output.output.trim().split('\n')).toEqual(['{"user":"a","total":5}', '{"user":"a","total":7}']);
    expect((await cairn(['destroy', 'totals', '--target', 'local-cloud'], undefined, env)).code).toBe(0);
  } finally {
    const down = await cairn(['cloud', 'down'], undefined, env);
    rmSync(dir, { recursive: true, force: true });
    expect(down.output).toContain(`stopped (was http://127.0.0.1:${port}); the jobs on it are gone`);
    const after = await cairn(['cloud', 'status'], undefined, env);
    expect(after.output).toBe(`not running on port ${port}\n`);
    expect(after.code).toBe(1);
  }
});

it('refuses the embedded-only options', async () => {
  const { code, output } = await cairn(['run', 'word-count', '--target', 'local-cloud', '--memory']);
  expect(code).toBe(2);
  expect(output).toMatch(/--memory only apply to the embedded target/);
});

it('operates the running job from another process: status, trigger and checkpoints --target local-cloud', async () => {
  let operated: Promise<Array<{ code: number | null; output: string }>> | undefined;
  const run = await cairn(['run', 'word-count', '--target', 'local-cloud', '--ephemeral', '--events', '3000', '--rate', '300', '--trigger', 'manual'], (text) => {
    if (!operated && text.includes('operate it from another terminal')) {
      operated = (async () => [
        await cairn(['status', 'word-count', '--target', 'local-cloud']),
        await cairn(['trigger', 'word-count', '--target', 'local-cloud', '--wait', '30']),
        await cairn(['checkpoints', 'word-count', '--target', 'local-cloud']),
      ])();
    }
  });
  const [status, trigger, checkpoints] = (await operated) ?? [];
  expect(status?.output, status?.output).toMatch(/^word-count \(table cairn-word-count-\w+ at http:\/\/127\.0\.0\.1:\d+\)\njob: RUNNING · generation 1 · /);
  expect(status?.output).toMatch(/dead letters: 0 kept\n/);
  expect(status?.code).toBe(0);
  expect(trigger?.output, trigger?.output).toMatch(/^checkpoint 1 COMPLETED in \d.* \(manual\)\n$/);
  expect(trigger?.code).toBe(0);
  expect(checkpoints?.output).toMatch(/\n\s+1\s+manual\s+COMPLETED\s+retained\s/);
  expect(run.output, run.output).toMatch(/results: exactly-once ✔/);
  expect(run.code).toBe(0);

  // The run is over: its manifest is gone, and the commands say so.
  const after = await cairn(['status', 'word-count', '--target', 'local-cloud']);
  expect(after.output).toBe('error: no local-cloud run of word-count recorded (.cairn/local-cloud/word-count.json); start one with `cairn run word-count --target local-cloud`\n');
  expect(after.code).toBe(1);
});

it('pause, resume and rollback name the targets they act on when given none', async () => {
  const { code, output } = await cairn(['pause', 'word-count']);
  expect(code).toBe(2);
  expect(output).toBe(
    'error: pause acts on a job running on AWS (--stack <name>) or on the local cloud (--target local-cloud); an embedded run is controlled by its own process: stop it, then `cairn run <job> --restore <id>`\n',
  );
});
