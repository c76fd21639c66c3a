import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { JobDefinition } from '../core/definition.js';
import { sinksOf } from '../core/definition.js';
import type { IngressMessage } from '../core/ingest.js';
import { join } from 'node:path';
import type { Example } from '../core/definition.js';
import type { CheckpointConfigInput } from '../core/config.js';
import { CheckpointConfigError, CheckpointNotFoundError, StateDirectoryLockedError } from '../core/errors.js';
import type { CheckpointRecord, JobRecord } from '../core/ports.js';
import type { CoordinatorDecision } from '../core/protocol/coordinator.js';
import { isAlive, StateDirLock } from '../embedded/lock.js';
import { EmbeddedRuntime } from '../embedded/runtime.js';
import { bar, checkpointDuration, count, LiveArea, ms, timeline } from './format.js';
import { inputLineOf, readInput } from './input.js';
import { defaultStateDir, isExample, jobModulePath, resolveJob, UsageError } from './jobs.js';
import { checkpointState, readState, stateOf } from './read-state.js';
import { indent, InjectedCrash, latestCheckpointLine, perSecond, printVerdict, restartsReport, sourceProgress, writeOutput } from './run-status.js';

export interface RunOptions {
  readonly events?: number;
  readonly seed?: number;
  readonly interval?: number;
  readonly trigger?: 'time' | 'count' | 'continuous' | 'manual';
  readonly everyRecords?: number;
  readonly alignment?: 'aligned' | 'unaligned' | 'aligned-with-timeout';
  readonly alignmentTimeout?: number;
  readonly mode?: 'exactly-once' | 'at-least-once';
  readonly timeout?: number;
  readonly retained?: number;
  readonly stateDir?: string;
  readonly memory?: boolean;
  readonly crashAt?: number;
  readonly killAt?: number;
  readonly restore?: number;
  readonly rate?: number;
  readonly fresh?: boolean;
  /** Where the job runs: the embedded runtime (default) or the local cloud (AWS adapters against the emulators). */
  readonly target?: 'embedded' | 'local-cloud';
  /** local-cloud: delete the job's table and queues when the run ends. */
  readonly ephemeral?: boolean;
  /** The events: a JSONL file, or `-` for stdin (instead of an example's generator). */
  readonly input?: string;
  /** Where the committed output goes (JSONL); default: printed after the report. */
  readonly output?: string;
  /** Which sink's output (default: the job's only sink). */
  readonly sink?: string;
  readonly maxConcurrent?: number;
  readonly minPause?: number;
  readonly tolerableFailures?: number;
}

export interface RunIo {
  readonly out: NodeJS.WritableStream;
  readonly live: LiveArea;
}

export const DEFAULT_EVENTS = 20_000;
export const DEFAULT_SEED = 1;
/** Short, so that an injected crash's failed batch is redelivered (and the demo recovers) quickly. */
const VISIBILITY_TIMEOUT_MS = 1000;
/** The producer pushes this many events per loop turn, keeping at most BACKLOG not yet ingested. */
const CHUNK = 500;
const BACKLOG = 2000;
/** The run's input parameters, kept in the state directory so that a resumed run regenerates the same events. */
const PARAMS_FILE = 'cli-run.json';

