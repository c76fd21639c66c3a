import { existsSync, rmSync } from 'node:fs';
import type { Example } from '../../core/definition.js';
import { bar, checkpointDuration, count, ms, timeline, type LiveArea } from '../../cli/format.js';
import { inputLineOf } from '../../cli/input.js';
import { UsageError } from '../../cli/jobs.js';
import { checkpointState } from '../../cli/read-state.js';
import { indent, latestCheckpointLine, perSecond, printVerdict, restartsReport, sourceProgress, writeOutput } from '../../cli/run-status.js';
import type { JobDefinition } from '../../core/definition.js';
import type { IngressMessage } from '../../core/ingest.js';
import type { CheckpointConfig, CheckpointConfigInput } from '../../core/config.js';
import type { CheckpointRecord, JobRecord } from '../../core/ports.js';
import type { CoordinatorDecision } from '../../core/protocol/coordinator.js';
import { cloudUp } from '../../cli/cloud.js';
import { findRunningLocalCloud, LocalCloudStartError, LocalCloudUnavailableError, startLocalCloud, type LocalCloud } from '../local-cloud/local-cloud.js';
import { localCloudManifestPath, readLocalCloudManifest, writeLocalCloudManifest } from '../ops/job-resources.js';
import { LambdaBundleError } from '../../lambda/bundling.js';
import { loadLocalRunnerBundle, type LocalRunnerBundle } from './local-bundle.js';
import type { LocalCloudJob } from './local-cloud-job.js';

/**
 * `cairn run <job> --target local-cloud`: the job on the local cloud (DynamoDB Local,
 * ElasticMQ, moto behind one endpoint; started here unless AWS_ENDPOINT_URL names one), with
 * the real Lambda handlers invoked by SQS event sources in this process and the coordinator
 * loop; the same live progress, checkpoint timeline and oracle check as the embedded run.
 * While it runs, events that any SQS client sends to the printed ingress queue are processed
 * too (the check then covers everything in the source log).
 */

export interface LocalCloudRunOptions {
  readonly events: number;
  readonly seed: number;
  readonly checkpoint: CheckpointConfigInput;
  readonly rate?: number;
  readonly crashAt?: number;
  /** Delete the job's table and queues when the run ends, even on a local cloud that outlives it. */
  readonly ephemeral?: boolean;
}

export interface RunIo {
  readonly out: NodeJS.WritableStream;
  readonly live: LiveArea;
}

const CHUNK = 500;
const BACKLOG = 2000;
const sleep = (msec: number): Promise<void> => new Promise((r) => setTimeout(r, msec));

/** Options of the embedded run that have no meaning on the local cloud. */
export function refuseEmbeddedOnly(options: { stateDir?: string; memory?: boolean; killAt?: number; restore?: number; fresh?: boolean }): void {
  const given = [
    options.stateDir !== undefined && '--state-dir',
    options.memory && '--memory',
    options.killAt !== undefined && '--kill-at',
    options.restore !== undefined && '--restore',
    options.fresh && '--fresh',
  ].filter((o): o is string => typeof o === 'string');
  if (given.length > 0) {
    throw new UsageError(
      `${given.join(', ')} only apply to the embedded target (the local cloud keeps its state in DynamoDB: run the same command again to resume, \`cairn destroy <job> --target local-cloud\` to start over)`,
    );
  }
}

/**
 * What runs: an example (its generator and oracle), or a job definition over `--input` events
 * (its committed output is the result); `module` is the file it is the default export of, which
 * the run bundles as the stack deploys it (LocalRunnerBundle).
 */
export type LocalCloudRunJob = { readonly module: string } & (
  { readonly example: Example } | { readonly definition: JobDefinition; readonly input: readonly IngressMessage[]; readonly sink: string; readonly output?: string }
);

