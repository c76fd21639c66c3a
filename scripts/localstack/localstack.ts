/**
 * Installs (scripts/localstack/install.sh) and starts a LocalStack without Docker, for
 * `npm run test:localstack` (shared/TESTING.md, section 3b): host mode on a free loopback port,
 * its files under .cache/localstack/, Lambda functions run by our own runtime executor
 * (scripts/localstack/cairn_executor, LAMBDA_RUNTIME_EXECUTOR=cairn-process) as local Node.js
 * processes. `stop()` ends LocalStack's whole process group (its DynamoDB Local, Kinesis mock
 * and every function process with it).
 */
import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';

export interface LocalStack {
  readonly endpoint: string;
  readonly port: number;
  /** LocalStack's own log. */
  readonly logFile: string;
  /** One log per Lambda execution environment (init + runtime output). */
  readonly lambdaLogDir: string;
  stop(): Promise<void>;
}

export class LocalStackStartError extends Error {
  override readonly name = 'LocalStackStartError';
}

const ROOT = path.resolve(import.meta.dirname, '../..');
export const EXECUTOR = 'cairn-process';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** Runs the install script; returns what it printed (FILESYSTEM_ROOT=..., LOCALSTACK_PYTHON=...). */
export function installLocalStack(log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): { filesystemRoot: string; python: string } {
  log('$ bash scripts/localstack/install.sh');
  const result = spawnSync('bash', [path.join(ROOT, 'scripts/localstack/install.sh')], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  if (result.status !== 0) throw new LocalStackStartError(`scripts/localstack/install.sh failed (exit ${result.status ?? result.signal}); see its output above`);
  const values = new Map<string, string>();
  for (const line of result.stdout.split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line);
    if (m?.[1] !== undefined && m[2] !== undefined) values.set(m[1], m[2]);
  }
  const filesystemRoot = values.get('FILESYSTEM_ROOT');
  const python = values.get('LOCALSTACK_PYTHON');
  if (!filesystemRoot || !python) throw new LocalStackStartError(`scripts/localstack/install.sh did not print FILESYSTEM_ROOT and LOCALSTACK_PYTHON:\n${result.stdout}`);
  return { filesystemRoot, python };
}

/**
 * Every process below `root` (from /proc). LocalStack starts DynamoDB Local and the Kinesis
 * mock in sessions of their own, so killing its process group alone would leave them running.
 */
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** pid -> start time (so that a pid reused by another process is never killed). */
function descendants(root: number): Map<number, string> {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid ...: comm may hold spaces and parentheses.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // exited meanwhile
    }
  }
  const found = new Map<number, string>();
  const todo = [root];
  while (todo.length > 0) {
    for (const child of children.get(todo.pop() as number) ?? []) {
      const start = startTime(child);
      if (start !== undefined) found.set(child, start);
      todo.push(child);
    }
  }
  return found;
}

function kill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // gone already
  }
}

/** Run directories (`<pid>-<port>`: logs, unzipped function code) of test processes that are gone. */
function removeStaleRuns(): void {
  const runs = path.join(ROOT, '.cache/localstack/run');
  let entries: string[] = [];
  try {
    entries = readdirSync(runs);
  } catch {
    return;
  }
  for (const entry of entries) {
    const pid = Number(/^(\d+)-\d+$/.exec(entry)?.[1]);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      process.kill(pid, 0);
    } catch {
      rmSync(path.join(runs, entry), { recursive: true, force: true });
    }
  }
}

function tail(file: string, lines = 40): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