/** `cairn run`: returns the process exit code (0 ok, 1 wrong results or failed job, 2 refused). */
export async function runCommand(jobArg: string, options: RunOptions, io: RunIo = { out: process.stdout, live: new LiveArea() }): Promise<number> {
  const definition = await resolveJob(jobArg);
  const example = isExample(definition) && options.input === undefined ? definition : undefined;
  if (!example && options.input === undefined) {
    throw new UsageError(`job '${definition.name}' has no demo input: pass --input <events.jsonl> (one JSON event per line) or --input - for stdin`);
  }
  const sink = outputSink(definition, options.sink);
  if (options.target === 'local-cloud') {
    // Loaded on demand: the embedded run never touches the AWS SDK.
    const { refuseEmbeddedOnly, runOnLocalCloud } = await import('../aws/runner/cli.js');
    refuseEmbeddedOnly(options);
    return runOnLocalCloud(
      {
        module: jobModulePath(jobArg),
        ...(example ? { example } : { definition, input: await readInput(options.input ?? '-'), sink, ...(options.output !== undefined ? { output: options.output } : {}) }),
      },
      {
        events: options.events ?? DEFAULT_EVENTS,
        seed: options.seed ?? DEFAULT_SEED,
        // The whole source log stays: the run checks its output against the oracle over every event.
        checkpoint: { ...definition.checkpoint, ...checkpointFlags(options), truncateLog: false },
        ...(options.rate !== undefined ? { rate: options.rate } : {}),
        ...(options.crashAt !== undefined ? { crashAt: options.crashAt } : {}),
        ...(options.ephemeral ? { ephemeral: true } : {}),
      },
      io,
    );
  }
  if (options.memory && options.restore !== undefined) throw new UsageError('--restore needs a state directory (it cannot be combined with --memory)');
  if (options.memory && options.stateDir !== undefined) throw new UsageError('--memory and --state-dir exclude each other');
  // One name per job: a module's job keeps its state under the name it defines.
  const stateDir = options.memory ? undefined : (options.stateDir ?? defaultStateDir(definition.name));
  const { live, out } = io;
  const print = (line = ''): void => void out.write(`${line}\n`);

  if (stateDir && options.fresh) {
    const owner = StateDirLock.owner(stateDir);
    if (owner !== undefined && owner !== process.pid && isAlive(owner)) return refuse(new StateDirectoryLockedError(stateDir, owner), live);
    rmSync(stateDir, { recursive: true, force: true });
  }
  const stored = stateDir ? readParams(stateDir) : undefined;
  const total = options.events ?? stored?.events ?? DEFAULT_EVENTS;
  const seed = options.seed ?? stored?.seed ?? DEFAULT_SEED;
  // A resumed run keeps the job's checkpointing flags (retention above all: a lower --retained
  // has already pruned checkpoints a higher one would think restorable); flags given now win.
  const flags = { ...stored?.checkpoint, ...checkpointFlags(options) };
  // The whole source log stays: the run checks its output against the oracle over every event.
  const checkpoint: CheckpointConfigInput = { ...definition.checkpoint, ...flags, truncateLog: false };
  if (stateDir && options.restore !== undefined) {
    const refusal = await restoreRefusal(stateDir, options.restore);
    if (refusal) return refuse(new CheckpointNotFoundError(refusal), live);
  }
  const stateFlag = options.stateDir !== undefined ? ` --state-dir ${options.stateDir}` : '';

  // A restore to an older checkpoint withdraws the output the sink already published for later epochs.
  const committedBefore = stateDir && options.restore !== undefined ? await committedThrough(stateDir) : 0;

  // ---------- observing the coordinator ----------
  let lastCheckpoint: CheckpointRecord | undefined;
  let resumedFrom: number | undefined;
  const onTransition = (decision: CoordinatorDecision, record?: CheckpointRecord): void => {
    switch (decision.type) {
      case 'trigger':
        if (record) lastCheckpoint = record;
        if (decision.trigger === 'manual') live.log(`checkpoint ${decision.checkpointId} triggered manually`);
        return;
      case 'complete':
        if (record) lastCheckpoint = record;
        // Line-based output (not a terminal): one line per checkpoint, as a log would have.
        if (record && !live.tty) live.log(`checkpoint ${record.id} COMPLETED in ${ms(checkpointDuration(record))} (${record.trigger})`);
        return;
      case 'abort':
        if (record) lastCheckpoint = record;
        live.log(`checkpoint ${decision.checkpointId} ABORTED: ${decision.reason}`);
        return;
      case 'start-recovery':
        if (decision.reason === 'process restarted') {
          resumedFrom = decision.toCheckpoint;
          live.log(
            decision.toCheckpoint > 0
              ? `resumed from checkpoint ${decision.toCheckpoint} (the previous run stopped before the job finished)`
              : 'resumed from the beginning: the previous run stopped before its first checkpoint completed',
          );
        } else {
          live.log(`restart: rolling back to checkpoint ${decision.toCheckpoint} (${decision.reason})`);
        }
        return;
      case 'finish':
        return;
      default:
        return;
    }
  };

  // ---------- injected crash: an operator throws once at the n-th record ----------
  const crash = options.crashAt === undefined ? undefined : new InjectedCrash(options.crashAt);
  const faults = crash ? { step: crash.hooks } : undefined;
  let crashRequested = false;

  // ---------- manual trigger (cairn trigger <job>) and Ctrl-C ----------
  let runtime: EmbeddedRuntime | undefined;
  let manualPending = false;
  const onUsr2 = (): void => {
    if (runtime) runtime.triggerCheckpoint();
    else manualPending = true;
  };
  let interrupted = false;
  const onSigint = (): void => {
    if (interrupted) process.exit(130);
    interrupted = true;
    live.log('interrupted: stopping after the current step (Ctrl-C again to quit at once)');
  };
  process.on('SIGUSR2', onUsr2);
  process.on('SIGINT', onSigint);

  try {
    try {
      runtime = await EmbeddedRuntime.open({
        job: definition.build(),
        ...(definition.restartStrategy ? { restartStrategy: definition.restartStrategy } : {}),
        checkpoint,
        limits: { visibilityTimeoutMs: VISIBILITY_TIMEOUT_MS },
        clock: 'real',
        onTransition,
        ...(stateDir ? { stateDir } : {}),
        ...(faults ? { faults } : {}),
        ...(options.restore !== undefined ? { restoreFrom: options.restore } : {}),
      });
    } catch (error) {
      if (error instanceof StateDirectoryLockedError || error instanceof CheckpointNotFoundError || error instanceof CheckpointConfigError) {
        return refuse(error, live);
      }
      throw error;
    }
    if (manualPending) runtime.triggerCheckpoint();
    if (stateDir) writeParams(stateDir, { events: total, seed, checkpoint: flags });
    const generated: readonly IngressMessage[] = example ? example.generate(total, seed).map((e) => ({ id: e.id, body: JSON.stringify(e.event) })) : await readInput(options.input ?? '-');
    const inputSize = generated.length;

    const rt = runtime;
    const startJob = await rt.job();
    lastCheckpoint ??= (await rt.checkpoints.listCheckpoints()).at(-1);
    const alreadyFinished = startJob.status === 'FINISHED' || startJob.status === 'FAILED';
    print(
      `cairn run ${definition.name}: ${example ? `${count(total)} events (seed ${seed})` : `${count(inputSize)} events from ${options.input === '-' ? 'stdin' : options.input}`}, ${describeCheckpointing(rt)}, ` +
        (stateDir ? `state in ${stateDir} (pid ${process.pid}; \`cairn trigger ${jobArg}${stateFlag}\` takes a checkpoint now)` : 'in memory'),
    );
    if (alreadyFinished) live.log(`the job in ${stateDir ?? 'memory'} already ${startJob.status === 'FINISHED' ? 'finished' : 'failed'}; showing that run (pass --fresh to start over)`);

    const started = Date.now();
    let pushed = 0;
    let closed = false;
    const produce = (): void => {
      const crashReason = crash?.reason;
      if (crashReason !== undefined && !crashRequested) {
        crashRequested = true;
        // Flink restarts the job from its last checkpoint when a task fails; ask the coordinator to.
        if (!requestRestart(rt, crashReason)) live.log(`${crashReason}: the failed batch is redelivered after the visibility timeout`);
      }
      if (options.killAt !== undefined && rt.counters.ingested >= options.killAt) {
        live.log(`killing the process (SIGKILL) after ${count(rt.counters.ingested)} ingested events; run again to resume`);
        process.kill(process.pid, 'SIGKILL');
      }
      if (alreadyFinished || closed) return;
      const accounted = rt.counters.ingested + rt.counters.ingestDuplicates + rt.counters.deadLetters;
      if (pushed - accounted >= BACKLOG) return;
      const allowed = options.rate === undefined ? inputSize : Math.min(inputSize, Math.floor((options.rate * (Date.now() - started)) / 1000));
      const upTo = Math.min(allowed, pushed + CHUNK);
      if (upTo > pushed) {
        rt.push(generated.slice(pushed, upTo));
        pushed = upTo;
      }
      if (pushed >= inputSize) {
        rt.closeInput();
        closed = true;
      }
    };

    // ---------- live status ----------
    let job: JobRecord = startJob;
    const status = async (): Promise<string[]> => {
      const { ingested, processed } = await sourceProgress(rt);
      job = await rt.job();
      const c = rt.counters;
      return [
        `${bar(processed, inputSize)} ingested ${count(ingested)}/${count(inputSize)} · processed ${count(processed)} · ${perSecond(c.ingested, Date.now() - started)} events/s · ${job.status.toLowerCase()} gen ${job.generation}`,
        `${latestCheckpointLine(lastCheckpoint)} · dead letters ${c.deadLetters + c.redriven} · restarts ${job.restarts.length} · duplicates dropped ${c.duplicatesDropped + c.ingestDuplicates} · step failures ${c.stepFailures}`,
      ];
    };
    const stopFollowing = live.follow(status, 150);
    try {
      job = await rt.run({ onTurn: produce, until: () => interrupted });
    } finally {
      stopFollowing();
    }
    live.update(await status(), true);
    live.done();

    // ---------- the report ----------
    const elapsed = Date.now() - started;
    print();
    print(
      `${definition.name}: ${job.status} after ${ms(elapsed)} · generation ${job.generation} · ${job.lastCompletedId > 0 ? `last completed checkpoint ${job.lastCompletedId}` : 'no completed checkpoint'}${resumedFrom !== undefined ? ` · resumed from checkpoint ${resumedFrom}` : ''}`,
    );
    if (job.failure) print(`failure: ${job.failure}`);
    print();
    const { shown, hidden } = elide(await rt.checkpoints.listCheckpoints());
    print(`checkpoint timeline${hidden > 0 ? ` (${count(hidden)} checkpoints in the middle left out; \`cairn checkpoints\` lists them)` : ''}`);
    print(indent(timeline(shown, restorability(await rt.job()))));
    print();
    print(restartsReport(job.restarts));
    print();
    await printDeadLetters(rt, print);
    const c = rt.counters;
    print(
      `counters: records ${count(c.records)} · duplicates dropped ${count(c.duplicatesDropped)} · ingest duplicates ${count(c.ingestDuplicates)} · ` +
        `fenced ${count(c.fencedDropped)} · late ${count(c.lateDropped)} · step failures ${count(c.stepFailures)} · invocations ${count(c.invocations)}`,
    );
    const unfired = crash?.neverFiredNote();
    if (unfired) print(unfired);
    print();

    if (interrupted && job.status !== 'FINISHED') {
      print(`interrupted before the job finished; run \`cairn run ${jobArg}${stateDir ? stateFlag : ' --memory'}\` again to ${stateDir ? 'resume from the last checkpoint' : 'start over'}`);
      return 130;
    }
    if (job.status !== 'FINISHED') {
      print(`results: not checked, the job is ${job.status}`);
      return 1;
    }
    if (options.restore !== undefined && committedBefore > options.restore) {
      print(`note: the sink output already committed for checkpoints ${options.restore + 1}..${committedBefore} was withdrawn by this restore ` + 'and published again by the replay');
    }
    if (!example) {
      writeOutput(await rt.results(sink), sink, options.output, print);
      return 0;
    }
    return (await checkResults(rt, example, generated, print)) ? 0 : 1;
  } finally {
    process.off('SIGUSR2', onUsr2);
    process.off('SIGINT', onSigint);
    runtime?.close();
  }
}

