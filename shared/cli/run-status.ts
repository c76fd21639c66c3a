import { writeFileSync } from 'node:fs';
import { InjectedFault } from '../core/errors.js';
import { instanceId } from '../core/messages.js';
import type { CheckpointRecord, JobRecord, SourceLog, StateStore } from '../core/ports.js';
import type { Topology } from '../core/topology.js';
import { checkpointDuration, clockTime, count, ms, table } from './format.js';

/**
 * The live status and the report that `cairn run` prints, the same for the embedded runtime
 * and the local-cloud runner: both read the job through the engine's ports.
 */
export interface RunView {
  readonly topology: Topology;
  readonly log: Pick<SourceLog, 'head'>;
  readonly state: Pick<StateStore, 'loadInstance'>;
}

/** Events appended to the source log, and how far the source instances have read it. */
export async function sourceProgress(rt: RunView): Promise<{ ingested: number; processed: number }> {
  const source = rt.topology.sources()[0];
  let ingested = 0;
  let processed = 0;
  for (let p = 0; p < (source?.parallelism ?? 0); p++) {
    ingested += await rt.log.head(p);
    if (source) processed += (await rt.state.loadInstance(instanceId(source.id, p)))?.sourceOffset ?? 0;
  }
  return { ingested, processed };
}

/** The "latest checkpoint" part of the live status. */
export function latestCheckpointLine(cp: CheckpointRecord | undefined): string {
  if (!cp) return 'no checkpoint yet';
  return `checkpoint ${cp.id} ${cp.status}${cp.finishedAt !== undefined ? ` in ${ms(checkpointDuration(cp))}` : ''} (${cp.trigger})`;
}

/** The restarts section of the report. */
export function restartsReport(restarts: JobRecord['restarts']): string {
  if (restarts.length === 0) return 'restarts: none';
  const rows = restarts.map((r) => [clockTime(r.at), String(r.toCheckpoint), r.reason]);
  return `restarts: ${restarts.length}\n${indent(table(['time', 'to checkpoint', 'reason'], rows, new Set([1])))}`;
}

export function indent(text: string): string {
  return text
    .split('\n')
    .map((line) => `  ${line}`)
    .join('\n');
}

/** A whole number with thousands separators, per second of `elapsedMs`. */
export function perSecond(n: number, elapsedMs: number): string {
  return count(Math.round(n / Math.max(0.001, elapsedMs / 1000)));
}

/** Records in `expected` but not in `actual`, and the other way round, counting repeats. */
export function multisetDiff(expected: readonly unknown[], actual: readonly unknown[]): { missing: unknown[]; unexpected: unknown[] } {
  const remaining = new Map<string, number>();
  for (const e of expected) {
    const key = JSON.stringify(e);
    remaining.set(key, (remaining.get(key) ?? 0) + 1);
  }
  const unexpected: unknown[] = [];
  for (const a of actual) {
    const key = JSON.stringify(a);
    const n = remaining.get(key) ?? 0;
    if (n > 0) remaining.set(key, n - 1);
    else unexpected.push(a);
  }
  const missing: unknown[] = [];
  for (const [key, n] of remaining) for (let i = 0; i < n; i++) missing.push(JSON.parse(key));
  return { missing, unexpected };
}

/** The closing verdict: the sink's output against the oracle's, with a few differences shown. */
export function printVerdict(expected: readonly unknown[], actual: readonly unknown[], print: (line?: string) => void, matchedNote = ''): boolean {
  const { missing, unexpected } = multisetDiff(expected, actual);
  if (missing.length === 0 && unexpected.length === 0) {
    print(`results: exactly-once ✔ (${count(actual.length)} records match the oracle${matchedNote})`);
    return true;
  }
  print(
    `results: MISMATCH ✘ expected ${count(expected.length)} records, got ${count(actual.length)}: ${count(missing.length)} missing, ${count(unexpected.length)} unexpected (duplicates or wrong values)`,
  );
  for (const m of missing.slice(0, 5)) print(`  missing     ${JSON.stringify(m)}`);
  for (const u of unexpected.slice(0, 5)) print(`  unexpected  ${JSON.stringify(u)}`);
  return false;
}

/** `--crash-at N`: an operator throws once, at the N-th record the operators see. */
export class InjectedCrash {
  private seen = 0;
  /** Set once the crash has fired. */
  reason: string | undefined;

  constructor(readonly atRecord: number) {}

  /** The step hooks to pass as `faults.step`. */
  readonly hooks = {
    onRecord: (instance: string): void => {
      if (this.reason !== undefined || ++this.seen < this.atRecord) return;
      this.reason = `injected crash in ${instance} at record ${this.seen}`;
      throw new InjectedFault(this.reason);
    },
  };

  /** The report's line when the run ended before the crash fired. */
  neverFiredNote(): string | undefined {
    if (this.reason !== undefined) return undefined;
    return `note: --crash-at ${count(this.atRecord)} never fired: only ${count(this.seen)} records passed the operators`;
  }
}

/** A sink's committed output, one JSON record per line: to `--output`, or printed after the report. */
export function writeOutput(records: readonly unknown[], sink: string, output: string | undefined, print: (line?: string) => void): void {
  const lines = records.map((r) => JSON.stringify(r));
  if (output !== undefined) {
    writeFileSync(output, lines.length > 0 ? `${lines.join('\n')}\n` : '');
    print(`output: ${count(records.length)} committed records of sink '${sink}' written to ${output}`);
    return;
  }
  print(`output: ${count(records.length)} committed records of sink '${sink}'`);
  for (const line of lines) print(line);
}
