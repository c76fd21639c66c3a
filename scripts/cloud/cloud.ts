/**
 * The local cloud from the command line.
 *
 *   npm run cloud:up     install the emulators if needed, start them behind the edge endpoint
 *                        in the background, print AWS_ENDPOINT_URL=...
 *   npm run cloud:down   stop what `up` started
 *   tsx scripts/cloud/cloud.ts status
 *
 * `up` starts a detached `serve` process that owns the emulators (they die with it) and
 * writes .cache/cloud/state.json; `down` stops it through that file.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultCacheDir, defaultEdgePort, LocalCloudUnavailableError, locateInstallation, REPO_ROOT, startLocalCloud, type EmulatorInfo } from '../../shared/aws/local-cloud/local-cloud.js';

interface CloudState {
  readonly pid: number;
  readonly endpoint: string;
  readonly edgePort: number;
  readonly emulators: Record<string, EmulatorInfo>;
  readonly runDir: string;
  readonly startedAt: string;
}

const cacheDir = defaultCacheDir();
const statePath = path.join(cacheDir, 'state.json');
const serveLog = path.join(cacheDir, 'cloud.log');

function readState(): CloudState | undefined {
  try {
    return JSON.parse(fs.readFileSync(statePath, 'utf8')) as CloudState;
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

async function answers(endpoint: string): Promise<boolean> {
  try {
    const res = await fetch(`${endpoint}/_cairn/health`, { signal: AbortSignal.timeout(2_000) });
    return res.ok;
  } catch {
    return false;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function ensureInstalled(): void {
  try {
    locateInstallation(cacheDir);
    return;
  } catch (err) {
    if (!(err instanceof LocalCloudUnavailableError)) throw err;
    console.error(`[cloud] ${err.reason}; running scripts/cloud/install.sh`);
  }
  const r = spawnSync('bash', [path.join(REPO_ROOT, 'scripts', 'cloud', 'install.sh')], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error('installing the local cloud failed (see above)');
  locateInstallation(cacheDir);
}

async function up(): Promise<number> {
  const existing = readState();
  if (existing !== undefined && alive(existing.pid) && (await answers(existing.endpoint))) {
    console.error(`[cloud] already running (pid ${existing.pid})`);
    console.log(`AWS_ENDPOINT_URL=${existing.endpoint}`);
    return 0;
  }
  fs.rmSync(statePath, { force: true });
  ensureInstalled();

  fs.mkdirSync(cacheDir, { recursive: true });
  const log = fs.openSync(serveLog, 'w');
  const self = fileURLToPath(import.meta.url);
  // process.execArgv carries tsx's loader, so the detached child runs this same file.
  const child = spawn(process.execPath, [...process.execArgv, self, 'serve'], { detached: true, stdio: ['ignore', log, log], cwd: REPO_ROOT });
  fs.closeSync(log);
  let exitCode: number | null | undefined;
  child.once('exit', (code) => (exitCode = code));
  child.unref();

  const started = Date.now();
  const deadline = started + 180_000;
  while (Date.now() < deadline) {
    const state = readState();
    if (state !== undefined && state.pid === child.pid) {
      console.error(`[cloud] up in ${Date.now() - started} ms (pid ${state.pid}, log ${serveLog}); stop with: npm run cloud:down`);
      console.log(`AWS_ENDPOINT_URL=${state.endpoint}`);
      return 0;
    }
    if (exitCode !== undefined) break;
    await sleep(100);
  }
  if (exitCode === undefined && child.pid !== undefined) process.kill(child.pid, 'SIGTERM');
  console.error(`[cloud] failed to start; ${serveLog}:\n${fs.readFileSync(serveLog, 'utf8')}`);
  return 1;
}

async function serve(): Promise<void> {
  const cloud = await startLocalCloud({ edgePort: defaultEdgePort(), log: (m) => console.log(`[cloud] ${m}`) });
  const state: CloudState = {
    pid: process.pid,
    endpoint: cloud.endpoint,
    edgePort: cloud.edgePort,
    emulators: cloud.emulators,
    runDir: cloud.runDir,
    startedAt: new Date().toISOString(),
  };
  const tmp = `${statePath}.${process.pid}`;
  fs.writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`);
  fs.renameSync(tmp, statePath);

  const shutdown = (signal: string): void => {
    console.log(`[cloud] ${signal}: stopping`);
    void cloud.stop().finally(() => {
      if (readState()?.pid === process.pid) fs.rmSync(statePath, { force: true });
      process.exit(0);
    });
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
  process.once('SIGHUP', () => shutdown('SIGHUP'));
  setInterval(() => undefined, 1 << 30); // stay up until told to stop
}

async function down(): Promise<number> {
  const state = readState();
  if (state === undefined) {
    console.error('[cloud] not running (no state.json)');
    return 0;
  }
  if (alive(state.pid)) {
    process.kill(state.pid, 'SIGTERM');
    const deadline = Date.now() + 15_000;
    while (alive(state.pid) && Date.now() < deadline) await sleep(100);
    if (alive(state.pid)) process.kill(state.pid, 'SIGKILL');
  }
  // The emulators die with their parent; make sure of it.
  for (const [name, emulator] of Object.entries(state.emulators)) {
    if (emulator.pid > 0 && alive(emulator.pid)) {
      console.error(`[cloud] killing leftover ${name} (pid ${emulator.pid})`);
      process.kill(emulator.pid, 'SIGKILL');
    }
  }
  fs.rmSync(statePath, { force: true });
  console.error(`[cloud] stopped (was ${state.endpoint})`);
  return 0;
}

async function status(): Promise<number> {
  const state = readState();
  if (state === undefined || !alive(state.pid)) {
    console.log('not running');
    return 1;
  }
  const healthy = await answers(state.endpoint);
  console.log(JSON.stringify({ ...state, healthy }, null, 2));
  return healthy ? 0 : 1;
}

async function main(command: string | undefined): Promise<void> {
  switch (command) {
    case 'up':
      process.exitCode = await up();
      return;
    case 'serve':
      await serve();
      return;
    case 'down':
      process.exitCode = await down();
      return;
    case 'status':
      process.exitCode = await status();
      return;
    default:
      console.error('usage: tsx scripts/cloud/cloud.ts up|down|status');
      process.exitCode = 2;
  }
}

main(process.argv[2]).catch((err: unknown) => {
  console.error(`[cloud] ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