function checkpointFlags(o: RunOptions): CheckpointConfigInput {
  return {
    ...(o.interval !== undefined ? { intervalMs: o.interval } : {}),
    ...(o.trigger !== undefined ? { trigger: o.trigger } : {}),
    ...(o.everyRecords !== undefined ? { everyRecords: o.everyRecords } : {}),
    ...(o.alignment !== undefined ? { alignment: o.alignment } : {}),
    ...(o.alignmentTimeout !== undefined ? { alignmentTimeoutMs: o.alignmentTimeout } : {}),
    ...(o.mode !== undefined ? { mode: o.mode } : {}),
    ...(o.timeout !== undefined ? { timeoutMs: o.timeout } : {}),
    ...(o.retained !== undefined ? { retained: o.retained } : {}),
    ...(o.maxConcurrent !== undefined ? { maxConcurrent: o.maxConcurrent } : {}),
    ...(o.minPause !== undefined ? { minPauseMs: o.minPause } : {}),
    ...(o.tolerableFailures !== undefined ? { tolerableFailures: o.tolerableFailures } : {}),
  };
}

/** The sink whose output `--output` writes: the one named, or the job's only one. */
function outputSink(definition: JobDefinition, named: string | undefined): string {
  const sinks = sinksOf(definition.build());
  if (named !== undefined) {
    if (!sinks.includes(named)) throw new UsageError(`job '${definition.name}' has no sink '${named}' (sinks: ${sinks.join(', ')})`);
    return named;
  }
  const [only, ...more] = sinks;
  if (only === undefined) throw new UsageError(`job '${definition.name}' has no sink`);
  if (more.length > 0) throw new UsageError(`job '${definition.name}' has several sinks (${sinks.join(', ')}): pass --sink <uid>`);
  return only;
}

