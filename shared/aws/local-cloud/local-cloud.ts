/**
 * Starts Cairn's local cloud: DynamoDB Local, ElasticMQ and moto server as child
 * processes on free ports of 127.0.0.1, behind one edge endpoint (see edge-router.ts).
 * The emulators are installed by `npx cairn cloud install` (scripts/cloud/install.sh) into
 * defaultCacheDir().
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { packageRoot } from '../../package-root.js';
import { awsRulesFromEnv, type AwsRulesOptions } from './aws-rules.js';
import { HEALTH_PATH, startEdgeRouter, type Backend, type EdgeRouter } from './edge-router.js';
import { LOCAL_CLOUD_ACCOUNT, LOCAL_CLOUD_REGION } from './local-cloud-constants.js';

export const DEFAULT_EDGE_PORT = 4566;
export { LOCAL_CLOUD_ACCOUNT, LOCAL_CLOUD_REGION } from './local-cloud-constants.js';
export const INSTALL_COMMAND = 'npx cairn cloud install';

/** The local cloud cannot start here: an emulator or a tool it needs is missing. */
export class LocalCloudUnavailableError extends Error {
  override readonly name = 'LocalCloudUnavailableError';
  constructor(readonly reason: string) {
    super(`local cloud unavailable: ${reason}. Run \`${INSTALL_COMMAND}\` (needs Java 17+, Maven 3.8+ and Python 3 with venv).`);
  }
}

/** An emulator was installed but did not come up. */
export class LocalCloudStartError extends Error {
  override readonly name = 'LocalCloudStartError';
}

export interface LocalCloudOptions {
  /** Edge port; 0 picks a free one. Default: env CAIRN_EDGE_PORT, else 4566. */
  readonly edgePort?: number;
  /** Where install.sh put the emulators. Default: env CAIRN_CLOUD_CACHE, else <repo>/.cache/cloud. */
  readonly cacheDir?: string;
  /** How long each emulator may take to answer. Default 90 s. */
  readonly startTimeoutMs?: number;
  /** Keep the emulators' logs after a clean stop. Default false. */
  readonly keepLogs?: boolean;
  /**
   * AWS's rules the emulators do not play, played at the edge (aws-rules.ts): by default all on
   * with AWS's figures; the environment (CAIRN_CLOUD_PARTITION_WCU, ... see AWS_RULE_ENV) and
   * then these options change them; false turns them all off.
   */
  readonly rules?: AwsRulesOptions | false;
  readonly log?: (message: string) => void;
}

export interface EmulatorInfo {
  readonly pid: number;
  readonly port: number;
  readonly logFile: string;
}

export interface LocalCloud {
  /** The single AWS endpoint, e.g. http://127.0.0.1:4566 */
  readonly endpoint: string;
  readonly edgePort: number;
  readonly region: string;
  readonly emulators: Readonly<Record<Backend, EmulatorInfo>>;
  /** Holds the emulators' logs and generated config. */
  readonly runDir: string;
  stop(): Promise<void>;
}

/**
 * Where the emulators are installed: CAIRN_CLOUD_CACHE; else `.cache/cloud` of a source checkout;
 * else, for an installed package (whose node_modules a reinstall wipes), the user's cache
 * (`$XDG_CACHE_HOME/cairn/cloud`, by default `~/.cache/cairn/cloud`).
 */
export function defaultCacheDir(): string {
  if (process.env.CAIRN_CLOUD_CACHE) return process.env.CAIRN_CLOUD_CACHE;
  const root = packageRoot();
  if (!root.split(path.sep).includes('node_modules')) return path.join(root, '.cache', 'cloud');
  return path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'cairn', 'cloud');
}

export function defaultEdgePort(): number {
  const raw = process.env.CAIRN_EDGE_PORT;
  if (raw === undefined || raw === '') return DEFAULT_EDGE_PORT;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`CAIRN_EDGE_PORT is not a port: ${raw}`);
  return port;
}

/**
 * The endpoint of a local cloud already serving on `port` (its edge answers HEALTH_PATH, as
 * LocalStack answers /_localstack/health), else undefined: `cairn run --target local-cloud`
 * uses it instead of starting another.
 */