export async function startLocalStack(options: { startTimeoutMs?: number; log?: (line: string) => void } = {}): Promise<LocalStack> {
  const log = options.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const { filesystemRoot, python } = installLocalStack(log);
  const port = await freePort();
  removeStaleRuns();
  const runDir = path.join(ROOT, '.cache/localstack/run', `${process.pid}-${port}`);
  const tmp = path.join(runDir, 'tmp');
  const lambdaLogDir = path.join(runDir, 'lambda');
  mkdirSync(tmp, { recursive: true });
  mkdirSync(lambdaLogDir, { recursive: true });
  const logFile = path.join(runDir, 'localstack.log');
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of Object.keys(env)) if (name.startsWith('AWS_') || name.startsWith('LOCALSTACK_') || name === 'TMPDIR' || name === 'NODE_OPTIONS') delete env[name];
  Object.assign(env, {
    GATEWAY_LISTEN: `127.0.0.1:${port}`,
    // Names in returned URLs (queue URLs, ...): loopback, path-style (no *.localhost.localstack.cloud DNS here).
    LOCALSTACK_HOST: `127.0.0.1:${port}`,
    SQS_ENDPOINT_STRATEGY: 'path',
    DNS_ADDRESS: '0',
    SKIP_SSL_CERT_DOWNLOAD: '1',
    DISABLE_EVENTS: '1',
    PERSISTENCE: '0',
    FILESYSTEM_ROOT: filesystemRoot,
    // /.dockerenv exists on our machines: without this LocalStack writes to /var/lib/localstack.
    OVERRIDE_IN_DOCKER: '0',
    LAMBDA_RUNTIME_EXECUTOR: EXECUTOR,
    CAIRN_LAMBDA_LOG_DIR: lambdaLogDir,
    // Queue depths reach CloudWatch (and so the DLQ alarms) every 10 s instead of every minute.
    SQS_CLOUDWATCH_METRICS_REPORT_INTERVAL: '10',
    // Python's tempfile (unzipped function code); not TMPDIR, which LocalStack reads as a deprecated setting.
    TEMP: tmp,
  });
  const out = createWriteStream(logFile);
  await new Promise((resolve) => out.once('open', resolve));
  log(`starting LocalStack on 127.0.0.1:${port} (log: ${path.relative(ROOT, logFile)})`);
  const child = spawn(path.join(path.dirname(python), 'localstack'), ['start', '--host'], { cwd: runDir, env, detached: true, stdio: ['ignore', out, out] });
  let exited: string | undefined;
  child.once('exit', (code, signal) => (exited = `exit ${signal ?? code}`));
  const pid = child.pid;
  if (pid === undefined) throw new LocalStackStartError(`could not start ${python} -m localstack`);
  // Remembered while it runs: once LocalStack is gone its orphans are no longer below it.
  const known = new Map<number, string>();
  const remember = (): void => {
    for (const [p, start] of descendants(pid)) known.set(p, start);
  };
  const watch = setInterval(remember, 2_000);
  watch.unref();
  const killAll = (signal: NodeJS.Signals): void => {
    remember();
    kill(-pid, signal);
    for (const [p, start] of known) if (startTime(p) === start) kill(p, signal);
  };
  // A test that dies (exception, Ctrl-C) leaves no LocalStack behind.
  const onExit = (): void => killAll('SIGKILL');
  process.once('exit', onExit);

  const endpoint = `http://127.0.0.1:${port}`;
  const stop = async (): Promise<void> => {
    process.removeListener('exit', onExit);
    clearInterval(watch);
    remember();
    if (exited === undefined) {
      // Graceful first: LocalStack then stops its DynamoDB Local, Kinesis mock and functions itself.
      kill(-pid, 'SIGTERM');
      const deadline = Date.now() + 20_000;
      while (exited === undefined && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 200));
    }
    // Whatever is left of it.
    killAll('SIGKILL');
    out.end();
  };

  const deadline = Date.now() + (options.startTimeoutMs ?? 180_000);
  for (;;) {
    if (exited !== undefined) throw new LocalStackStartError(`LocalStack exited while starting (${exited}); last lines of ${logFile}:\n${tail(logFile)}`);
    try {
      const response = await fetch(`${endpoint}/_localstack/health`, { signal: AbortSignal.timeout(2_000) });
      if (response.ok) {
        const health = (await response.json()) as { services?: Record<string, string> };
        if (health.services && Object.keys(health.services).length > 0) break;
      }
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new LocalStackStartError(`LocalStack did not answer ${endpoint}/_localstack/health within ${options.startTimeoutMs ?? 180_000} ms; last lines of ${logFile}:\n${tail(logFile)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  return { endpoint, port, logFile, lambdaLogDir, stop };
}

// `npx tsx scripts/localstack/localstack.ts`: a LocalStack for by-hand use (AWS_ENDPOINT_URL=<printed>), until Ctrl-C.
if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) {
  const localstack = await startLocalStack();
  process.stdout.write(`AWS_ENDPOINT_URL=${localstack.endpoint}\nlog: ${localstack.logFile}\nfunction logs: ${localstack.lambdaLogDir}\nCtrl-C stops it\n`);
  const stop = (): void => void localstack.stop().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  setInterval(() => {}, 60_000);
}
