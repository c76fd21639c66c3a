/**
 * The local cloud's edge: one LocalStack-shaped HTTP endpoint on 127.0.0.1 that forwards
 * every request, body and headers streamed unchanged, to the emulator serving its AWS
 * service. The service is read from the SigV4 credential scope
 * (`Credential=AKID/date/region/SERVICE/aws4_request`, in the Authorization header or, for
 * presigned URLs, the `X-Amz-Credential` query parameter), with the `X-Amz-Target` prefix
 * as a fallback. Unsigned requests (e.g. `/moto-api/...`) go to moto.
 *
 * Lambda Invoke calls of a function registered at `PUT /_cairn/lambda/functions/{name}`
 * (body `{"url": "http://127.0.0.1:port"}`) go to that URL: the local runner serves the Invoke
 * API for the real handlers (shared/aws/runner/lambda-invoke-server.ts), so Step Functions
 * tasks run by moto reach them. The rest of the Lambda API (functions, event source
 * mappings) is moto's.
 *
 * DynamoDB and SQS requests of the JSON protocol are buffered and pass through AWS's rules
 * that the emulators do not play (aws-rules.ts: transaction conflicts, per-partition-key
 * throughput, PurgeQueue's 60 s, SQS body characters), and so do Step Functions requests
 * (the 25,000-event history limit, sfn-rules.ts); everything else is streamed.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { noRuleCounts, resolveAwsRules, type AwsRuleCounts, type AwsRulesOptions, type EdgeResponse } from './aws-rules.js';
import { DynamoRules } from './dynamo-rules.js';
import { SfnRules } from './sfn-rules.js';
import { SqsRules } from './sqs-rules.js';

/** The emulators behind the edge. */
export type Backend = 'dynamodb' | 'sqs' | 'moto';

export interface BackendAddress {
  readonly host: string;
  readonly port: number;
}

export type EdgeTargets = Partial<Record<Backend, BackendAddress>>;

export interface EdgeRouterOptions {
  /** Port to listen on; 0 picks a free one. */
  readonly port: number;
  /** Defaults to 127.0.0.1. */
  readonly host?: string;
  /** Backends known at start; more can be set later with `setTargets`. */
  readonly targets?: EdgeTargets;
  /** AWS's rules the emulators do not play (defaults: all on, AWS's figures); false: none. */
  readonly rules?: AwsRulesOptions | false;
}

export interface EdgeRouter {
  readonly host: string;
  readonly port: number;
  /** `http://host:port` */
  readonly url: string;
  setTargets(targets: EdgeTargets): void;
  /** How often each of AWS's rules bit (a copy). */
  ruleCounts(): AwsRuleCounts;
  close(): Promise<void>;
}

/** Path answered by the edge itself, like LocalStack's `/_localstack/health`. */
export const HEALTH_PATH = '/_cairn/health';
/** `PUT` / `DELETE` `${LAMBDA_REGISTRY_PATH}/{function name}`: where Invoke calls of a function go. */
export const LAMBDA_REGISTRY_PATH = '/_cairn/lambda/functions';

const INVOKE_RE = /^\/2015-03-31\/functions\/([^/?]+)\/invocations(?:\?|$)/;

/**
 * The function an Invoke request names (`POST /2015-03-31/functions/{FunctionName}/invocations`),
 * FunctionName being a name, an ARN or a partial ARN, possibly with a qualifier; else undefined.
 */
export function invokedFunction(method: string | undefined, url: string | undefined): string | undefined {
  if (method !== 'POST' || url === undefined) return undefined;
  const raw = INVOKE_RE.exec(url)?.[1];
  if (raw === undefined) return undefined;
  const name = decodeURIComponent(raw);
  const parts = name.split(':');
  // arn:aws:lambda:region:account:function:NAME[:qualifier] | account:function:NAME | NAME[:qualifier]
  const at = parts.indexOf('function');
  return at >= 0 ? parts[at + 1] : parts[0];
}

const ACCESS_KEY_RE = /Credential=([^/,\s]+)\//i;

/** The access key id a request is signed with (moto's account follows it). */
export function accessKeyOf(headers: http.IncomingHttpHeaders): string {
  return ACCESS_KEY_RE.exec(headerValue(headers.authorization) ?? '')?.[1] ?? 'test';
}