export async function findRunningLocalCloud(port: number = defaultEdgePort(), timeoutMs = 1000): Promise<string | undefined> {
  if (port === 0) return undefined;
  const endpoint = `http://127.0.0.1:${port}`;
  try {
    const response = await fetch(`${endpoint}${HEALTH_PATH}`, { signal: AbortSignal.timeout(timeoutMs) });
    if (!response.ok) return undefined;
    const health = (await response.json()) as { backends?: unknown };
    return typeof health.backends === 'object' && health.backends !== null ? endpoint : undefined;
  } catch {
    return undefined;
  }
}

interface Installation {
  readonly dynamodbLib: string;
  readonly elasticmqLib: string;
  readonly motoServer: string;
}

/** Finds the installed emulators, or throws LocalCloudUnavailableError saying what is missing. */
export function locateInstallation(cacheDir: string = defaultCacheDir()): Installation {
  const java = spawnSync('java', ['-version'], { stdio: 'ignore' });
  if (java.error !== undefined || java.status !== 0) {
    throw new LocalCloudUnavailableError('`java` (Java 17+) is not on PATH');
  }
  const dynamodbLib = path.join(cacheDir, 'dynamodb-local', 'lib');
  const elasticmqLib = path.join(cacheDir, 'elasticmq', 'lib');
  const motoServer = path.join(cacheDir, 'venv', 'bin', 'moto_server');
  const missing: string[] = [];
  if (!fs.existsSync(path.join(cacheDir, 'dynamodb-local', 'installed'))) missing.push(`DynamoDB Local (${dynamodbLib})`);
  if (!fs.existsSync(path.join(cacheDir, 'elasticmq', 'installed'))) missing.push(`ElasticMQ (${elasticmqLib})`);
  if (!fs.existsSync(path.join(cacheDir, 'venv', 'installed')) || !fs.existsSync(motoServer)) missing.push(`moto server (${motoServer})`);
  if (missing.length > 0) throw new LocalCloudUnavailableError(`not installed: ${missing.join(', ')}`);
  return { dynamodbLib, elasticmqLib, motoServer };
}

// ---- child process bookkeeping: emulators never outlive this process ------------------

const live = new Set<ChildProcess>();
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
const SIGNAL_NUMBERS: Record<(typeof SIGNALS)[number], number> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };
let hooksInstalled = false;

function killAllNow(): void {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  live.clear();
}

function onSignal(signal: (typeof SIGNALS)[number]): void {
  killAllNow();
  removeHooks();
  // Keep the default behaviour (exit) unless someone else handles the signal.
  if (process.listenerCount(signal) === 0) process.exit(128 + SIGNAL_NUMBERS[signal]);
}

const signalHandlers = new Map(SIGNALS.map((s) => [s, (): void => onSignal(s)] as const));

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', killAllNow);
  for (const [signal, handler] of signalHandlers) process.on(signal, handler);
}

function removeHooks(): void {
  if (!hooksInstalled) return;
  hooksInstalled = false;
  process.off('exit', killAllNow);
  for (const [signal, handler] of signalHandlers) process.off(signal, handler);
}

let setprivAvailable: boolean | undefined;
/** `setpriv --pdeathsig` makes the kernel kill the child even if we die by SIGKILL. */
function hasSetpriv(): boolean {
  if (setprivAvailable === undefined) {
    const r = spawnSync('setpriv', ['--help'], { encoding: 'utf8' });
    setprivAvailable = r.status === 0 && r.stdout.includes('--pdeathsig');
  }
  return setprivAvailable;
}

interface Running {
  readonly name: Backend;
  readonly child: ChildProcess;
  readonly port: number;
  readonly logFile: string;
  exited: boolean;
}

