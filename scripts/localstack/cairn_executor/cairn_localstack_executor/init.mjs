/* global process, Buffer, setTimeout, clearTimeout, setInterval, fetch */
// The part of LocalStack's Go `lambda-runtime-init` for one execution environment, as a
// local process (started by executor.py). Two sides:
//
// - LocalStack's executor protocol: LocalStack POSTs {invoke-id, invoked-function-arn,
//   payload, trace-id} to http://127.0.0.1:<CAIRN_INIT_INVOKE_PORT>/invoke; this process
//   reports back to <LOCALSTACK_RUNTIME_ENDPOINT>: /status/<LOCALSTACK_RUNTIME_ID>/ready once
//   the runtime asked for its first invocation (or /status/.../error if its init failed), and
//   /invocations/<request id>/logs then /response or /error for each invocation.
// - The Lambda Runtime API (2018-06-01) on 127.0.0.1:<CAIRN_INIT_RUNTIME_API_PORT> for the
//   runtime client (runtime.mjs, a child process): invocation/next (long poll),
//   invocation/<id>/response, invocation/<id>/error, init/error.
//
// Like the real init it enforces the function timeout (AWS_LAMBDA_FUNCTION_TIMEOUT seconds):
// a timed-out or crashed runtime is reported as the invocation's error and started again.
import { spawn } from 'node:child_process';
import http from 'node:http';

const env = process.env;
const INVOKE_PORT = Number(env.CAIRN_INIT_INVOKE_PORT);
const API_PORT = Number(env.CAIRN_INIT_RUNTIME_API_PORT);
const ENDPOINT = env.LOCALSTACK_RUNTIME_ENDPOINT;
const RUNTIME_ID = env.LOCALSTACK_RUNTIME_ID;
const TIMEOUT_MS = Number(env.AWS_LAMBDA_FUNCTION_TIMEOUT ?? 3) * 1000;
const PREFIX = '/2018-06-01/runtime';
const MAX_LOG_CHARS = 256 * 1024;

const log = (message) => process.stdout.write(`[cairn-init ${RUNTIME_ID}] ${message}\n`);