const SCOPE_RE = /Credential=[^/,\s]+\/\d{8}\/[^/,\s]+\/([^/,\s]+)\/aws4_request/i;
const QUERY_SCOPE_RE = /[?&]X-Amz-Credential=[^&/]+(?:\/|%2F)\d{8}(?:\/|%2F)[^&/%]+(?:\/|%2F)([^&/%]+)(?:\/|%2F)aws4_request/i;

const TARGET_PREFIXES: ReadonlyArray<readonly [string, string]> = [
  ['DynamoDB_', 'dynamodb'],
  ['DynamoDBStreams_', 'dynamodb'],
  ['AmazonSQS', 'sqs'],
  ['AWSStepFunctions', 'states'],
];

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** The AWS service a request is for, or undefined for unsigned requests without hints. */
export function serviceOf(url: string | undefined, headers: http.IncomingHttpHeaders): string | undefined {
  const auth = headerValue(headers.authorization);
  const scoped = auth === undefined ? undefined : SCOPE_RE.exec(auth)?.[1];
  if (scoped !== undefined) return scoped.toLowerCase();
  const presigned = url === undefined ? undefined : QUERY_SCOPE_RE.exec(url)?.[1];
  if (presigned !== undefined) return presigned.toLowerCase();
  const target = headerValue(headers['x-amz-target']);
  if (target !== undefined) {
    for (const [prefix, service] of TARGET_PREFIXES) if (target.startsWith(prefix)) return service;
  }
  return undefined;
}

/** Which emulator serves a service: DynamoDB Local, ElasticMQ, or moto for the rest. */
export function backendFor(service: string | undefined): Backend {
  if (service === 'dynamodb') return 'dynamodb';
  if (service === 'sqs') return 'sqs';
  return 'moto';
}

export type RuledService = 'dynamodb' | 'sqs' | 'states';

/** The DynamoDB / SQS / Step Functions operation of a JSON-protocol request (`X-Amz-Target: DynamoDB_20120810.PutItem`, `AmazonSQS.SendMessage`, `AWSStepFunctions.DescribeExecution`), else undefined. */
export function ruledOperation(service: string | undefined, headers: http.IncomingHttpHeaders): { service: RuledService; op: string } | undefined {
  if (service !== 'dynamodb' && service !== 'sqs' && service !== 'states') return undefined;
  const target = headerValue(headers['x-amz-target']);
  if (target === undefined) return undefined;
  const [prefix, op] = target.split('.');
  if (op === undefined || op === '') return undefined;
  if (service === 'dynamodb' && prefix?.startsWith('DynamoDB_') !== true) return undefined;
  if (service === 'sqs' && prefix !== 'AmazonSQS') return undefined;
  if (service === 'states' && prefix !== 'AWSStepFunctions') return undefined;
  return { service, op };
}

function withoutLengthHeaders(raw: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    if (name !== 'content-length' && name !== 'transfer-encoding') out.push(raw[i] as string, raw[i + 1] as string);
  }
  return out;
}