function spawnEmulator(name: Backend, command: string, args: readonly string[], port: number, runDir: string, env: NodeJS.ProcessEnv): Running {
  const logFile = path.join(runDir, `${name}.log`);
  const fd = fs.openSync(logFile, 'w');
  const [cmd, argv] = hasSetpriv() ? ['setpriv', ['--pdeathsig', 'KILL', '--', command, ...args]] : [command, [...args]];
  const child = spawn(cmd, argv, { cwd: runDir, env, stdio: ['ignore', fd, fd] });
  fs.closeSync(fd);
  installHooks();
  live.add(child);
  const running: Running = { name, child, port, logFile, exited: false };
  child.once('exit', () => {
    running.exited = true;
    live.delete(child);
  });
  child.once('error', () => {
    running.exited = true;
    live.delete(child);
  });
  return running;
}

function tail(file: string, lines = 20): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

function answers(port: number, urlPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, timeout: 1_000, agent: false }, (res) => {
      res.resume();
      resolve(true);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

async function waitUntilAnswers(emulator: Running, urlPath: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (emulator.exited) {
      throw new LocalCloudStartError(`${emulator.name} exited during start-up (exit code ${emulator.child.exitCode ?? 'signal'}); log ${emulator.logFile}:\n${tail(emulator.logFile)}`);
    }
    if (await answers(emulator.port, urlPath)) return;
    if (Date.now() > deadline) {
      throw new LocalCloudStartError(`${emulator.name} did not answer on 127.0.0.1:${emulator.port} within ${timeoutMs} ms; log ${emulator.logFile}:\n${tail(emulator.logFile)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function stopEmulator(emulator: Running, graceMs = 5_000): Promise<void> {
  if (emulator.exited) return;
  const exited = new Promise<void>((resolve) => emulator.child.once('exit', () => resolve()));
  emulator.child.kill('SIGTERM');
  const timer = setTimeout(() => emulator.child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** Removes the run directories of local clouds whose process is gone (killed hard, say). */
function removeStaleRunDirs(cacheDir: string): void {
  const runRoot = path.join(cacheDir, 'run');
  let entries: string[];
  try {
    entries = fs.readdirSync(runRoot);
  } catch {
    return;
  }
  for (const entry of entries) {
    const pid = Number(entry.split('-')[0]);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    let gone = false;
    try {
      process.kill(pid, 0);
    } catch (err) {
      gone = (err as NodeJS.ErrnoException).code === 'ESRCH';
    }
    if (gone) fs.rmSync(path.join(runRoot, entry), { recursive: true, force: true });
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address !== null && typeof address === 'object') resolve(address.port);
        else reject(new Error('no free port'));
      });
    });
  });
}

function elasticmqConfig(port: number, edgePort: number): string {
  // node-address makes the queue URLs that ElasticMQ hands out point at the edge, so
  // clients following a QueueUrl go through the edge too.
  return `include classpath("application.conf")

node-address {
  protocol = http
  host = "127.0.0.1"
  port = ${edgePort}
  context-path = ""
}
generate-node-address = false

rest-sqs {
  enabled = true
  bind-port = ${port}
  bind-hostname = "127.0.0.1"
  sqs-limits = strict
}

rest-stats {
  enabled = false
}

aws {
  region = ${LOCAL_CLOUD_REGION}
  accountId = ${LOCAL_CLOUD_ACCOUNT}
}
`;
}

async function configureMoto(endpoint: string): Promise<void> {
  const body = JSON.stringify({ stepfunctions: { execute_state_machine: true }, lambda: { use_docker: false } });
  const response = await fetch(`${endpoint}/moto-api/config`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  if (!response.ok) throw new LocalCloudStartError(`moto rejected its configuration: HTTP ${response.status} ${await response.text()}`);
}

/** Starts the emulators and the edge router; resolves when every emulator answers. */
export async function startLocalCloud(options: LocalCloudOptions = {}): Promise<LocalCloud> {
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const install = locateInstallation(cacheDir);
  const log = options.log ?? ((): void => undefined);
  const timeoutMs = options.startTimeoutMs ?? 90_000;

  // The edge starts first: ElasticMQ and moto must know its port.
  const edgePort = options.edgePort ?? defaultEdgePort();
  const rules = options.rules === false ? false : { ...awsRulesFromEnv(), ...options.rules };
  const edge: EdgeRouter = await startEdgeRouter({ port: edgePort, rules }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EADDRINUSE') throw err;
    throw new LocalCloudStartError(`edge port 127.0.0.1:${edgePort} is in use (another local cloud? \`npm run cloud:down\`); or choose one with CAIRN_EDGE_PORT`, { cause: err });
  });
  removeStaleRunDirs(cacheDir);
  const runDir = path.join(cacheDir, 'run', `${process.pid}-${edge.port}`);
  const started: Running[] = [];
  try {
    fs.rmSync(runDir, { recursive: true, force: true });
    fs.mkdirSync(runDir, { recursive: true });
    const [dynamoPort, sqsPort, motoPort] = [await freePort(), await freePort(), await freePort()];
    const javaOpts = (process.env.CAIRN_CLOUD_JAVA_OPTS ?? '-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xmx1g').split(/\s+/).filter((s) => s !== '');
    const baseEnv = { ...process.env };
    delete baseEnv.NODE_OPTIONS;

    const elasticmqConf = path.join(runDir, 'elasticmq.conf');
    fs.writeFileSync(elasticmqConf, elasticmqConfig(sqsPort, edge.port));

    const dynamodb = spawnEmulator(
      'dynamodb',
      'java',
      [
        ...javaOpts,
        `-Djava.library.path=${install.dynamodbLib}`,
        '-cp',
        path.join(install.dynamodbLib, '*'),
        'software.amazon.dynamodb.services.local.main.ServerRunner',
        '-inMemory',
        '-sharedDb', // one database whatever the access key: moto's own SDK calls use other keys
        '-disableTelemetry',
        '-port',
        String(dynamoPort),
      ],
      dynamoPort,
      runDir,
      baseEnv,
    );
    started.push(dynamodb);

    const sqs = spawnEmulator('sqs', 'java', [...javaOpts, `-Dconfig.file=${elasticmqConf}`, '-cp', path.join(install.elasticmqLib, '*'), 'org.elasticmq.server.Main'], sqsPort, runDir, baseEnv);
    started.push(sqs);

    // moto's Step Functions interpreter makes its own SDK calls to http://localhost:$MOTO_PORT;
    // pointing MOTO_PORT at the edge sends them to the right emulator.
    const moto = spawnEmulator('moto', install.motoServer, ['-H', '127.0.0.1', '-p', String(motoPort)], motoPort, runDir, {
      ...baseEnv,
      MOTO_PORT: String(edge.port),
      AWS_DEFAULT_REGION: LOCAL_CLOUD_REGION,
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      PYTHONUNBUFFERED: '1',
    });
    started.push(moto);

    await Promise.all([waitUntilAnswers(dynamodb, '/', timeoutMs), waitUntilAnswers(sqs, '/', timeoutMs), waitUntilAnswers(moto, '/moto-api/', timeoutMs)]);
    edge.setTargets({
      dynamodb: { host: '127.0.0.1', port: dynamoPort },
      sqs: { host: '127.0.0.1', port: sqsPort },
      moto: { host: '127.0.0.1', port: motoPort },
    });
    await configureMoto(edge.url);
    log(`local cloud up at ${edge.url} (dynamodb :${dynamoPort}, sqs :${sqsPort}, moto :${motoPort}; logs in ${runDir})`);

    let stopping: Promise<void> | undefined;
    const info = (r: Running): EmulatorInfo => ({ pid: r.child.pid ?? -1, port: r.port, logFile: r.logFile });
    return {
      endpoint: edge.url,
      edgePort: edge.port,
      region: LOCAL_CLOUD_REGION,
      emulators: { dynamodb: info(dynamodb), sqs: info(sqs), moto: info(moto) },
      runDir,
      stop(): Promise<void> {
        stopping ??= (async () => {
          await edge.close();
          await Promise.all(started.map((r) => stopEmulator(r)));
          if (live.size === 0) removeHooks();
          if (options.keepLogs !== true) fs.rmSync(runDir, { recursive: true, force: true });
        })();
        return stopping;
      },
    };
  } catch (err) {
    await edge.close();
    await Promise.all(started.map((r) => stopEmulator(r, 1_000)));
    if (live.size === 0) removeHooks();
    throw err;
  }
}

export async function stopLocalCloud(cloud: LocalCloud): Promise<void> {
  await cloud.stop();
}
