import type { DeadLetter } from '../core/ports.js';
import { isAlive, StateDirLock } from '../embedded/lock.js';
import { checkpointDuration, count, ms, sumOffsets, table, timeline } from './format.js';
import { inputLineOf } from './input.js';
import { defaultStateDir, UsageError } from './jobs.js';
import { readState, stateOf, type StateView } from './read-state.js';

/** Commands over a state directory: `status`, `checkpoints`, `checkpoint show` (read-only), `trigger`. */

type Print = (line?: string) => void;

const stdoutPrint: Print = (line = '') => void process.stdout.write(`${line}\n`);

export async function checkpointsCommand(job: string, options: { stateDir?: string }, print: Print = stdoutPrint): Promise<number> {
  const view = await readState(options.stateDir ?? defaultStateDir(job));
  print(header(view));
  if (view.checkpoints.length === 0) {
    print('no checkpoints yet');
    return 0;
  }
  print();
  print(timeline(view.checkpoints, (c) => stateOf(view, c)));
  const retained = view.checkpoints.filter((c) => stateOf(view, c) === 'retained').map((c) => c.id);
  print();
  const flag = options.stateDir !== undefined ? ` --state-dir ${options.stateDir}` : '';
  print(`retained (restorable with \`cairn run ${job}${flag} --restore <id>\`): ${retained.length > 0 ? retained.join(', ') : 'none'}`);
  return 0;
}

export async function checkpointShowCommand(job: string, idArg: string, options: { stateDir?: string }, print: Print = stdoutPrint): Promise<number> {
  const id = Number(idArg);
  if (!Number.isInteger(id) || id <= 0) throw new UsageError(`checkpoint id must be a positive integer, got '${idArg}'`);
  const view = await readState(options.stateDir ?? defaultStateDir(job));
  const c = view.checkpoints.find((x) => x.id === id);
  if (!c) {
    print(`checkpoint ${id} not found in ${view.dir} (known: ${view.checkpoints.map((x) => x.id).join(', ') || 'none'})`);
    return 1;
  }
  const state = stateOf(view, c);
  const rows: [string, string][] = [
    ['id', String(c.id)],
    ['status', `${c.status} (${state})`],
    ['trigger', c.trigger],
    ['generation', String(c.generation)],
    ['triggered at', new Date(c.triggeredAt).toISOString()],
    ['finished at', c.finishedAt === undefined ? '-' : new Date(c.finishedAt).toISOString()],
    ['duration', ms(checkpointDuration(c))],
    ['barriers injected', c.barriersInjected ? 'yes' : 'no'],
    ['alignment time', ms(c.alignmentMs)],
    ['state keys', c.stateKeys === undefined ? '-' : count(c.stateKeys)],
    ['state writes', c.stateWrites === undefined ? '-' : count(c.stateWrites)],
    ['channel-state records', c.channelStateRecords === undefined ? '-' : count(c.channelStateRecords)],
  ];
  if (c.abortReason) rows.push(['abort reason', c.abortReason]);
  print(`checkpoint ${c.id} of ${view.dir}`);
  for (const [k, v] of rows) print(`  ${k.padEnd(22)} ${v}`);
  print();
  const offsets = Object.entries(c.sourceOffsets ?? {}).sort(([a], [b]) => a.localeCompare(b));
  if (offsets.length === 0) print('source offsets: none recorded');
  else {
    print(`source offsets (replay resumes here; total ${count(sumOffsets(c) ?? 0)}):`);
    print(
      table(
        ['instance', 'offset'],
        offsets.map(([instance, offset]) => [instance, count(offset)]),
        new Set([1]),
      ).replace(/^/gm, '  '),
    );
  }
  const snapshots = view.snapshots.get(c.id);
  print();
  if (!snapshots) print(state === 'retained' ? 'snapshots: none' : 'snapshots: pruned (not restorable)');
  else {
    const channel = view.channelState.get(c.id) ?? 0;
    print(`snapshots: ${snapshots.size} instances${channel > 0 ? `, ${count(channel)} channel-state records stored` : ''}`);
    const rows2 = [...snapshots]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([instance, s]) => [instance, String(s.sourceOffset), s.emittedWatermark <= -Number.MAX_SAFE_INTEGER ? '-' : String(s.emittedWatermark), String(Object.keys(s.timers).length)]);
    print(table(['instance', 'source offset', 'watermark', 'timers'], rows2, new Set([1, 2, 3])).replace(/^/gm, '  '));
  }
  return 0;
}

/** `cairn status <job>` on a state directory: the job line and the newest checkpoint. */
export async function embeddedStatusCommand(job: string, options: { stateDir?: string }, print: Print = stdoutPrint): Promise<number> {
  const view = await readState(options.stateDir ?? defaultStateDir(job));
  print(header(view));
  const last = view.checkpoints.at(-1);
  if (last) print(`newest checkpoint: ${last.id} ${last.status} (${last.trigger})${last.finishedAt !== undefined ? ` in ${ms(checkpointDuration(last))}` : ''}`);
  return view.job?.status === 'FAILED' ? 1 : 0;
}