function describeCheckpointing(rt: EmbeddedRuntime): string {
  const c = rt.config;
  if (!c.enabled) return 'checkpointing off';
  const when = c.trigger === 'time' ? `every ${ms(c.intervalMs)}` : c.trigger === 'count' ? `every ${count(c.everyRecords)} records` : c.trigger === 'continuous' ? 'continuously' : 'on request only';
  const alignment = c.alignment === 'aligned-with-timeout' ? `aligned for ${ms(c.alignmentTimeoutMs)}, then unaligned` : c.alignment;
  return `checkpoints ${when} (${alignment}, ${c.mode}, retain ${c.retained})`;
}

/** An injected crash is a task failure: the job restarts from its last completed checkpoint. */
function requestRestart(runtime: EmbeddedRuntime, reason: string): boolean {
  runtime.requestRestart(reason);
  return true;
}

async function printDeadLetters(rt: EmbeddedRuntime, print: (line?: string) => void): Promise<void> {
  const letters = await rt.deadLetters();
  const redriven = rt.redriven();
  const all: { reason: string; where: string; message: string; payload: string }[] = [
    ...letters.map((l) => {
      const line = inputLineOf(l.id);
      return { reason: l.reason, where: line === undefined ? l.vertex : `input line ${line}`, message: l.message, payload: l.payload };
    }),
    ...redriven.map((r) => ({ reason: `redriven (${r.reason || 'max receive count'})`, where: r.queue, message: '', payload: JSON.stringify(r.body) })),
  ];
  if (all.length === 0) {
    print('dead letters: none');
    print();
    return;
  }
  const byReason = new Map<string, number>();
  for (const l of all) byReason.set(l.reason, (byReason.get(l.reason) ?? 0) + 1);
  print(`dead letters: ${all.length} (${[...byReason].map(([reason, n]) => `${reason} ${n}`).join(', ')})`);
  for (const l of all.slice(0, 5)) {
    const payload = l.payload.length > 80 ? `${l.payload.slice(0, 80)}…` : l.payload;
    print(`  ${l.reason} at ${l.where}: ${l.message}${l.message ? ' · ' : ''}${payload}`);
  }
  if (all.length > 5) print(`  … and ${all.length - 5} more`);
  print();
}