/** Per-hop headers that belong to one connection, not to the request. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'expect', 'upgrade']);

function forwardableRawHeaders(raw: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    if (!HOP_BY_HOP.has(name.toLowerCase())) out.push(name, raw[i + 1] as string);
  }
  return out;
}

function sendError(res: http.ServerResponse, status: number, code: string, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ __type: code, message });
  res.writeHead(status, { 'content-type': 'application/x-amz-json-1.0', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

export async function startEdgeRouter(options: EdgeRouterOptions): Promise<EdgeRouter> {
  const host = options.host ?? '127.0.0.1';
  let targets: EdgeTargets = { ...options.targets };
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

  const functions = new Map<string, BackendAddress>();
  const counts = noRuleCounts();
  const resolved = options.rules === false ? undefined : resolveAwsRules(options.rules);
  const dynamoRules = resolved ? new DynamoRules(resolved, counts) : undefined;
  const sqsRules = resolved ? new SqsRules(resolved, counts) : undefined;
  const sfnRules = resolved ? new SfnRules(resolved, counts, () => targets.moto) : undefined;

  const server = http.createServer((req, res) => {
    if (req.url === HEALTH_PATH && req.method === 'GET') {
      const body = JSON.stringify({ backends: targets, functions: Object.fromEntries(functions), rules: resolved ?? false, ruleCounts: counts });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(body);
      return;
    }
    if (req.url?.startsWith(`${LAMBDA_REGISTRY_PATH}/`)) {
      void register(req, res);
      return;
    }
    const service = serviceOf(req.url, req.headers);
    const invoked = service === 'lambda' ? invokedFunction(req.method, req.url) : undefined;
    const registered = invoked === undefined ? undefined : functions.get(invoked);
    const backend = registered ? `function ${invoked}` : backendFor(service);
    const target = registered ?? targets[backendFor(service)];
    if (target === undefined) {
      req.resume();
      sendError(res, 503, 'ServiceUnavailable', `local cloud: ${backend} is not running (service ${service ?? 'unsigned'})`);
      return;
    }
    const ruled = registered === undefined ? ruledOperation(service, req.headers) : undefined;
    if (ruled !== undefined) {
      void applyRules(req, res, ruled, target, backend);
      return;
    }
    const upstream = http.request({
      host: target.host,
      port: target.port,
      method: req.method,
      path: req.url,
      headers: forwardableRawHeaders(req.rawHeaders),
      agent,
      setHost: false,
    });
    upstream.on('response', (up) => {
      res.writeHead(up.statusCode ?? 502, up.statusMessage, forwardableRawHeaders(up.rawHeaders));
      up.pipe(res);
      up.on('error', () => res.destroy());
    });
    upstream.on('error', (err) => {
      sendError(res, 502, 'BadGateway', `local cloud: ${backend} at ${target.host}:${target.port} failed: ${err.message}`);
    });
    req.on('error', () => upstream.destroy());
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  });
  server.keepAliveTimeout = 65_000;

  /** Buffers the request, lets the rules answer it or forward it (maybe rewritten), and sends back what they return. */
  async function applyRules(req: http.IncomingMessage, res: http.ServerResponse, ruled: { service: RuledService; op: string }, target: BackendAddress, backend: string): Promise<void> {
    const chunks: Buffer[] = [];
    try {
      for await (const chunk of req) chunks.push(chunk as Buffer);
    } catch {
      res.destroy();
      return;
    }
    const headers = withoutLengthHeaders(forwardableRawHeaders(req.rawHeaders));
    const forward = (text: string): Promise<EdgeResponse> =>
      new Promise<EdgeResponse>((resolve, reject) => {
        const body = Buffer.from(text, 'utf8');
        const upstream = http.request({
          host: target.host,
          port: target.port,
          method: req.method,
          path: req.url,
          headers: [...headers, 'Content-Length', String(body.byteLength)],
          agent,
          setHost: false,
        });
        upstream.on('response', (up) => {
          const parts: Buffer[] = [];
          up.on('data', (c: Buffer) => parts.push(c));
          up.on('end', () => resolve({ status: up.statusCode ?? 502, rawHeaders: forwardableRawHeaders(up.rawHeaders), body: Buffer.concat(parts) }));
          up.on('error', reject);
        });
        upstream.on('error', reject);
        upstream.end(body);
      });
    const text = Buffer.concat(chunks).toString('utf8');
    try {
      const rules = { dynamodb: dynamoRules, sqs: sqsRules, states: sfnRules?.forCaller(accessKeyOf(req.headers)) }[ruled.service];
      const answer = rules ? await rules.handle(ruled.op, text, forward) : await forward(text);
      if (res.destroyed) return;
      res.writeHead(answer.status, [...answer.rawHeaders]);
      res.end(answer.body);
    } catch (err) {
      sendError(res, 502, 'BadGateway', `local cloud: ${backend} at ${target.host}:${target.port} failed: ${(err as Error).message}`);
    }
  }

  async function register(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const name = decodeURIComponent((req.url ?? '').slice(LAMBDA_REGISTRY_PATH.length + 1));
    if (req.method === 'DELETE') {
      functions.delete(name);
      res.writeHead(204).end();
      return;
    }
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    let url: URL;
    try {
      url = new URL((JSON.parse(Buffer.concat(chunks).toString('utf8')) as { url: string }).url);
    } catch {
      sendError(res, 400, 'InvalidRequest', `register ${name}: body must be {"url": "http://host:port"}`);
      return;
    }
    functions.set(name, { host: url.hostname, port: Number(url.port) });
    res.writeHead(204).end();
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  return {
    host,
    port,
    url: `http://${host}:${port}`,
    setTargets(next: EdgeTargets): void {
      targets = { ...targets, ...next };
    },
    ruleCounts: () => ({ ...counts }),
    close(): Promise<void> {
      sfnRules?.close();
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        agent.destroy();
      });
    },
  };
}