export function triggerCommand(job: string, options: { stateDir?: string }, print: Print = stdoutPrint): number {
  const dir = options.stateDir ?? defaultStateDir(job);
  const pid = StateDirLock.owner(dir);
  if (pid === undefined || !isAlive(pid)) {
    const flag = options.stateDir !== undefined ? ` --state-dir ${options.stateDir}` : '';
    print(`no run is active on ${dir}${pid !== undefined ? ` (stale lock of process ${pid})` : ''}; start one with \`cairn run ${job}${flag}\``);
    return 1;
  }
  process.kill(pid, 'SIGUSR2');
  print(`requested a manual checkpoint from process ${pid} (${dir})`);
  return 0;
}

function header(view: StateView): string {
  const job = view.job;
  const ingested = view.partitions.reduce((a, p) => a + p.head, 0);
  const sealed = view.partitions.length > 0 && view.partitions.every((p) => p.sealed);
  const running = view.runningPid !== undefined ? `running in process ${view.runningPid}` : 'no run active';
  if (!job) return `${view.dir}: no job record yet · ${running}`;
  return (
    `${view.dir}: job ${job.status} · generation ${job.generation} · last completed checkpoint ${job.lastCompletedId || '-'} · ` +
    `restarts ${job.restarts.length} · ${count(ingested)} events ingested${sealed ? ' (input closed)' : ''} · dead letters ${view.deadLetters.length} · ${running}`
  );
}

/** `cairn output <job>`: the committed output of each sink (or `--sink`), one JSON record per line; `--json` for one document. */
export async function outputCommand(job: string, options: { stateDir?: string; sink?: string; json?: boolean }, print: Print = stdoutPrint): Promise<number> {
  const view = await readState(options.stateDir ?? defaultStateDir(job));
  return printOutput(view.sinkOutput, view.dir, options, print);
}

/** The output of `cairn output`, for every target: `where` names the state directory or the table. */
export function printOutput(sinkOutput: ReadonlyMap<string, readonly unknown[]>, where: string, options: { sink?: string; json?: boolean }, print: Print = stdoutPrint): number {
  const sinks = [...sinkOutput.keys()];
  if (options.sink !== undefined && !sinkOutput.has(options.sink)) {
    throw new UsageError(`no committed output of sink '${options.sink}' in ${where} (sinks with output: ${sinks.join(', ') || 'none'})`);
  }
  const chosen = options.sink !== undefined ? [options.sink] : sinks;
  if (options.json) {
    print(JSON.stringify(Object.fromEntries(chosen.map((s) => [s, sinkOutput.get(s) ?? []]))));
    return 0;
  }
  if (chosen.length === 0) print(`no committed output yet in ${where}`);
  for (const sink of chosen) {
    const records = sinkOutput.get(sink) ?? [];
    if (options.sink === undefined) print(`# sink ${sink}: ${count(records.length)} committed records`);
    for (const record of records) print(JSON.stringify(record));
  }
  return 0;
}

/**
 * `cairn dead-letters <job>`: every dead letter with its reason, where it came from (operator,
 * or the `--input` line), the message and the payload; then the messages redriven to a
 * dead-letter queue. `--json` for scripts. The last step errors are in the run's report.
 */
export async function deadLettersCommand(job: string, options: { stateDir?: string; json?: boolean }, print: Print = stdoutPrint): Promise<number> {
  const view = await readState(options.stateDir ?? defaultStateDir(job));
  return printDeadLetters(view.deadLetters, view.redriven, view.dir, options, print);
}

/** The output of `cairn dead-letters`, for every target. */
export function printDeadLetters(
  deadLetters: readonly DeadLetter[],
  redriven: readonly { readonly queue: string; readonly reason: string; readonly body: unknown }[],
  where: string,
  options: { json?: boolean },
  print: Print = stdoutPrint,
): number {
  const letters = deadLetters.map((l) => {
    const line = inputLineOf(l.id);
    return { id: l.id, reason: l.reason, vertex: l.vertex, ...(line === undefined ? {} : { line }), message: l.message, payload: l.payload, at: l.at };
  });
  if (options.json) {
    print(JSON.stringify({ deadLetters: letters, redriven }));
    return 0;
  }
  print(`${where}: ${count(letters.length)} dead letters, ${count(redriven.length)} messages in dead-letter queues`);
  if (letters.length > 0) {
    print();
    print(
      table(
        ['reason', 'from', 'message', 'payload'],
        letters.map((l) => [l.reason, l.line === undefined ? l.vertex : `input line ${l.line}`, l.message, l.payload.length > 60 ? `${l.payload.slice(0, 60)}…` : l.payload]),
      ),
    );
  }
  if (redriven.length > 0) {
    print();
    print(
      table(
        ['queue', 'reason', 'message'],
        redriven.map((r) => [r.queue, r.reason || 'max receive count', JSON.stringify(r.body)]),
      ),
    );
  }
  return 0;
}
