import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { invokedFunction, LAMBDA_REGISTRY_PATH } from '../local-cloud/edge-router.js';

/**
 * The Lambda Invoke API (`POST /2015-03-31/functions/{name}/invocations`, RequestResponse)
 * for handlers running in this process, registered with the local cloud's edge so that
 * anything calling Invoke on that endpoint (moto's Step Functions tasks, a test, the AWS CLI)
 * reaches the real handler. Answers as Lambda does: 200 with the handler's JSON result; 200
 * with `X-Amz-Function-Error: Unhandled` and `{errorType, errorMessage}` when it throws (Step
 * Functions names the task's error by errorType); 404 ResourceNotFoundException for a function
 * it does not serve.
 */

export type LambdaHandler = (payload: unknown) => Promise<unknown>;

export interface LambdaInvokeServer {
  /** `http://127.0.0.1:port` */
  readonly url: string;
  /** Every invocation served, in order. */
  readonly invocations: ReadonlyArray<{ readonly functionName: string; readonly payload: unknown }>;
  /** Unregisters from the edge and stops. */
  close(): Promise<void>;
}

async function body(req: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function json(res: http.ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(value ?? null);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** Serves `handlers` (function name -> handler) and registers each name with the edge at `edgeUrl`. */
export async function startLambdaInvokeServer(edgeUrl: string, handlers: Readonly<Record<string, LambdaHandler>>): Promise<LambdaInvokeServer> {
  const invocations: Array<{ functionName: string; payload: unknown }> = [];
  const server = http.createServer((req, res) => {
    void (async () => {
      const functionName = invokedFunction(req.method, req.url);
      const handler = functionName === undefined ? undefined : handlers[functionName];
      const text = await body(req);
      if (functionName === undefined || !handler) {
        json(res, 404, { __type: 'ResourceNotFoundException', message: `Function not found: ${functionName ?? req.url ?? ''}` }, { 'x-amzn-errortype': 'ResourceNotFoundException' });
        return;
      }
      const payload: unknown = text === '' ? null : JSON.parse(text);
      invocations.push({ functionName, payload });
      try {
        json(res, 200, await handler(payload), { 'x-amz-executed-version': '$LATEST' });
      } catch (error) {
        const e = error as Error;
        json(res, 200, { errorType: e.name, errorMessage: e.message }, { 'x-amz-function-error': 'Unhandled', 'x-amz-executed-version': '$LATEST' });
      }
    })().catch((error: unknown) => {
      if (!res.headersSent) json(res, 500, { __type: 'ServiceException', message: (error as Error).message });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const registry = (name: string): string => `${edgeUrl}${LAMBDA_REGISTRY_PATH}/${encodeURIComponent(name)}`;
  for (const name of Object.keys(handlers)) {
    const response = await fetch(registry(name), { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ url }) });
    if (!response.ok) throw new Error(`the edge at ${edgeUrl} refused to register ${name}: HTTP ${response.status}`);
  }

  return {
    url,
    invocations,
    async close() {
      await Promise.all(Object.keys(handlers).map((name) => fetch(registry(name), { method: 'DELETE' }).catch(() => undefined)));
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
