/**
 * The edge router on its own, with fake backends: which emulator gets a request, and
 * that method, path, headers and body reach it, and its answer comes back, unchanged.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { backendFor, invokedFunction, serviceOf, startEdgeRouter, type Backend, type EdgeRouter } from '../../shared/aws/local-cloud/edge-router.js';
import { freePort } from '../../shared/aws/local-cloud/local-cloud.js';
import { startLambdaInvokeServer } from '../../shared/aws/runner/lambda-invoke-server.js';

const auth = (service: string): string => `AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/${service}/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc123`;

describe('choosing the emulator', () => {
  it('reads the service from the SigV4 credential scope', () => {
    expect(serviceOf('/', { authorization: auth('dynamodb') })).toBe('dynamodb');
    expect(serviceOf('/', { authorization: auth('sqs') })).toBe('sqs');
    expect(serviceOf('/bucket/key', { authorization: auth('s3') })).toBe('s3');
    expect(serviceOf('/', { authorization: auth('states') })).toBe('states');
  });

  it('prefers the credential scope over the X-Amz-Target hint', () => {
    expect(serviceOf('/', { authorization: auth('sqs'), 'x-amz-target': 'DynamoDB_20120810.GetItem' })).toBe('sqs');
  });

  it('reads presigned URLs and falls back to the X-Amz-Target prefix', () => {
    expect(serviceOf('/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=test%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=x', {})).toBe('s3');
    expect(serviceOf('/', { 'x-amz-target': 'DynamoDB_20120810.PutItem' })).toBe('dynamodb');
    expect(serviceOf('/', { 'x-amz-target': 'AmazonSQS.SendMessage' })).toBe('sqs');
    expect(serviceOf('/', { 'x-amz-target': 'AWSStepFunctions.StartExecution' })).toBe('states');
    expect(serviceOf('/moto-api/config', {})).toBeUndefined();
  });

  it('sends dynamodb to DynamoDB Local, sqs to ElasticMQ and everything else to moto', () => {
    expect(backendFor('dynamodb')).toBe('dynamodb');
    expect(backendFor('sqs')).toBe('sqs');
    for (const other of ['s3', 'states', 'lambda', 'iam', 'sts', undefined]) expect(backendFor(other)).toBe('moto');
  });
});

interface Seen {
  method: string | undefined;
  url: string | undefined;
  rawHeaders: string[];
  body: string;
}

describe('forwarding', () => {
  const closers: Array<() => Promise<void>> = [];
  afterEach(async () => {
    while (closers.length > 0) await closers.pop()?.();
  });

  async function fakeBackend(name: Backend, seen: Seen[]): Promise<number> {
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        seen.push({ method: req.method, url: req.url, rawHeaders: req.rawHeaders, body: Buffer.concat(chunks).toString() });
        res.writeHead(201, { 'X-Backend': name, 'X-Amzn-RequestId': 'r-1', 'Content-Type': 'text/plain' });
        res.write(`${name} says `);
        res.end('hi');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise<void>((r) => server.close(() => r())));
    return (server.address() as AddressInfo).port;
  }

  async function edgeWith(targets: Partial<Record<Backend, number>>): Promise<EdgeRouter> {
    const edge = await startEdgeRouter({ port: 0 });
    edge.setTargets(Object.fromEntries(Object.entries(targets).map(([k, port]) => [k, { host: '127.0.0.1', port }])));
    closers.push(() => edge.close());
    return edge;
  }

  function request(edge: EdgeRouter, headers: Record<string, string>, chunks: string[]): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
    return new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: edge.port, method: 'POST', path: '/q/1?x=y', headers }, (res) => {
        const body: Buffer[] = [];
        res.on('data', (c: Buffer) => body.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(body).toString() }));
      });
      req.on('error', reject);
      for (const c of chunks) req.write(c);
      req.end();
    });
  }

  it('streams the request to the chosen backend and its response back, unchanged', async () => {
    const seen: Record<Backend, Seen[]> = { dynamodb: [], sqs: [], moto: [] };
    const edge = await edgeWith({
      dynamodb: await fakeBackend('dynamodb', seen.dynamodb),
      sqs: await fakeBackend('sqs', seen.sqs),
      moto: await fakeBackend('moto', seen.moto),
    });

    const headers = { Authorization: auth('sqs'), 'X-Amz-Target': 'AmazonSQS.SendMessage', 'Content-Type': 'application/x-amz-json-1.0' };
    const res = await request(edge, headers, ['{"QueueUrl":', '"q",', '"MessageBody":"m"}']);

    expect(res.status).toBe(201);
    expect(res.body).toBe('sqs says hi');
    expect(res.headers['x-backend']).toBe('sqs');
    expect(res.headers['x-amzn-requestid']).toBe('r-1');
    expect(seen.dynamodb).toEqual([]);
    expect(seen.moto).toEqual([]);
    const [got] = seen.sqs;
    expect(got?.method).toBe('POST');
    expect(got?.url).toBe('/q/1?x=y');
    expect(got?.body).toBe('{"QueueUrl":"q","MessageBody":"m"}');
    for (const [name, value] of Object.entries(headers)) {
      const i = got?.rawHeaders.indexOf(name) ?? -1;
      expect(i, `header ${name} forwarded with its case`).toBeGreaterThanOrEqual(0);
      expect(got?.rawHeaders[i + 1]).toBe(value);
    }
    expect(got?.rawHeaders).toContain(`127.0.0.1:${edge.port}`); // Host untouched

    await request(edge, {}, ['{}']);
    expect(seen.moto).toHaveLength(1); // unsigned → moto
  });

  it('answers 503 for a backend not yet running and 502 for one that is down', async () => {
    const deadPort = await freePort();
    const edge = await edgeWith({ sqs: deadPort });
    const missing = await request(edge, { Authorization: auth('dynamodb') }, []);
    expect(missing.status).toBe(503);
    expect(missing.body).toContain('dynamodb is not running');
    const down = await request(edge, { Authorization: auth('sqs') }, []);
    expect(down.status).toBe(502);
    expect(down.body).toContain('ECONNREFUSED');
  });
});

describe('Lambda Invoke of registered functions (the local runner serves them)', () => {
  it('names the invoked function from a name, an ARN, a partial ARN or a qualified name; only for POST .../invocations', () => {
    expect(invokedFunction('POST', '/2015-03-31/functions/cairn-coordinator/invocations')).toBe('cairn-coordinator');
    expect(invokedFunction('POST', `/2015-03-31/functions/${encodeURIComponent('arn:aws:lambda:us-east-1:123456789012:function:cairn-coordinator:live')}/invocations`)).toBe('cairn-coordinator');
    expect(invokedFunction('POST', '/2015-03-31/functions/123456789012%3Afunction%3Acairn-coordinator/invocations')).toBe('cairn-coordinator');
    expect(invokedFunction('POST', '/2015-03-31/functions/cairn-coordinator%3A7/invocations?x=1')).toBe('cairn-coordinator');
    expect(invokedFunction('GET', '/2015-03-31/functions/cairn-coordinator')).toBeUndefined();
    expect(invokedFunction('POST', '/2015-03-31/event-source-mappings/')).toBeUndefined();
  });

  it('sends Invoke of a registered function to the runner, the rest of the Lambda API to moto, and answers like Lambda', async () => {
    const motoSeen: string[] = [];
    const moto = http.createServer((req, res) => {
      motoSeen.push(`${req.method ?? ''} ${req.url ?? ''}`);
      req.resume();
      res.writeHead(200).end('{}');
    });
    await new Promise<void>((r) => moto.listen(0, '127.0.0.1', r));
    const edge = await startEdgeRouter({ port: 0, targets: { moto: { host: '127.0.0.1', port: (moto.address() as AddressInfo).port } } });
    const runner = await startLambdaInvokeServer(edge.url, {
      echo: (payload) => Promise.resolve({ got: payload }),
      failing: () => Promise.reject(new TypeError('bad payload')),
    });
    try {
      const lambda = new LambdaClient({ endpoint: edge.url, region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
      const ok = await lambda.send(new InvokeCommand({ FunctionName: 'arn:aws:lambda:us-east-1:123456789012:function:echo', Payload: Buffer.from('{"n":1}') }));
      expect(ok.StatusCode).toBe(200);
      expect(ok.FunctionError).toBeUndefined();
      expect(JSON.parse(Buffer.from(ok.Payload ?? []).toString())).toEqual({ got: { n: 1 } });
      const failed = await lambda.send(new InvokeCommand({ FunctionName: 'failing', Payload: Buffer.from('{}') }));
      expect(failed.FunctionError).toBe('Unhandled');
      expect(JSON.parse(Buffer.from(failed.Payload ?? []).toString())).toEqual({ errorType: 'TypeError', errorMessage: 'bad payload' });
      expect(runner.invocations).toEqual([
        { functionName: 'echo', payload: { n: 1 } },
        { functionName: 'failing', payload: {} },
      ]);
      // Not registered, and not an Invoke: moto's.
      await lambda.send(new InvokeCommand({ FunctionName: 'other', Payload: Buffer.from('{}') }));
      expect(motoSeen).toEqual(['POST /2015-03-31/functions/other/invocations']);
      await runner.close();
      await lambda.send(new InvokeCommand({ FunctionName: 'echo', Payload: Buffer.from('{}') }));
      expect(motoSeen).toHaveLength(2); // unregistered on close
      lambda.destroy();
    } finally {
      await runner.close();
      await edge.close();
      await new Promise<void>((r) => moto.close(() => r()));
    }
  });
});
