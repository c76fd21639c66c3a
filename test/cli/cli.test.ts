import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readState, stateOf } from '../../shared/cli/read-state.js';

/**
 * The `cairn` CLI as a user runs it: a child process (`node --import tsx shared/cli/main.ts`),
 * small inputs, in memory or in a temporary state directory. Output is line-based (no TTY).
 */

const ROOT = resolve(import.meta.dirname, '../..');
const MAIN = join(ROOT, 'shared/cli/main.ts');
const EXACTLY_ONCE = /results: exactly-once ✔ \(([\d,]+) records match the oracle\)/;

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

interface Running {
  readonly child: ChildProcess;
  readonly done: Promise<Outcome>;
  output(): string;
  /** Waits for `pattern` in the output; fails once the output has not grown for `stallMs`. */
  waitFor(pattern: RegExp, stallMs?: number): Promise<void>;
}

function start(args: readonly string[]): Running {
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const done = new Promise<Outcome>((resolveDone) => child.on('close', (code, signal) => resolveDone({ code, signal, stdout, stderr })));
  const output = (): string => stdout + stderr;
  return {
    child,
    done,
    output,
    async waitFor(pattern, stallMs = 60_000) {
      // The deadline follows the output: a slow start is waited for, a silent process is not.
      let seen = output().length;
      let progressedAt = Date.now();
      while (!pattern.test(output())) {
        if (output().length !== seen) [seen, progressedAt] = [output().length, Date.now()];
        else if (Date.now() - progressedAt > stallMs) throw new Error(`no output for ${stallMs} ms waiting for ${pattern}; output so far:\n${output()}`);
        if (child.exitCode !== null) throw new Error(`process exited (${child.exitCode}) before ${pattern}:\n${output()}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}

const cairn = (...args: string[]): Promise<Outcome> => start(args).done;

const dirs: string[] = [];
function tempStateDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-cli-'));
  dirs.push(dir);
  return join(dir, 'state');
}
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe('cairn run', () => {
  it('runs an example in memory with checkpoints and ends exactly-once', async () => {
    const r = await cairn('run', 'word-count', '--events', '1500', '--memory', '--interval', '40');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(EXACTLY_ONCE);
    expect(r.stdout).toMatch(/word-count: FINISHED/);
    expect(r.stdout).toMatch(/checkpoint timeline/);
    expect(r.stdout).toMatch(/^\s+\d+\s+final\s+COMPLETED\s+retained/m);
    expect(r.stdout).toMatch(/restarts: none/);
    expect(r.stdout).toMatch(/dead letters: none/);
    // Line-based live output on a pipe: progress lines, no escape codes.
    expect(r.stderr).toMatch(/ingested 1,500\/1,500/);
    expect(r.stderr.includes('\u001b[')).toBe(false);
  });

  it('--crash-at: an operator throws once, the job restarts from its last checkpoint and still ends exactly-once', async () => {
    const r = await cairn('run', 'account-balance', '--events', '1500', '--memory', '--interval', '30', '--crash-at', '2500');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stderr).toMatch(/restart: rolling back to checkpoint \d+ \(injected crash in \S+ at record 2500\)/);
    expect(r.stdout).toMatch(/restarts: 1\n/);
    expect(r.stdout).toMatch(/injected crash in \S+ at record 2500/);
    expect(r.stdout).toMatch(/generation 2/);
    expect(r.stdout).toMatch(EXACTLY_ONCE);
  });

  it('--kill-at: the process dies by SIGKILL; a second run resumes from the last completed checkpoint and ends exactly-once', async () => {
    const stateDir = tempStateDir();
    const killed = await cairn('run', 'word-count', '--events', '4000', '--state-dir', stateDir, '--interval', '30', '--kill-at', '2500');
    expect(killed.signal, killed.stdout + killed.stderr).toBe('SIGKILL');
    expect(killed.stderr).toMatch(/killing the process \(SIGKILL\) after [\d,]+ ingested events/);

    const before = await readState(stateDir);
    expect(before.job?.status).toBe('RUNNING');
    const last = before.job?.lastCompletedId ?? 0;
    expect(last).toBeGreaterThan(0);

    // No --events: the resumed run regenerates the first run's input from the state directory.
    const resumed = await cairn('run', 'word-count', '--state-dir', stateDir);
    expect(resumed.code, resumed.stdout + resumed.stderr).toBe(0);
    expect(resumed.stderr).toContain(`resumed from checkpoint ${last} `);
    expect(resumed.stdout).toContain(`resumed from checkpoint ${last}`);
    expect(resumed.stdout).toMatch(/4,000 events/);
    expect(resumed.stdout).toMatch(/process restarted/);
    expect(resumed.stdout).toMatch(EXACTLY_ONCE);
    expect((await readState(stateDir)).job?.status).toBe('FINISHED');
  });

  it('refuses a second run on a state directory in use (exit 2); trigger asks the active run for a checkpoint; Ctrl-C stops it cleanly', async () => {
    const stateDir = tempStateDir();
    const first = start(['run', 'word-count', '--events', '20000', '--rate', '250', '--state-dir', stateDir, '--trigger', 'manual']);
    try {
      await first.waitFor(/ingested/);
      const pid = first.child.pid as number;

      const second = await cairn('run', 'word-count', '--state-dir', stateDir);
      expect(second.code).toBe(2);
      expect(second.stderr).toContain(`error: state directory ${stateDir} is in use by process ${pid}; stop that process first or pass another --state-dir`);

      const fresh = await cairn('run', 'word-count', '--state-dir', stateDir, '--fresh');
      expect(fresh.code).toBe(2);
      expect(existsSync(join(stateDir, 'LOCK'))).toBe(true);

      const trigger = await cairn('trigger', 'word-count', '--state-dir', stateDir);
      expect(trigger.code, trigger.stdout + trigger.stderr).toBe(0);
      expect(trigger.stdout).toContain(`requested a manual checkpoint from process ${pid}`);
      await first.waitFor(/checkpoint 1 triggered manually/);
      await first.waitFor(/checkpoint 1 COMPLETED/);

      // Listing works while the run holds the lock (read-only).
      const listing = await cairn('checkpoints', 'word-count', '--state-dir', stateDir);
      expect(listing.code).toBe(0);
      expect(listing.stdout).toContain(`running in process ${pid}`);
      expect(listing.stdout).toMatch(/^ 1\s+manual\s+COMPLETED\s+retained/m);

      first.child.kill('SIGINT');
      const outcome = await first.done;
      expect(outcome.code).toBe(130);
      expect(outcome.stdout).toMatch(/interrupted before the job finished/);
    } finally {
      first.child.kill('SIGKILL');
    }
    expect(existsSync(join(stateDir, 'LOCK'))).toBe(false);
    const idle = await cairn('trigger', 'word-count', '--state-dir', stateDir);
    expect(idle.code).toBe(1);
    expect(idle.stdout).toContain(`no run is active on ${stateDir}`);
  });

  it('--restore: starts from a chosen retained checkpoint; a checkpoint that is not retained is refused (exit 2)', async () => {
    const stateDir = tempStateDir();
    const killed = await cairn('run', 'word-count', '--events', '3000', '--state-dir', stateDir, '--interval', '30', '--kill-at', '2000', '--retained', '2');
    expect(killed.signal, killed.stdout + killed.stderr).toBe('SIGKILL');
    const state = await readState(stateDir);
    const retained = state.checkpoints.filter((c) => stateOf(state, c) === 'retained').map((c) => c.id);
    const discarded = state.checkpoints.filter((c) => stateOf(state, c) === 'pruned').map((c) => c.id);
    expect(retained.length).toBe(2);
    expect(discarded.length).toBeGreaterThan(0);

    const refused = await cairn('run', 'word-count', '--state-dir', stateDir, '--restore', String(discarded[0]));
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`checkpoint ${discarded[0]} is not a retained completed checkpoint (retained: ${retained.join(', ')})`);

    const latest = retained.at(-1) as number;
    const restored = await cairn('run', 'word-count', '--state-dir', stateDir, '--restore', String(latest));
    expect(restored.code, restored.stdout + restored.stderr).toBe(0);
    expect(restored.stderr).toContain(`restart: rolling back to checkpoint ${latest} (restore from checkpoint ${latest} requested)`);
    expect(restored.stdout).toMatch(EXACTLY_ONCE);

    // The job has finished and its sink published everything. Restoring the older retained
    // checkpoint withdraws what the newer one published and replays it: still exactly-once.
    const finished = await readState(stateDir);
    const [older, newest] = finished.checkpoints.filter((c) => stateOf(finished, c) === 'retained').map((c) => c.id) as [number, number];
    expect(finished.job?.sinksCommittedThrough).toBe(newest);
    const rewound = await cairn('run', 'word-count', '--state-dir', stateDir, '--restore', String(older));
    expect(rewound.code, rewound.stdout + rewound.stderr).toBe(0);
    expect(rewound.stdout).toContain(`note: the sink output already committed for checkpoints ${older + 1}..${newest} was withdrawn by this restore and published again by the replay`);
    expect(rewound.stdout).toMatch(EXACTLY_ONCE);
  });

  it('runs a job given as a path to a module exporting an Example as default', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cairn-job-'));
    dirs.push(dir);
    const module = join(dir, 'balances.ts');
    writeFileSync(module, `export { accountBalance as default } from ${JSON.stringify(join(ROOT, 'examples/account-balance.js'))};\n`);
    const r = await cairn('run', module, '--events', '800', '--memory', '--interval', '40');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/cairn run account-balance: 800 events/);
    expect(r.stdout).toMatch(EXACTLY_ONCE);

    writeFileSync(join(dir, 'bad.ts'), 'export default 42;\n');
    const bad = await cairn('run', join(dir, 'bad.ts'), '--memory');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(`error: the default export of ${join(dir, 'bad.ts')} is not a job definition (defineJob({ name, build }))`);
  });

  it('runs a user job (defineJob) over --input: bad lines are dead letters with their line number and reason, the rest is committed exactly once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cairn-input-'));
    dirs.push(dir);
    const input = join(dir, 'events.jsonl');
    const lines = [
      '{"user":"a","amount":5}',
      '{"user":"b","amount":2}',
      'not json',
      '',
      '{"user":"a","amount":"x"}',
      JSON.stringify({ user: 'big', amount: 1, note: 'x'.repeat(210 * 1024) }),
      '{"user":"a","amount":3}',
      '{"user":"b","amount":1}',
    ];
    writeFileSync(input, `${lines.join('\n')}\n`);
    const output = join(dir, 'out.jsonl');
    const state = tempStateDir();
    const job = join(ROOT, 'test/fixtures/totals-job.ts');
    const r = await cairn('run', job, '--input', input, '--output', output, '--state-dir', state, '--max-concurrent', '2', '--min-pause', '0', '--tolerable-failures', '1');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/cairn run totals: 7 events from .*events\.jsonl, checkpoints every 20 ms/);
    expect(r.stdout).toMatch(/totals: FINISHED/);
    expect(r.stdout).toMatch(/^\s+\d+\s+final\s+COMPLETED/m);
    expect(r.stdout).toContain('dead letters: 3 (malformed-json 1, schema-violation 1, oversize-record 1)');
    expect(r.stdout).toMatch(/malformed-json at input line 3: malformed JSON: Unexpected token/);
    expect(r.stdout).toMatch(/schema-violation at input line 5: schema violation: .*expected number, received string/);
    expect(r.stdout).toMatch(/oversize-record at input line 6: event of 215\d{3} bytes exceeds the limit of 204800 bytes/);
    expect(r.stdout).toContain(`output: 4 committed records of sink 'totals' written to ${output}`);
    const committed = readFileSync(output, 'utf8').trim().split('\n').sort();
    expect(committed).toEqual(['{"user":"a","total":5}', '{"user":"a","total":8}', '{"user":"b","total":2}', '{"user":"b","total":3}']);

    // After the run: its results and its failures, read from the state directory.
    const out = await cairn('output', 'totals', '--state-dir', state);
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout.split('\n')[0]).toBe('# sink totals: 4 committed records');
    expect(out.stdout.trim().split('\n').slice(1).sort()).toEqual(committed);
    const json = await cairn('output', 'totals', '--state-dir', state, '--sink', 'totals', '--json');
    expect((JSON.parse(json.stdout) as { totals: unknown[] }).totals.map((r) => JSON.stringify(r)).sort()).toEqual(committed);
    const letters = await cairn('dead-letters', 'totals', '--state-dir', state, '--json');
    expect(letters.code, letters.stderr).toBe(0);
    const parsed = JSON.parse(letters.stdout) as { deadLetters: Array<{ id: string; reason: string; vertex: string; line: number; payload: string }>; redriven: unknown[] };
    expect(parsed.deadLetters.map((l) => [l.line, l.reason, l.id, l.vertex, l.payload.slice(0, 30)]).sort()).toEqual([
      [3, 'malformed-json', 'ingress:line:3', 'payments', 'not json'],
      [5, 'schema-violation', 'ingress:line:5', 'payments', '{"user":"a","amount":"x"}'],
      [6, 'oversize-record', 'ingress:line:6', 'payments', '{"user":"big","amount":1,"note'],
    ]);
    expect(parsed.redriven).toEqual([]);
    const human = await cairn('dead-letters', 'totals', '--state-dir', state);
    expect(human.stdout).toContain(`${state}: 3 dead letters, 0 messages in dead-letter queues`);
    expect(human.stdout).toMatch(/schema-violation\s+input line 5\s+schema violation/);
  });

  it('--input - reads the events from stdin and prints the committed output', async () => {
    const job = join(ROOT, 'test/fixtures/totals-job.ts');
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'run', job, '--input', '-', '--memory'], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stdin.end('{"user":"c","amount":4}\n{"user":"c","amount":6}\n');
    const code = await new Promise<number | null>((done) => child.on('close', done));
    expect(code, stdout).toBe(0);
    expect(stdout).toMatch(/cairn run totals: 2 events from stdin/);
    expect(stdout).toContain(`output: 2 committed records of sink 'totals'\n{"user":"c","total":4}\n{"user":"c","total":10}\n`);
  });

  it('a user job without --input, a module that is not a job, and an unknown sink are refused with one line (exit 2)', async () => {
    const job = join(ROOT, 'test/fixtures/totals-job.ts');
    const noInput = await cairn('run', job, '--memory');
    expect(noInput.code).toBe(2);
    expect(noInput.stderr).toContain("error: job 'totals' has no demo input: pass --input <events.jsonl> (one JSON event per line) or --input - for stdin");
    const notJob = await cairn('run', join(ROOT, 'test/fixtures/not-a-job.ts'), '--memory');
    expect(notJob.code).toBe(2);
    expect(notJob.stderr).toContain(`error: the default export of ${join(ROOT, 'test/fixtures/not-a-job.ts')} is not a job definition (defineJob({ name, build }))`);
    const missing = await cairn('run', join(ROOT, 'test/fixtures/missing.ts'), '--memory');
    expect(missing.stderr).toContain(`error: job module ${join(ROOT, 'test/fixtures/missing.ts')} does not exist`);
    const sink = await cairn('run', job, '--input', '-', '--sink', 'nope', '--memory');
    expect(sink.code).toBe(2);
    expect(sink.stderr).toContain("error: job 'totals' has no sink 'nope' (sinks: totals)");
  });

  it('rejects an unknown job with exit 2', async () => {
    const r = await cairn('run', 'no-such-job', '--memory');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown job 'no-such-job': use one of account-balance, windowed-count, word-count or a path to a module whose default export is a job definition/);
  });
});

describe('cairn checkpoints', () => {
  it('lists the checkpoints of a state directory with retained vs pruned, exactly as stored', async () => {
    const stateDir = tempStateDir();
    const run = await cairn('run', 'windowed-count', '--events', '2000', '--state-dir', stateDir, '--interval', '25', '--retained', '2');
    expect(run.code, run.stdout + run.stderr).toBe(0);

    const r = await cairn('checkpoints', 'windowed-count', '--state-dir', stateDir);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const state = await readState(stateDir);
    expect(state.checkpoints.length).toBeGreaterThanOrEqual(3);
    const rows = r.stdout
      .split('\n')
      .map((line) => /^\s*(\d+)\s+(\w+)\s+(PENDING|COMPLETED|ABORTED)\s+(\w+)/.exec(line))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => ({ id: Number(m[1]), trigger: m[2], status: m[3], restorable: m[4] }));
    expect(rows).toEqual(state.checkpoints.map((c) => ({ id: c.id, trigger: c.trigger, status: c.status, restorable: stateOf(state, c) })));
    // --retained 2: the last two completed checkpoints are restorable, the older ones pruned.
    const completed = state.checkpoints.filter((c) => c.status === 'COMPLETED').map((c) => c.id);
    expect(rows.filter((x) => x.restorable === 'retained').map((x) => x.id)).toEqual(completed.slice(-2));
    expect(rows.filter((x) => x.restorable === 'pruned').map((x) => x.id)).toEqual(completed.slice(0, -2));
    expect(r.stdout).toContain(`retained (restorable with \`cairn run windowed-count --state-dir ${stateDir} --restore <id>\`): ${completed.slice(-2).join(', ')}`);
    expect(r.stdout).toMatch(/job FINISHED/);

    const last = state.checkpoints.at(-1);
    const show = await cairn('checkpoint', 'show', 'windowed-count', String(last?.id), '--state-dir', stateDir);
    expect(show.code, show.stdout + show.stderr).toBe(0);
    expect(show.stdout).toMatch(new RegExp(`status\\s+COMPLETED \\(retained\\)`));
    for (const [instance, offset] of Object.entries(last?.sourceOffsets ?? {})) {
      expect(show.stdout).toMatch(new RegExp(`${instance}\\s+${offset.toLocaleString('en-US')}\\b`));
    }

    const missing = await cairn('checkpoints', 'windowed-count', '--state-dir', join(stateDir, 'nope'));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/no job state in/);
  });
});
