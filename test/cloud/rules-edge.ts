/**
 * An edge of its own over the emulators of this test run's local cloud, with the AWS rules a
 * test chooses (low limits, short purge windows), so that the shared edge keeps AWS's figures.
 * `hold` delays chosen DynamoDB requests on their way to DynamoDB Local: a transaction "in
 * progress" for as long as the test wants.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { inject } from 'vitest';
import type { AwsRulesOptions } from '../../shared/aws/local-cloud/aws-rules.js';
import { HEALTH_PATH, startEdgeRouter, type EdgeRouter, type EdgeTargets } from '../../shared/aws/local-cloud/edge-router.js';

export const credentials = { accessKeyId: 'test', secretAccessKey: 'test' };
export const region = 'us-east-1';

export function sharedEndpoint(): string {
  const url = (inject as (key: string) => unknown)('cloudEndpoint') as string | undefined;
  if (!url) throw new Error('no cloud endpoint: the global setup (test/cloud/global-setup.ts) provides it');
  return url;
}

export async function emulators(): Promise<EdgeTargets> {
  const health = (await (await fetch(`${sharedEndpoint()}${HEALTH_PATH}`)).json()) as { backends: EdgeTargets };
  return health.backends;
}

export interface HeldRequest {
  readonly body: string;
  release(): void;
}

export interface RulesEdge {
  readonly edge: EdgeRouter;
  readonly url: string;
  /** Requests held so far (by `hold`), in arrival order. */
  readonly held: HeldRequest[];
  /** Resolves when `n` requests have been held. */
  heldCount(n: number): Promise<void>;
  close(): Promise<void>;
}

/** An SQS batch entry as sent (JSON protocol). */
export interface BatchEntry {
  readonly Id: string;
  readonly MessageBody: string;
  readonly MessageGroupId?: string;
}

/**
 * An edge with `rules` over the shared emulators; DynamoDB requests whose body `hold` matches
 * wait for `release()`; SendMessageBatch entries that `failEntry` picks are not sent and are
 * reported Failed (SenderFault false, InternalError), as SQS reports a transient failure.
 */
export async function rulesEdge(rules: AwsRulesOptions | false, hold?: (body: string) => boolean, failEntry?: (entry: BatchEntry) => boolean): Promise<RulesEdge> {
  const targets = await emulators();
  const servers: http.Server[] = [];
  const sqs = targets.sqs;
  if (failEntry && sqs) {
    const agent = new http.Agent({ keepAlive: true });
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        let body = Buffer.concat(chunks).toString('utf8');
        const failed: Array<{ Id: string; SenderFault: false; Code: string; Message: string }> = [];
        if (req.headers['x-amz-target'] === 'AmazonSQS.SendMessageBatch') {
          const input = JSON.parse(body) as { Entries: BatchEntry[] };
          const kept = input.Entries.filter((e) => {
            if (!failEntry(e)) return true;
            failed.push({ Id: e.Id, SenderFault: false, Code: 'InternalError', Message: 'injected by the test' });
            return false;
          });
          body = JSON.stringify({ ...input, Entries: kept });
        }
        const headers = { ...req.headers, 'content-length': String(Buffer.byteLength(body)) };
        const up = http.request({ host: sqs.host, port: sqs.port, method: req.method, path: req.url, headers, agent }, (answer) => {
          const parts: Buffer[] = [];
          answer.on('data', (c: Buffer) => parts.push(c));
          answer.on('end', () => {
            let text = Buffer.concat(parts).toString('utf8');
            if (failed.length > 0 && answer.statusCode === 200) {
              const output = JSON.parse(text) as { Failed?: unknown[] };
              text = JSON.stringify({ ...output, Failed: [...(output.Failed ?? []), ...failed] });
            }
            const { 'content-length': _length, 'transfer-encoding': _encoding, ...rest } = answer.headers;
            res.writeHead(answer.statusCode ?? 502, { ...rest, 'content-length': String(Buffer.byteLength(text)) });
            res.end(text);
          });
        });
        up.on('error', () => res.destroy());
        up.end(body);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    servers.push(server);
    targets.sqs = { host: '127.0.0.1', port: (server.address() as AddressInfo).port };
  }
  const held: HeldRequest[] = [];
  const waiters: Array<() => void> = [];
  let proxy: http.Server | undefined;
  const dynamodb = targets.dynamodb;
  if (hold && dynamodb) {
    const agent = new http.Agent({ keepAlive: true });
    proxy = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        const send = (): void => {
          const up = http.request({ host: dynamodb.host, port: dynamodb.port, method: req.method, path: req.url, headers: req.headers, agent }, (answer) => {
            res.writeHead(answer.statusCode ?? 502, answer.headers);
            answer.pipe(res);
          });
          up.on('error', () => res.destroy());
          up.end(body);
        };
        const text = body.toString('utf8');
        if (!hold(text)) return send();
        let released = false;
        held.push({
          body: text,
          release: () => {
            if (released) return;
            released = true;
            send();
          },
        });
        for (const w of waiters.splice(0)) w();
      });
    });
    await new Promise<void>((resolve) => proxy?.listen(0, '127.0.0.1', resolve));
    targets.dynamodb = { host: '127.0.0.1', port: (proxy.address() as AddressInfo).port };
  }
  const edge = await startEdgeRouter({ port: 0, targets, rules });
  return {
    edge,
    url: edge.url,
    held,
    async heldCount(n: number): Promise<void> {
      while (held.length < n) await new Promise<void>((resolve) => waiters.push(resolve));
    },
    async close(): Promise<void> {
      for (const h of held) h.release();
      await edge.close();
      for (const server of [...servers, ...(proxy ? [proxy] : [])]) {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    },
  };
}