export async function runOnLocalCloud(what: LocalCloudRunJob, options: LocalCloudRunOptions, io: RunIo): Promise<number> {
  const example = 'example' in what ? what.example : undefined;
  const definition: JobDefinition = 'example' in what ? what.example : what.definition;
  const { out, live } = io;
  const print = (line = ''): void => void out.write(`${line}\n`);

  // The handlers and the runner that drives them, built as `cdk deploy` builds the functions.
  let bundle: LocalRunnerBundle;
  const bundling = Date.now();
  try {
    bundle = await loadLocalRunnerBundle(what.module, definition.name);
  } catch (error) {
    if (!(error instanceof LambdaBundleError)) throw error;
    live.log(`error: ${error.message}`);
    return 2;
  }
  live.log(`running ${definition.name} as the stack bundles it (esbuild, minified): ready in ${ms(Date.now() - bundling)}`);

  let cloud: LocalCloud | undefined;
  let endpoint = process.env.AWS_ENDPOINT_URL;
  if (endpoint === undefined || endpoint === '') {
    // A local cloud already running on the edge port (`cairn cloud up`, CAIRN_EDGE_PORT) is reused: it outlives the run.
    endpoint = await findRunningLocalCloud();
    if (endpoint !== undefined) live.log(`using the local cloud running at ${endpoint}`);
  }
  if ((endpoint === undefined || endpoint === '') && options.ephemeral !== true) {
    // None running: start one in the background (`cairn cloud up`), so the job's table and
    // queues outlive this run, as they would on a LocalStack the user started.
    try {
      const up = await cloudUp((line) => live.log(line));
      endpoint = up.endpoint;
      if (up.started) live.log(`started the local cloud at ${endpoint} (pid ${up.state?.pid}); it keeps running after this job: stop it with \`cairn cloud down\``);
    } catch (error) {
      if (error instanceof LocalCloudUnavailableError) {
        live.log(`error: ${error.message}`);
        return 2;
      }
      throw error;
    }
  }
  if (endpoint === undefined || endpoint === '') {
    live.log('starting a local cloud for this run only (--ephemeral: it stops with the run)…');
    try {
      // The LocalStack-style port (4566, or CAIRN_EDGE_PORT) when free, else any free port.
      cloud = await startLocalCloud().catch((error: unknown) => {
        if (error instanceof LocalCloudStartError && /is in use/.test(error.message)) return startLocalCloud({ edgePort: 0 });
        throw error;
      });
    } catch (error) {
      if (error instanceof LocalCloudUnavailableError) {
        live.log(`error: ${error.message}`);
        return 2;
      }
      throw error;
    }
    endpoint = cloud.endpoint;
  }
  const ownCloud = endpoint !== process.env.AWS_ENDPOINT_URL;
  const localCredentials = ownCloud || process.env.AWS_ACCESS_KEY_ID === undefined ? { credentials: { accessKeyId: 'test', secretAccessKey: 'test' } } : {};

  // ---------- observing the coordinator ----------
  let lastCheckpoint: CheckpointRecord | undefined;
  const onTransition = (decision: CoordinatorDecision, record?: CheckpointRecord): void => {
    if (record) lastCheckpoint = record;
    if (decision.type === 'complete' && record && !live.tty) live.log(`checkpoint ${record.id} COMPLETED in ${ms(checkpointDuration(record))} (${record.trigger})`);
    if (decision.type === 'abort') live.log(`checkpoint ${decision.checkpointId} ABORTED: ${decision.reason}`);
    if (decision.type === 'start-recovery') live.log(`restart: rolling back to checkpoint ${decision.toCheckpoint} (${decision.reason})`);
  };

  // ---------- injected crash: an operator throws once at the n-th record ----------
  const crash = options.crashAt === undefined ? undefined : new bundle.InjectedCrash(options.crashAt);
  const faults = crash ? { step: crash.hooks } : undefined;
  let crashHandled = false;

  let interrupted = false;
  const onSigint = (): void => {
    if (interrupted) process.exit(130);
    interrupted = true;
    live.log('interrupted: stopping after the current step (Ctrl-C again to quit at once)');
  };
  let job: LocalCloudJob | undefined;
  const manifest = localCloudManifestPath(definition.name);
  // The job's table and queues stay after the run (unless --ephemeral), until
  // \`cairn destroy <job> --target local-cloud\`, and the same command again resumes the job
  // (events already ingested are skipped by their ids).
  const keep = cloud === undefined && options.ephemeral !== true;
  const previous = keep && existsSync(manifest) ? readLocalCloudManifest(manifest, definition.name) : undefined;
  const resumes = previous !== undefined && previous.endpoint === endpoint;
  const onUsr2 = (): void => job?.triggerCheckpoint();
  process.on('SIGINT', onSigint);
  process.on('SIGUSR2', onUsr2);
  try {
    const bundled = bundle.job;
    job = await bundle.createLocalCloudJob({
      ...(example ? { example: bundled as Example } : { job: bundled.build() }),
      ...(resumes ? { name: previous.tableName } : {}),
      keepResources: keep,
      ...(bundled.restartStrategy ? { restartStrategy: bundled.restartStrategy } : {}),
      endpoint,
      region: process.env.AWS_REGION ?? 'us-east-1',
      ...localCredentials,
      checkpoint: options.checkpoint,
      onTransition,
      ...(faults ? { faults } : {}),
    });
    const rt = job;
    const generated: readonly IngressMessage[] = 'example' in what ? what.example.generate(options.events, options.seed).map((e) => ({ id: e.id, body: JSON.stringify(e.event) })) : what.input;
    const total = generated.length;
    const streaming = example !== undefined && total === 0;
    const source = example ? `${count(total)} events (seed ${options.seed})` : `${count(total)} events from the input`;
    print(
      `cairn run ${definition.name} on the local cloud at ${endpoint}: ${streaming ? 'no generated events (streaming: push your own)' : source}, ` +
        `${describe(rt.config)}, table ${rt.prefix} (pid ${process.pid})`,
    );
    if (resumes) {
      const found = await rt.job();
      print(
        `resuming the job of the previous run (${found.status}, generation ${found.generation}, last completed checkpoint ${found.lastCompletedId || '-'}): events already ingested are skipped by their ids`,
      );
    }
    // Lets `cairn status|checkpoints|trigger|pause|resume|rollback|output|dead-letters <job> --target local-cloud` find this run.
    writeLocalCloudManifest(manifest, rt.resources());
    print(`operate it from another terminal: cairn status ${definition.name} --target local-cloud (also checkpoints, trigger, pause, resume, rollback --to <id>)`);
    print(
      `ingress queue: ${rt.ingressQueueUrl}\n` +
        `  events any SQS client sends there are processed while the job runs (FIFO: give a MessageGroupId and a MessageDeduplicationId), e.g.\n` +
        `  aws --endpoint-url ${endpoint} sqs send-message --queue-url ${rt.ingressQueueUrl} --message-group-id g --message-deduplication-id e1 --message-body '<event JSON>'`,
    );

    // ---------- producer ----------
    const started = Date.now();
    let pushed = 0;
    let producerError: Error | undefined;
    const producer = (async (): Promise<void> => {
      while (pushed < total && !interrupted) {
        const c = rt.counters;
        const accounted = c.ingested + c.ingestDuplicates + c.deadLetters;
        const allowed = options.rate === undefined ? total : Math.min(total, Math.floor((options.rate * (Date.now() - started)) / 1000));
        const upTo = Math.min(allowed, pushed + CHUNK);
        if (pushed - accounted >= BACKLOG || upTo <= pushed) {
          await sleep(50);
          continue;
        }
        await rt.push(generated.slice(pushed, upTo));
        pushed = upTo;
      }
      if (!streaming && !interrupted) rt.closeInput();
    })().catch((error: unknown) => {
      producerError = error as Error;
      interrupted = true;
    });

    // ---------- live status ----------
    let record: JobRecord = await rt.job();
    const status = async (): Promise<string[]> => {
      const { ingested, processed } = await sourceProgress(rt);
      record = await rt.job();
      const c = rt.counters;
      const requests = Object.values(rt.requestSnapshot()).reduce((a, b) => a + b, 0);
      return [
        `${streaming ? '' : `${bar(processed, Math.max(total, ingested))} `}ingested ${count(ingested)}${streaming ? '' : `/${count(total)}`} · processed ${count(processed)} · ${perSecond(c.ingested, Date.now() - started)} events/s · ${record.status.toLowerCase()}${record.paused ? ' (paused)' : ''} gen ${record.generation}`,
        `${latestCheckpointLine(lastCheckpoint)} · dead letters ${c.deadLetters + c.redriven} · restarts ${record.restarts.length} · duplicates dropped ${c.duplicatesDropped + c.ingestDuplicates} · step failures ${c.stepFailures} · AWS requests ${count(requests)}`,
      ];
    };
    const stopFollowing = live.follow(status, 300);
    try {
      record = await rt.run({
        until: () => interrupted,
        onTurn: () => {
          const crashReason = crash?.reason;
          if (crashReason !== undefined && !crashHandled) {
            crashHandled = true;
            // Flink restarts the job from its last checkpoint when a task fails; so does Cairn.
            rt.requestRestart(crashReason);
          }
        },
      });
    } finally {
      stopFollowing();
    }
    await producer;
    live.update(await status(), true);
    live.done();

    // ---------- the report ----------
    const elapsed = Date.now() - started;
    if (producerError) print(`producer failed: ${producerError.message}`);
    print();
    print(
      `${definition.name}: ${record.status} after ${ms(elapsed)} · generation ${record.generation} · ${record.lastCompletedId > 0 ? `last completed checkpoint ${record.lastCompletedId}` : 'no completed checkpoint'}`,
    );
    if (record.failure) print(`failure: ${record.failure}`);
    print();
    const checkpoints = await rt.checkpoints.listCheckpoints();
    const retained = new Set(
      checkpoints
        .filter((c) => c.status === 'COMPLETED')
        .slice(-rt.config.retained)
        .map((c) => c.id),
    );
    const shown = checkpoints.length <= 60 ? checkpoints : [...checkpoints.slice(0, 10), ...checkpoints.slice(-40)];
    print(`checkpoint timeline${shown.length < checkpoints.length ? ` (${count(checkpoints.length - shown.length)} checkpoints in the middle left out)` : ''}`);
    print(indent(timeline(shown, (c) => checkpointState({ status: c.status, abortReason: c.abortReason, snapshotted: retained.has(c.id) }))));
    print();
    print(restartsReport(record.restarts));
    print();
    await printDeadLetters(rt, print);
    const c = rt.counters;
    print(
      `counters: records ${count(c.records)} · duplicates dropped ${count(c.duplicatesDropped)} · ingest duplicates ${count(c.ingestDuplicates)} · fenced ${count(c.fencedDropped)} · ` +
        `late ${count(c.lateDropped)} · step failures ${count(c.stepFailures)} · invocations ${count(c.invocations)} · redeliveries ${count(c.redeliveries)}`,
    );
    const ingestedTotal = c.ingested;
    const byService = new Map<string, number>();
    for (const [key, n] of Object.entries(rt.requestSnapshot())) {
      const service = key.slice(0, key.indexOf('.'));
      byService.set(service, (byService.get(service) ?? 0) + n);
    }
    print(
      `AWS requests: ${[...byService].map(([s, n]) => `${s} ${count(n)}`).join(' · ')}` +
        (ingestedTotal > 0 ? ` (per 1,000 events: ${[...byService].map(([s, n]) => `${s} ${count(Math.round((n * 1000) / ingestedTotal))}`).join(' · ')})` : ''),
    );
    const unfired = crash?.neverFiredNote();
    if (unfired) print(unfired);
    print();

    if (keep)
      print(`the job's table and queues stay: cairn output ${definition.name} --target local-cloud (and dead-letters, status); cairn destroy ${definition.name} --target local-cloud removes them`);
    if (interrupted && record.status !== 'FINISHED') {
      print(
        keep
          ? 'interrupted before the job finished: run the same command again to resume it'
          : 'interrupted before the job finished (the local cloud this run started is gone with it: run again to start over)',
      );
      return producerError ? 1 : 130;
    }
    if (record.status !== 'FINISHED') {
      print(`results: not checked, the job is ${record.status}`);
      return 1;
    }
    if ('example' in what) return (await checkResults(rt, what.example, print)) ? 0 : 1;
    writeOutput(await rt.results(what.sink), what.sink, what.output, print);
    return 0;
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGUSR2', onUsr2);
    if (!keep) rmSync(manifest, { force: true });
    await job?.destroy().catch(() => undefined);
    await cloud?.stop();
  }
}

