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

interface ChildOutcome {
  killed: boolean;
  lines: string[];
}

function runChild(stateDir: string, seed: number, killAfterMs: number | undefined): Promise<ChildOutcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, stateDir, String(seed), String(KEYS), String(PER_KEY)], {
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
    const ready = JSON.parse((second.lines.find((l) => l.startsWith('READY ')) ?? 'READY {}').slice('READY '.length)) as { status?: string; resumedFrom?: { reason: string } };
    const midRun = first.killed && ready.status !== 'FINISHED';
    if (midRun) killedMidRun++;
    const line = second.lines.find((l) => l.startsWith('RESULT '));
    const context = `seed ${seed}, killed after ${killAfterMs} ms (mid-run: ${midRun}), second run: ${second.lines.find((l) => l.startsWith('READY'))}`;
    expect(line, context).toBeDefined();
    const result = JSON.parse((line as string).slice('RESULT '.length)) as { status: string; output: never[]; state: unknown; deadLetters: string[] };
    expect(result.status, context).toBe('FINISHED');
    expect(violations(result.output, KEYS, PER_KEY, 'exactly-once'), context).toEqual([]);
    expect(result.output, context).toEqual(reference.output);
    expect(result.state, context).toEqual(reference.state);
    expect(result.deadLetters, context).toEqual(reference.deadLetters);
    // A job found unfinished was rolled back to its last completed checkpoint on open.
    if (midRun) expect(ready.resumedFrom?.reason, context).toBe('process restarted');
  });
});
