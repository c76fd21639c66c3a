import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { defaultCacheDir, defaultEdgePort, findRunningLocalCloud, LocalCloudUnavailableError, locateInstallation, startLocalCloud, type EmulatorInfo } from '../aws/local-cloud/local-cloud.js';
import { packageRoot } from '../package-root.js';

/**
 * `cairn cloud install|up|down|status`: the local cloud as a background service, the way
 * `localstack start -d` runs LocalStack. `up` starts a detached `cairn cloud serve` process
 * that owns the emulators (they die with it) and records itself in `<cache>/cloud-<port>.json`;
 * `down` stops it through that file. `cairn run --target local-cloud` brings one up when none
 * is running, so the job's table and queues outlive the run.
 */

export interface CloudState {
  readonly pid: number;
  readonly endpoint: string;
  readonly edgePort: number;
  readonly emulators: Record<string, EmulatorInfo>;
  readonly runDir: string;
  readonly startedAt: string;
  readonly log: string;
}

type Log = (line: string) => void;
const stderr: Log = (line) => void process.stderr.write(`[cloud] ${line}\n`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const statePath = (port: number): string => path.join(defaultCacheDir(), `cloud-${port}.json`);

function readCloudState(port: number): CloudState | undefined {
  try {
    return JSON.parse(fs.readFileSync(statePath(port), 'utf8')) as CloudState;
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Installs the emulators (DynamoDB Local and ElasticMQ from Maven Central, moto from PyPI) with the package's pinned script. Idempotent. */
export function installCloud(log: Log = stderr): number {
  const script = path.join(packageRoot(), 'scripts', 'cloud', 'install.sh');
  if (!fs.existsSync(script)) throw new Error(`the cairn package has no ${script}`);
  const cacheDir = defaultCacheDir();
  log(`installing into ${cacheDir}`);
  const result = spawnSync('bash', [script], { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, CAIRN_CLOUD_CACHE: cacheDir } });
  return result.status ?? 1;
}

function ensureInstalled(log: Log): void {
  try {
    locateInstallation();
    return;
  } catch (err) {
    if (!(err instanceof LocalCloudUnavailableError)) throw err;
    log(`${err.reason}: installing`);
  }
  if (installCloud(log) !== 0) throw new Error('installing the local cloud failed (see above)');
  locateInstallation();
}

/**
 * The local cloud on the edge port (CAIRN_EDGE_PORT, default 4566), started in the background if
 * none answers there. Returns its endpoint and whether this call started it.
 */
export async function cloudUp(log: Log = stderr): Promise<{ endpoint: string; started: boolean; state?: CloudState }> {
  const port = defaultEdgePort();
  const running = await findRunningLocalCloud(port);
  if (running !== undefined) return { endpoint: running, started: false };
  fs.rmSync(statePath(port), { force: true });
  ensureInstalled(log);
  const cacheDir = defaultCacheDir();
  fs.mkdirSync(cacheDir, { recursive: true });
  const logFile = path.join(cacheDir, `cloud-${port}.log`);
  const out = fs.openSync(logFile, 'w');
  const bin = path.join(packageRoot(), 'bin', 'cairn.mjs');
  const child = spawn(process.execPath, [bin, 'cloud', 'serve'], { detached: true, stdio: ['ignore', out, out], env: { ...process.env, CAIRN_EDGE_PORT: String(port), CAIRN_CLOUD_CACHE: cacheDir } });
  fs.closeSync(out);
  let exitCode: number | null | undefined;
  child.once('exit', (code) => (exitCode = code));
  child.unref();
  // The emulators are JVMs and a Python server: allow them time, as long as the process lives.
  while (exitCode === undefined) {
    const state = readCloudState(port);
    if (state !== undefined && state.pid === child.pid) return { endpoint: state.endpoint, started: true, state };
    await sleep(100);
  }
  throw new Error(`the local cloud did not start (exit ${exitCode}); ${logFile}:\n${fs.readFileSync(logFile, 'utf8')}`);
}

/** The detached process behind `up`: runs the emulators until SIGTERM. */
export async function serveCloud(): Promise<void> {
  const port = defaultEdgePort();
  const cloud = await startLocalCloud({ edgePort: port, log: (m) => console.log(`[cloud] ${m}`) });
  const state: CloudState = {
    pid: process.pid,
    endpoint: cloud.endpoint,
    edgePort: cloud.edgePort,
    emulators: cloud.emulators,
    runDir: cloud.runDir,
    startedAt: new Date().toISOString(),
    log: path.join(defaultCacheDir(), `cloud-${port}.log`),
  };
  const file = statePath(port);
  fs.writeFileSync(`${file}.${process.pid}`, `${JSON.stringify(state, null, 2)}\n`);
  fs.renameSync(`${file}.${process.pid}`, file);
  const shutdown = (signal: string): void => {
    console.log(`[cloud] ${signal}: stopping`);
    void cloud.stop().finally(() => {
      if (readCloudState(port)?.pid === process.pid) fs.rmSync(file, { force: true });
      process.exit(0);
    });
  };
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.once(signal, () => shutdown(signal));
  // Stay up until told to stop (the CLI exits when its command returns).
  await new Promise<never>(() => setInterval(() => undefined, 1 << 30));
}

export async function cloudUpCommand(): Promise<number> {
  const { endpoint, started, state } = await cloudUp();
  stderr(started ? `up (pid ${state?.pid}, log ${state?.log}); stop it with \`cairn cloud down\`` : `already running at ${endpoint}`);
  console.log(`AWS_ENDPOINT_URL=${endpoint}`);
  return 0;
}

export async function cloudDownCommand(): Promise<number> {
  const port = defaultEdgePort();
  const state = readCloudState(port);
  if (state === undefined) {
    stderr(`no local cloud started by \`cairn cloud up\` on port ${port}`);
    return 0;
  }
  if (alive(state.pid)) {
    process.kill(state.pid, 'SIGTERM');
    for (let i = 0; i < 150 && alive(state.pid); i++) await sleep(100);
    if (alive(state.pid)) process.kill(state.pid, 'SIGKILL');
  }
  // The emulators die with their parent; make sure of it.
  for (const [name, emulator] of Object.entries(state.emulators)) {
    if (emulator.pid > 0 && alive(emulator.pid)) {
      stderr(`killing leftover ${name} (pid ${emulator.pid})`);
      process.kill(emulator.pid, 'SIGKILL');
    }
  }
  fs.rmSync(statePath(port), { force: true });
  stderr(`stopped (was ${state.endpoint}); the jobs on it are gone`);
  return 0;
}

export async function cloudStatusCommand(): Promise<number> {
  const port = defaultEdgePort();
  const endpoint = await findRunningLocalCloud(port);
  const state = readCloudState(port);
  if (endpoint === undefined) {
    console.log(`not running on port ${port}`);
    return 1;
  }
  console.log(JSON.stringify({ endpoint, ...(state ? { pid: state.pid, startedAt: state.startedAt, log: state.log, emulators: state.emulators } : { startedBy: 'another process' }) }, null, 2));
  return 0;
}
