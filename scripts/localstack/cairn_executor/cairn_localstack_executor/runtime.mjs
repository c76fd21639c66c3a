/* global process, Buffer, console, setTimeout */
// A Node.js Lambda runtime client: loads the function's handler (`_HANDLER`, `<file>.<export>`)
// from LAMBDA_TASK_ROOT and serves invocations from the Runtime API at AWS_LAMBDA_RUNTIME_API
// (init.mjs), as the managed nodejs runtimes do: invocation/next, then the handler's result to
// invocation/<id>/response or its error to invocation/<id>/error; a handler that cannot be
// loaded goes to init/error.
import { closeSync, existsSync, openSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const env = process.env;
const [host, port] = (env.AWS_LAMBDA_RUNTIME_API ?? '').split(':');
const PREFIX = '/2018-06-01/runtime';
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function call(method, urlPath, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port: Number(port), method, path: `${PREFIX}${urlPath}`, agent, headers: body === undefined ? {} : { 'content-type': 'application/json' } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

function errorBody(error) {
  const e = error instanceof Error ? error : new Error(String(error));
  return JSON.stringify({
    errorType: e.name || 'Error',
    errorMessage: e.message,
    stackTrace: (e.stack ?? '')
      .split('\n')
      .slice(1)
      .map((l) => l.trim()),
  });
}

async function loadHandler() {
  const spec = env._HANDLER ?? '';
  const dot = spec.lastIndexOf('.');
  if (dot <= 0) throw Object.assign(new Error(`Bad handler ${spec}`), { name: 'Runtime.MalformedHandlerName' });
  const file = spec.slice(0, dot);
  const name = spec.slice(dot + 1);
  const root = env.LAMBDA_TASK_ROOT ?? process.cwd();
  const candidate = ['.mjs', '.js', '.cjs'].map((ext) => path.resolve(root, file + ext)).find((p) => existsSync(p));
  if (!candidate) throw Object.assign(new Error(`Cannot find module '${file}' in ${root}`), { name: 'Runtime.ImportModuleError' });
  const mod = await import(pathToFileURL(candidate).href);
  const handler = mod[name] ?? mod.default?.[name];
  if (typeof handler !== 'function') throw Object.assign(new Error(`${file}.${name} is undefined or not exported`), { name: 'Runtime.HandlerNotFound' });
  return handler;
}

/**
 * A platform fault for tests (test:localstack --faults), set on a function's configuration:
 * CAIRN_LAMBDA_FAULT={"point":"before"|"after","kind":"throw"|"crash","once":"<file>"}. At the
 * first invocation of any environment of the function that creates `<file>` (so once in all),
 * the runtime throws (the invocation fails) or exits (the runtime crashes), before the handler
 * ran or after it returned (its effects done, its response lost).
 */
const fault = env.CAIRN_LAMBDA_FAULT ? JSON.parse(env.CAIRN_LAMBDA_FAULT) : undefined;
function injectFault(point, id) {
  if (!fault || fault.point !== point) return;
  try {
    closeSync(openSync(fault.once, 'wx'));
  } catch {
    return; // fired already
  }
  console.error(`${new Date().toISOString()}\t${id}\tINJECTED FAULT: ${fault.kind} ${point} the handler`);
  if (fault.kind === 'crash') process.exit(99);
  throw Object.assign(new Error(`injected fault: ${fault.kind} ${point} the handler`), { name: 'InjectedFault' });
}

let handler;
try {
  handler = await loadHandler();
} catch (error) {
  console.error(error);
  await call('POST', '/init/error', errorBody(error));
  process.exit(1);
}

for (;;) {
  const next = await call('GET', '/invocation/next');
  if (next.status !== 200) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    continue;
  }
  const id = next.headers['lambda-runtime-aws-request-id'];
  const deadline = Number(next.headers['lambda-runtime-deadline-ms']);
  if (next.headers['lambda-runtime-trace-id']) env._X_AMZN_TRACE_ID = next.headers['lambda-runtime-trace-id'];
  const context = {
    awsRequestId: id,
    invokedFunctionArn: next.headers['lambda-runtime-invoked-function-arn'],
    functionName: env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
    memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  };
  let result;
  try {
    const event = next.body === '' ? {} : JSON.parse(next.body);
    injectFault('before', id);
    const value = await handler(event, context);
    injectFault('after', id);
    result = { ok: JSON.stringify(value ?? null) };
  } catch (error) {
    console.error(`${new Date().toISOString()}\t${id}\tERROR\t`, error);
    result = { error: errorBody(error) };
  }
  if ('ok' in result) await call('POST', `/invocation/${encodeURIComponent(id)}/response`, result.ok);
  else await call('POST', `/invocation/${encodeURIComponent(id)}/error`, result.error);
}
