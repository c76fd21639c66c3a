import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prng } from '../../examples/types.js';
import { EmbeddedRuntime } from '../../shared/embedded/runtime.js';
import { canonical, finalState, sequenceEvents, sequenceJob, sequenceOracle, violations } from './sequence-job.js';

/**
 * SIGKILL of the whole process: a child runs a faulted schedule on a durable state directory
 * and is killed at a seeded moment; a second process on the same directory resumes from the
 * last completed checkpoint. The end result must equal the fault-free run.
 */

const KEYS = 8;
const PER_KEY = 400;
const SEEDS = Number(process.env.CAIRN_SIGKILL_SEEDS ?? 8);
const CHILD = join(import.meta.dirname, 'child-run.ts');
/** Runs with many checkpoints (three retained, pruned on every one), so that the kills land in commit-sinks passes, prunes and restores of older checkpoints. */
const WINDOWS = { retained: 3, intervalMs: 2, pruneIntervalMs: 0 };

interface ChildOutcome {
  killed: boolean;
  lines: string[];
}

interface Ready {
  status?: string;
  resumedFrom?: { reason: string; toCheckpoint: number };
  recovery?: { reason: string; toCheckpoint: number };
  restoreFrom?: number;
}

/** Options of child-run.ts: a SIGKILL inside commit-sinks or a recovery, a `--restore`. */
type ChildOptions = { killIn?: 'commit-sinks' | 'recovery'; nth?: number; restore?: 'committed' | 'oldest'; checkpoint?: { retained?: number; intervalMs?: number }; sourceReadBatch?: number };

const readyOf = (outcome: ChildOutcome): Ready => JSON.parse((outcome.lines.find((l) => l.startsWith('READY ')) ?? 'READY {}').slice('READY '.length)) as Ready;

function runChild(stateDir: string, seed: number, killAfterMs: number | undefined, options: ChildOptions = {}): Promise<ChildOutcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, stateDir, String(seed), String(KEYS), String(PER_KEY), JSON.stringify(options)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (killAfterMs !== undefined && out.includes('READY')) {
        setTimeout(() => child.kill('SIGKILL'), killAfterMs);
        killAfterMs = undefined;
      }
    });
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (signal !== 'SIGKILL' && code !== 0) reject(new Error(`child exited ${code}: ${err}`));
      else resolve({ killed: signal === 'SIGKILL', lines: out.split('\n') });
    });
  });
}

