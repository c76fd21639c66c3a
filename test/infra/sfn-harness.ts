/**
 * Runs the synthesized coordinator state machines on moto's Step Functions interpreter, with
 * their Lambda tasks reaching the real coordinator handler in this process.
 *
 * moto's interpreter sends its own SDK calls (lambda:Invoke, sqs, states callbacks) to
 * http://localhost:$MOTO_PORT. The shared local cloud points MOTO_PORT at its edge, which has no
 * Lambda backend, so this harness starts its own moto whose MOTO_PORT is a small proxy:
 *   lambda Invoke -> served here: the Lambda Invoke REST API (POST /2015-03-31/functions/{name}/invocations);
 *                    the rest of the Lambda API (functions, event source mappings) -> this moto
 *   dynamodb, sqs -> the shared local cloud's edge (DynamoDB Local, ElasticMQ)
 *   anything else -> this moto (Step Functions, S3)
 * A Lambda Invoke route in the shared edge (served by the local runner) would make the extra
 * moto unnecessary; see the issue report.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { serviceOf } from '../../shared/aws/local-cloud/edge-router.js';
import { freePort, locateInstallation, LOCAL_CLOUD_ACCOUNT, LOCAL_CLOUD_REGION } from '../../shared/aws/local-cloud/local-cloud.js';

export type InvokeFn = (functionName: string, payload: unknown) => Promise<unknown>;

export interface SfnHarness {
  /** Endpoint for every SDK client of the test and of the handlers. */
  readonly endpoint: string;
  /** This moto itself, without the proxy (its own SQS backend, which Lambda event source mappings check). */
  readonly motoEndpoint: string;
  readonly invocations: Array<{ functionName: string; action: unknown }>;
  stop(): Promise<void>;
}

export const functionArn = (name: string): string => `arn:aws:lambda:${LOCAL_CLOUD_REGION}:${LOCAL_CLOUD_ACCOUNT}:function:${name}`;

async function readBody(req: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function forward(req: http.IncomingMessage, res: http.ServerResponse, target: URL): void {
  const upstream = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers, agent: false });
  upstream.on('response', (up) => {
    res.writeHead(up.statusCode ?? 502, up.headers);
    up.pipe(res);
  });
  upstream.on('error', (err) => {
    res.writeHead(502);
    res.end(err.message);
  });
  req.pipe(upstream);
}

async function answers(url: string): Promise<boolean> {
  try {
    await fetch(url);
    return true;
  } catch {
    return false;
  }
}

export async function startSfnHarness(cloudEndpoint: string, invoke: InvokeFn): Promise<SfnHarness> {
  const install = locateInstallation();
  const motoPort = await freePort();
  const moto = new URL(`http://127.0.0.1:${motoPort}`);
  const cloud = new URL(cloudEndpoint);
  const invocations: SfnHarness['invocations'] = [];

  const server = http.createServer((req, res) => {
    const service = serviceOf(req.url, req.headers);
    const match = /\/functions\/([^/]+)\/invocations/.exec(req.url ?? '');
    if (service === 'lambda' && match) {
      void (async () => {
        const functionName = decodeURIComponent(match?.[1] ?? '');
        const body = await readBody(req);
        const payload: unknown = body === '' ? null : JSON.parse(body);
        invocations.push({ functionName, action: (payload as { action?: unknown } | null)?.action });
        try {
          const result = await invoke(functionName, payload);
          res.writeHead(200, { 'content-type': 'application/json', 'x-amz-executed-version': '$LATEST' });
          res.end(JSON.stringify(result ?? null));
        } catch (error) {
          const e = error as Error;
          // Lambda's shape of an unhandled error: Step Functions names the error by errorType.
          res.writeHead(200, { 'content-type': 'application/json', 'x-amz-function-error': 'Unhandled' });
          res.end(JSON.stringify({ errorType: e.name, errorMessage: e.message }));
        }
      })();
      return;
    }
    forward(req, res, service === 'dynamodb' || service === 'sqs' ? cloud : moto);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const proxyPort = (server.address() as AddressInfo).port;

  const child: ChildProcess = spawn(install.motoServer, ['-H', '127.0.0.1', '-p', String(motoPort)], {
    env: { ...process.env, MOTO_PORT: String(proxyPort), AWS_DEFAULT_REGION: LOCAL_CLOUD_REGION, AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test' },
    stdio: 'ignore',
  });
  const deadline = Date.now() + 60_000;
  while (!(await answers(`${moto.origin}/moto-api/`))) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error('moto did not start');
    await new Promise((r) => setTimeout(r, 200));
  }
  const configured = await fetch(`${moto.origin}/moto-api/config`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ stepfunctions: { execute_state_machine: true }, lambda: { use_docker: false } }),
  });
  if (!configured.ok) throw new Error(`moto config: HTTP ${configured.status}`);

  return {
    endpoint: `http://127.0.0.1:${proxyPort}`,
    motoEndpoint: moto.origin,
    invocations,
    async stop() {
      child.kill('SIGKILL');
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

type Part = string | { Ref?: string; 'Fn::GetAtt'?: [string, string] };

/** The synthesized DefinitionString with CloudFormation references replaced by local ARNs. */
export function resolveDefinition(definition: unknown, refs: Readonly<Record<string, string>>): string {
  if (typeof definition === 'string') return definition;
  const join = (definition as { 'Fn::Join': [string, Part[]] })['Fn::Join'];
  const pseudo: Record<string, string> = { 'AWS::Partition': 'aws', 'AWS::Region': LOCAL_CLOUD_REGION, 'AWS::AccountId': LOCAL_CLOUD_ACCOUNT, 'AWS::URLSuffix': 'amazonaws.com' };
  return join[1]
    .map((part) => {
      if (typeof part === 'string') return part;
      const id = part.Ref ?? part['Fn::GetAtt']?.[0];
      const value = id === undefined ? undefined : (pseudo[id] ?? refs[id]);
      if (value === undefined) throw new Error(`unresolved reference ${JSON.stringify(part)}`);
      return value;
    })
    .join(join[0]);
}