function describe(c: CheckpointConfig): string {
  if (!c.enabled) return 'checkpointing off';
  const when = c.trigger === 'time' ? `every ${ms(c.intervalMs)}` : c.trigger === 'count' ? `every ${count(c.everyRecords)} records` : c.trigger === 'continuous' ? 'continuously' : 'on request only';
  const alignment = c.alignment === 'aligned-with-timeout' ? `aligned for ${ms(c.alignmentTimeoutMs)}, then unaligned` : c.alignment;
  return `checkpoints ${when} (${alignment}, ${c.mode}, retain ${c.retained})`;
}

async function printDeadLetters(rt: LocalCloudJob, print: (line?: string) => void): Promise<void> {
  const letters = await rt.deadLetters();
  const redriven = await rt.redriven();
  const all = [
    ...letters.map((l) => {
      const line = inputLineOf(l.id);
      return { reason: l.reason, where: line === undefined ? l.vertex : `input line ${line}`, message: l.message, payload: l.payload };
    }),
    ...redriven.flatMap((r) => r.bodies.map((body) => ({ reason: 'in the SQS dead-letter queue', where: r.queue, message: '', payload: body }))),
  ];
  const total = letters.length + redriven.reduce((s, r) => s + r.count, 0);
  if (total === 0) {
    print('dead letters: none');
    print();
    return;
  }
  const byReason = new Map<string, number>();
  for (const l of letters) byReason.set(l.reason, (byReason.get(l.reason) ?? 0) + 1);
  for (const r of redriven) byReason.set(`DLQ ${r.queue}`, r.count);
  print(`dead letters: ${total} (${[...byReason].map(([reason, n]) => `${reason} ${n}`).join(', ')})`);
  for (const l of all.slice(0, 5)) {
    const payload = l.payload.length > 80 ? `${l.payload.slice(0, 80)}…` : l.payload;
    print(`  ${l.reason} at ${l.where}: ${l.message}${l.message ? ' · ' : ''}${payload}`);
  }
  if (all.length > 5) print(`  … and ${all.length - 5} more`);
  print();
}

/**
 * Compares the sink with the oracle over everything in the source log (generated events and
 * any pushed by other clients), partition by partition: the examples' oracles depend only on
 * the order within a key's partition.
 */
async function checkResults(rt: LocalCloudJob, example: Example, print: (line?: string) => void): Promise<boolean> {
  const events: unknown[] = [];
  for (const source of rt.topology.sources()) {
    for (let p = 0; p < source.parallelism; p++) {
      for (let from = 0; ;) {
        const page = await rt.log.read(p, from, 1000);
        events.push(...page.map((e) => e.event));
        if (page.length < 1000) break;
        from += page.length;
      }
    }
  }
  const expected = example.oracle(events);
  const actual = example.canonical(await rt.results(example.sink));
  return printVerdict(expected, actual, print, ` over the ${count(events.length)} events in the source log`);
}