/** Compares the sink's committed output with the example's oracle over the events in the source log. */
async function checkResults(rt: EmbeddedRuntime, example: Example, generated: readonly IngressMessage[], print: (line?: string) => void): Promise<boolean> {
  const logged: unknown[] = [];
  for (const source of rt.topology.sources()) {
    for (let p = 0; p < source.parallelism; p++) logged.push(...(await rt.log.read(p, 0, await rt.log.head(p))).map((e) => e.event));
  }
  const ours = new Set(generated.map((e) => e.body));
  const foreign = logged.filter((event) => !ours.has(JSON.stringify(event))).length;
  if (foreign > 0) print(`note: the source log holds ${count(foreign)} events this run did not generate (another --events/--seed?); pass --fresh to start over`);
  const expected = example.oracle(logged);
  const actual = example.canonical(await rt.results(example.sink));
  return printVerdict(expected, actual, print);
}

/** Long runs: the first 10 and the last 40 checkpoints. */
function elide(checkpoints: CheckpointRecord[]): { shown: CheckpointRecord[]; hidden: number } {
  if (checkpoints.length <= 60) return { shown: checkpoints, hidden: 0 };
  return { shown: [...checkpoints.slice(0, 10), ...checkpoints.slice(-40)], hidden: checkpoints.length - 50 };
}

/** Restorable = completed and still retained (its snapshots are kept: the same rule as `cairn checkpoints`). */
function restorability(job: JobRecord): (c: CheckpointRecord) => string {
  const retained = new Set(job.retainedCheckpoints);
  return (c) => checkpointState({ status: c.status, abortReason: c.abortReason, snapshotted: retained.has(c.id) });
}

function refuse(error: Error, live: LiveArea): number {
  live.log(`error: ${error.message}`);
  return 2;
}

async function committedThrough(stateDir: string): Promise<number> {
  try {
    return (await readState(stateDir)).job?.sinksCommittedThrough ?? 0;
  } catch {
    return 0;
  }
}

interface RunParams {
  readonly events: number;
  readonly seed: number;
  readonly checkpoint?: CheckpointConfigInput;
}

/**
 * The runtime accepts a restore to any of the last `retained` completed checkpoints of the
 * *current* config; the state knows which ones still have their snapshots. Checked here so a
 * pruned checkpoint is refused up front instead of failing the recovery mid-run.
 */
async function restoreRefusal(stateDir: string, id: number): Promise<string | undefined> {
  let view;
  try {
    view = await readState(stateDir);
  } catch {
    return `checkpoint ${id} cannot be restored: no job state in ${stateDir}`;
  }
  const retained = view.checkpoints.filter((c) => stateOf(view, c) === 'retained').map((c) => c.id);
  if (retained.includes(id)) return undefined;
  return `checkpoint ${id} is not a retained completed checkpoint (retained: ${retained.join(', ') || 'none'})`;
}

function readParams(stateDir: string): RunParams | undefined {
  const path = join(stateDir, PARAMS_FILE);
  if (!existsSync(path)) return undefined;
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as RunParams;
  } catch {
    return undefined;
  }
}

function writeParams(stateDir: string, params: RunParams): void {
  writeFileSync(join(stateDir, PARAMS_FILE), JSON.stringify(params));
}