describe('fault suite (embedded, SIGKILL): a killed process resumes and ends exactly-once', () => {
  let reference: { output: unknown; state: unknown; deadLetters: string[] };
  const dirs: string[] = [];
  let killedMidRun = 0;

  beforeAll(async () => {
    const runtime = await EmbeddedRuntime.open({ job: sequenceJob(), clock: 'virtual', checkpoint: { intervalMs: 5 } });
    runtime.push(sequenceEvents(KEYS, PER_KEY, 2));
    runtime.closeInput();
    await runtime.run();
    reference = {
      output: canonical(await runtime.results('validated')),
      state: await finalState(runtime.state, KEYS),
      deadLetters: (await runtime.deadLetters()).map((d) => d.id).sort(),
    };
    runtime.close();
    expect(reference.output).toEqual(sequenceOracle(KEYS, PER_KEY));
    expect(reference.deadLetters).toHaveLength(2);
  });

  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    if (SEEDS >= 8) expect(killedMidRun, 'kills that landed before the run finished').toBeGreaterThanOrEqual(SEEDS / 2);
  });

  it.each(Array.from({ length: SEEDS }, (_, i) => 1000 + i))('seed %i', async (seed) => {
    const stateDir = mkdtempSync(join(tmpdir(), 'cairn-sigkill-'));
    dirs.push(stateDir);
    const killAfterMs = Math.floor(prng(seed)() * 400);
    const first = await runChild(stateDir, seed, killAfterMs);
    const second = await runChild(stateDir, seed, undefined);
    // Mid-run = the second process found the job unfinished (a kill can also land after the job
    // FINISHED but before the first process printed its result).
    const ready = readyOf(second);
    const midRun = first.killed && ready.status !== 'FINISHED';
    if (midRun) killedMidRun++;
    const context = `seed ${seed}, killed after ${killAfterMs} ms (mid-run: ${midRun}), second run: ${second.lines.find((l) => l.startsWith('READY'))}`;
    expectExactly(second, context);
    // A job found RUNNING was rolled back to its last completed checkpoint on open; one found
    // RECOVERING carries on with that recovery (the latest restart is the one in progress).
    if (midRun) {
      expect(ready.recovery, context).toBeDefined();
      expect(ready.recovery?.reason, context).toBe(ready.resumedFrom?.reason);
    }
  });

  function expectExactly(outcome: ChildOutcome, context: string): void {
    const line = outcome.lines.find((l) => l.startsWith('RESULT '));
    expect(line, context).toBeDefined();
    const result = JSON.parse((line as string).slice('RESULT '.length)) as { status: string; output: never[]; state: unknown; deadLetters: string[] };
    expect(result.status, context).toBe('FINISHED');
    expect(violations(result.output, KEYS, PER_KEY, 'exactly-once'), context).toEqual([]);
    expect(result.output, context).toEqual(reference.output);
    expect(result.state, context).toEqual(reference.state);
    expect(result.deadLetters, context).toEqual(reference.deadLetters);
  }

  // Kills in the windows of #10 (seeds 2000+): inside commit-sinks, then `--restore` to what the
  // job record says is committed; inside the recovery of a `--restore`, then a plain start.
  it.each(Array.from({ length: Math.max(2, SEEDS / 2) }, (_, i) => 2000 + i))('seed %i: SIGKILL inside commit-sinks, then --restore <sinksCommittedThrough>', async (seed) => {
    const stateDir = mkdtempSync(join(tmpdir(), 'cairn-sigkill-'));
    dirs.push(stateDir);
    const nth = 1 + (seed % 3);
    const first = await runChild(stateDir, seed, undefined, { killIn: 'commit-sinks', nth, checkpoint: WINDOWS, sourceReadBatch: 5 });
    expect(first.killed, `seed ${seed}: killed at publish ${nth}`).toBe(true);
    const second = await runChild(stateDir, seed, undefined, { restore: 'committed', checkpoint: WINDOWS, sourceReadBatch: 5 });
    const ready = readyOf(second);
    const context = `seed ${seed}, killed at publish ${nth}, second run: ${JSON.stringify(ready)}`;
    expect(ready.recovery?.toCheckpoint, context).toBe(ready.restoreFrom);
    expectExactly(second, context);
  });

  it.each(Array.from({ length: Math.max(2, SEEDS / 2) }, (_, i) => 3000 + i))('seed %i: SIGKILL inside the recovery of a --restore, then a plain start', async (seed) => {
    const stateDir = mkdtempSync(join(tmpdir(), 'cairn-sigkill-'));
    dirs.push(stateDir);
    expectExactly(await runChild(stateDir, seed, undefined, { checkpoint: WINDOWS }), `seed ${seed}: first run`);
    const nth = 1 + (seed % 5);
    const restoring = await runChild(stateDir, seed, undefined, { restore: 'oldest', killIn: 'recovery', nth, checkpoint: WINDOWS });
    const target = readyOf(restoring).restoreFrom;
    expect(restoring.killed, `seed ${seed}: killed at recovery phase ${nth}`).toBe(true);
    const third = await runChild(stateDir, seed, undefined, { checkpoint: WINDOWS });
    const ready = readyOf(third);
    const context = `seed ${seed}, killed at recovery phase ${nth} of the restore to ${target}, third run: ${JSON.stringify(ready)}`;
    // The restore asked for goes on: same target, not the latest checkpoint.
    expect(ready.recovery?.toCheckpoint, context).toBe(target);
    expectExactly(third, context);
  });
});