/** POST to LocalStack's gateway; retried a few times (it may be busy), never throws. */
async function report(path, body, contentType = 'application/json') {
  for (let attempt = 1; ; attempt++) {
    try {
      const response = await fetch(`${ENDPOINT}${path}`, { method: 'POST', headers: { 'content-type': contentType }, body });
      await response.arrayBuffer();
      if (response.ok || response.status === 400) return;
      throw new Error(`HTTP ${response.status}`);
    } catch (error) {
      if (attempt >= 5) {
        log(`could not report ${path}: ${error.message}`);
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
    }
  }
}

// ---------- state ----------
let ready = false; // reported ready to LocalStack
let initFailed = false; // reported an init error to LocalStack (it stops this environment)
let child; // the runtime client
let childInitialized = false; // the current child asked for an invocation
const queue = []; // invocations sent by LocalStack, not yet handed to the runtime
let waiting; // the runtime's pending invocation/next: { res }
let current; // the invocation the runtime is working on: { id, timer, logs }

function startRuntime() {
  childInitialized = false;
  child = spawn(env.CAIRN_INIT_NODE || process.execPath, [env.CAIRN_INIT_RUNTIME], {
    cwd: env.LAMBDA_TASK_ROOT,
    env: { ...env, AWS_LAMBDA_RUNTIME_API: `127.0.0.1:${API_PORT}` },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const pid = child.pid;
  for (const stream of [child.stdout, child.stderr]) {
    stream.on('data', (chunk) => {
      process.stdout.write(chunk);
      if (current && current.logs.length < MAX_LOG_CHARS) current.logs += chunk.toString('utf8');
    });
  }
  const me = child;
  child.on('exit', (code, signal) => {
    if (me !== child) return; // replaced already (timeout)
    log(`runtime ${pid} exited (${signal ?? code})`);
    if (waiting) waiting = undefined;
    if (current) {
      finish(
        current.id,
        'error',
        JSON.stringify({ errorType: 'Runtime.ExitError', errorMessage: `RequestId: ${current.id} Error: Runtime exited with ${signal ? `signal: ${signal}` : `error: exit status ${code}`}` }),
      );
    } else if (!ready || initFailed) {
      if (!initFailed) void report(`/status/${RUNTIME_ID}/error`, JSON.stringify({ errorType: 'Runtime.ExitError', errorMessage: `Runtime exited during init (${signal ?? code})` }));
      initFailed = true;
      return;
    }
    setTimeout(startRuntime, 50);
  });
}

function dispatch() {
  if (!waiting || current || queue.length === 0) return;
  const invocation = queue.shift();
  const { res } = waiting;
  waiting = undefined;
  const deadline = Date.now() + TIMEOUT_MS;
  // The lines the real init writes around each invocation (LocalStack forwards them to CloudWatch Logs).
  current = { id: invocation['invoke-id'], startedAt: Date.now(), logs: `START RequestId: ${invocation['invoke-id']} Version: ${env.AWS_LAMBDA_FUNCTION_VERSION ?? '$LATEST'}\n` };
  current.timer = setTimeout(() => onTimeout(invocation['invoke-id']), TIMEOUT_MS);
  res.writeHead(200, {
    'content-type': 'application/json',
    'lambda-runtime-aws-request-id': invocation['invoke-id'],
    'lambda-runtime-deadline-ms': String(deadline),
    'lambda-runtime-invoked-function-arn': invocation['invoked-function-arn'] ?? '',
    'lambda-runtime-trace-id': invocation['trace-id'] ?? '',
  });
  res.end(invocation.payload ?? '');
}

function onTimeout(id) {
  if (!current || current.id !== id) return;
  const seconds = (TIMEOUT_MS / 1000).toFixed(2);
  log(`invocation ${id} timed out after ${seconds} s; restarting the runtime`);
  const old = child;
  child = undefined;
  old?.kill('SIGKILL');
  finish(id, 'error', JSON.stringify({ errorType: 'Sandbox.Timedout', errorMessage: `RequestId: ${id} Error: Task timed out after ${seconds} seconds` }));
  startRuntime();
}

/** Ends the current invocation: logs, then the response or error, to LocalStack. */
function finish(id, kind, body) {
  if (!current || current.id !== id) return false;
  clearTimeout(current.timer);
  const duration = (Date.now() - current.startedAt).toFixed(2);
  const logs = `${current.logs}END RequestId: ${id}\nREPORT RequestId: ${id}\tDuration: ${duration} ms\tBilled Duration: ${Math.ceil(Number(duration))} ms\tMemory Size: ${env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE ?? '?'} MB\n`;
  current = undefined;
  void (async () => {
    await report(`/invocations/${id}/logs`, JSON.stringify({ logs }));
    await report(`/invocations/${id}/${kind}`, body);
    dispatch();
  })();
  return true;
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function reply(res, status, body = '') {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(typeof body === 'string' ? body : JSON.stringify(body));
}

// ---------- the executor side: LocalStack -> init ----------
const invokeServer = http.createServer(async (req, res) => {
  if (req.method === 'POST' && req.url === '/invoke') {
    const invocation = JSON.parse((await readBody(req)).toString('utf8'));
    queue.push(invocation);
    reply(res, 200, {});
    dispatch();
    return;
  }
  reply(res, 404, { message: `no route ${req.method} ${req.url}` });
});

// ---------- the Runtime API side: runtime client -> init ----------
const apiServer = http.createServer(async (req, res) => {
  const url = req.url ?? '';
  if (req.method === 'GET' && url === `${PREFIX}/invocation/next`) {
    if (!childInitialized) {
      childInitialized = true;
      if (!ready) {
        ready = true;
        await report(`/status/${RUNTIME_ID}/ready`, '{}');
      }
    }
    waiting = { res };
    res.on('close', () => {
      if (waiting?.res === res && !res.writableEnded) waiting = undefined;
    });
    dispatch();
    return;
  }
  const match = /^\/2018-06-01\/runtime\/invocation\/([^/]+)\/(response|error)$/.exec(url);
  if (req.method === 'POST' && match) {
    const body = await readBody(req);
    const id = decodeURIComponent(match[1]);
    if (!finish(id, match[2], body)) return reply(res, 400, { errorType: 'InvalidRequestID', errorMessage: `no invocation ${id} in progress` });
    return reply(res, 202, { status: 'OK' });
  }
  if (req.method === 'POST' && url === `${PREFIX}/init/error`) {
    const body = await readBody(req);
    log(`init error: ${body.toString('utf8')}`);
    if (!ready && !initFailed) {
      initFailed = true;
      await report(`/status/${RUNTIME_ID}/error`, body);
    }
    return reply(res, 202, { status: 'OK' });
  }
  reply(res, 404, { errorType: 'InvalidRoute', errorMessage: `no route ${req.method} ${url}` });
});
apiServer.keepAliveTimeout = 0;
apiServer.requestTimeout = 0;
apiServer.headersTimeout = 0;

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    child?.kill('SIGKILL');
    process.exit(0);
  });
}

// Never outlive LocalStack (a SIGKILLed LocalStack cannot stop its environments).
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) {
    child?.kill('SIGKILL');
    process.exit(0);
  }
}, 1000).unref();

await Promise.all([new Promise((resolve) => invokeServer.listen(INVOKE_PORT, '127.0.0.1', resolve)), new Promise((resolve) => apiServer.listen(API_PORT, '127.0.0.1', resolve))]);
log(`listening: invoke ${INVOKE_PORT}, runtime API ${API_PORT}; handler ${env._HANDLER} in ${env.LAMBDA_TASK_ROOT}`);
startRuntime();
