import { Command, InvalidArgumentError, Option } from 'commander';
import { examples } from '../../examples/index.js';
import { checkpointShowCommand, checkpointsCommand, triggerCommand } from './inspect.js';
import { UsageError } from './jobs.js';
import { NoStateError } from './read-state.js';
import { DEFAULT_EVENTS, DEFAULT_SEED, runCommand, type RunOptions } from './run.js';

/**
 * The `cairn` command line: run a job on the embedded runtime with a live checkpoint view,
 * and inspect a state directory's checkpoints (read-only, also while a run is active).
 *
 * Exit codes: 0 success; 1 wrong results, a failed job, or nothing to act on; 2 refused
 * (state directory in use, bad job or option, checkpoint not restorable); 130 interrupted.
 */

const integer =
  (min: number) =>
  (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`expected an integer >= ${min}`);
    return n;
  };

export function program(setExitCode: (code: number) => void): Command {
  const cli = new Command('cairn')
    .description('Flink-style checkpointing for serverless stream processing: run jobs locally and inspect their checkpoints')
    .showHelpAfterError('(add --help for the options)')
    .exitOverride((error) => {
      // Usage errors (unknown option, bad value) exit 2; --help and --version exit 0.
      process.exit(error.exitCode === 0 ? 0 : 2);
    });

  cli
    .command('run')
    .description('run a job on the embedded runtime, with live progress and a checkpoint timeline')
    .argument('<job>', `an example (${Object.keys(examples).join(', ')}) or a path to a .ts module exporting an Example as default`)
    .option('--events <n>', `events to generate (default ${DEFAULT_EVENTS}; a resumed run reuses the first run's)`, integer(0))
    .option('--seed <n>', `seed of the event generator (default ${DEFAULT_SEED})`, integer(0))
    .option('--interval <ms>', 'checkpoint interval of the time trigger (default 1000)', integer(1))
    .addOption(new Option('--trigger <kind>', 'what starts a checkpoint (default time)').choices(['time', 'count', 'continuous', 'manual']))
    .option('--every-records <n>', 'count trigger: a checkpoint every n ingested records', integer(1))
    .addOption(new Option('--alignment <mode>', 'barrier alignment (default aligned)').choices(['aligned', 'unaligned', 'aligned-with-timeout']))
    .option('--alignment-timeout <ms>', 'aligned-with-timeout: switch to unaligned after this', integer(0))
    .addOption(new Option('--mode <mode>', 'checkpointing mode (default exactly-once)').choices(['exactly-once', 'at-least-once']))
    .option('--timeout <ms>', 'abort a checkpoint not complete within this', integer(1))
    .option('--retained <n>', 'completed checkpoints kept restorable', integer(1))
    .option('--state-dir <dir>', 'durable state directory (default .cairn/<job>)')
    .option('--memory', 'keep all state in memory (nothing to resume)')
    .option('--crash-at <n>', 'inject a crash: an operator throws once when the n-th record passes, and the job restarts from its last checkpoint', integer(1))
    .option('--kill-at <n>', 'kill this process (SIGKILL) after n events were ingested; run again to resume', integer(1))
    .option('--restore <checkpointId>', 'start from this retained checkpoint', integer(1))
    .option('--rate <events/s>', 'pace the producer (default: as fast as possible)', integer(1))
    .option('--fresh', 'delete the state directory first')
    .addOption(
      new Option('--target <target>', 'embedded (default), or local-cloud: the AWS adapters and Lambda handlers against the emulators (started unless AWS_ENDPOINT_URL is set)').choices([
        'embedded',
        'local-cloud',
      ]),
    )
    .action(async (job: string, options: RunOptions) => setExitCode(await runCommand(job, options)));

  cli
    .command('checkpoints')
    .description("list a job's checkpoints from its state directory (read-only; works while a run is active)")
    .argument('<job>', 'example name or module path (names the default state directory)')
    .option('--state-dir <dir>', 'state directory (default .cairn/<job>)')
    .action((job: string, options: { stateDir?: string }) => setExitCode(checkpointsCommand(job, options)));

  cli
    .command('checkpoint')
    .description('one checkpoint')
    .command('show')
    .description("a checkpoint's details: timings, state size, source offsets, snapshots")
    .argument('<job>', 'example name or module path')
    .argument('<id>', 'checkpoint id')
    .option('--state-dir <dir>', 'state directory (default .cairn/<job>)')
    .action((job: string, id: string, options: { stateDir?: string }) => setExitCode(checkpointShowCommand(job, id, options)));

  cli
    .command('trigger')
    .description('ask the run active on a state directory to take a checkpoint now (sends it SIGUSR2)')
    .argument('<job>', 'example name or module path')
    .option('--state-dir <dir>', 'state directory (default .cairn/<job>)')
    .action((job: string, options: { stateDir?: string }) => setExitCode(triggerCommand(job, options)));

  return cli;
}

export async function main(argv: readonly string[]): Promise<number> {
  let code = 0;
  try {
    await program((c) => (code = c)).parseAsync([...argv]);
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`error: ${error.message}\n`);
      return 2;
    }
    if (error instanceof NoStateError) {
      process.stderr.write(`${error.message}\n`);
      return 1;
    }
    throw error;
  }
  return code;
}

const code = await main(process.argv);
// Let stdout drain, then exit (timers of a finished run must not keep the process alive).
process.stdout.write('', () => process.exit(code));
