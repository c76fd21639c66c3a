import { Command, InvalidArgumentError, Option } from 'commander';
import { CairnError, CheckpointNotFoundError, JobNotControllableError } from '../core/errors.js';
import { cloudDownCommand, cloudStatusCommand, cloudUpCommand, installCloud, serveCloud } from './cloud.js';
import { describeCommand } from './describe.js';
import { initCommand } from './init.js';
import { checkpointShowCommand, checkpointsCommand, deadLettersCommand, embeddedStatusCommand, outputCommand, triggerCommand } from './inspect.js';
import {
  destroyCommand,
  isRemote,
  pauseCommand,
  remoteDeadLettersCommand,
  remoteOutputCommand,
  remoteCheckpointsCommand,
  remoteTriggerCommand,
  resumeCommand,
  rollbackCommand,
  statusCommand,
  type RemoteOptions,
} from './operate.js';
import { defaultStateDir, exampleNames, jobNameOf, looksLikePath, UsageError } from './jobs.js';
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

function requireRemote<T extends RemoteOptions>(options: T, command: string): T {
  if (isRemote(options)) return options;
  throw new UsageError(
    `${command} acts on a job running on AWS (--stack <name>) or on the local cloud (--target local-cloud); an embedded run is controlled by its own process: stop it, then \`cairn run <job> --restore <id>\``,
  );
}

export function program(setExitCode: (code: number) => void): Command {
  const cli = new Command('cairn')
    .description('Flink-style checkpointing for serverless stream processing: run jobs locally, inspect their checkpoints, operate running jobs')
    .showHelpAfterError('(add --help for the options)')
    .exitOverride((error) => {
      // Usage errors (unknown option, bad value) exit 2; --help and --version exit 0.
      process.exit(error.exitCode === 0 ? 0 : 2);
    })
    .hook('preAction', async (_cli, action) => {
      // One name per job: a module's state directory is named after the job it defines, not its file.
      const job = action.args[0];
      const takesStateDir = action.options.some((o) => o.attributeName() === 'stateDir');
      if (job === undefined || !looksLikePath(job) || !takesStateDir || action.getOptionValue('stateDir') !== undefined || action.name() === 'run') return;
      action.setOptionValue('stateDir', defaultStateDir(await jobNameOf(job)));
    });

  const cloud = cli.command('cloud').description('the local cloud (DynamoDB Local, ElasticMQ and moto behind one endpoint on 127.0.0.1:4566 or CAIRN_EDGE_PORT)');
  cloud
    .command('install')
    .description('install the emulators (Maven Central, PyPI; needs Java 17+, Maven and Python 3) into CAIRN_CLOUD_CACHE or ~/.cache/cairn/cloud')
    .action(() => setExitCode(installCloud()));
  cloud
    .command('up')
    .description('start the local cloud in the background (installing it first if needed); prints AWS_ENDPOINT_URL')
    .action(async () => setExitCode(await cloudUpCommand()));
  cloud
    .command('down')
    .description('stop the local cloud `up` started (every job on it is gone)')
    .action(async () => setExitCode(await cloudDownCommand()));
  cloud
    .command('status')
    .description('whether a local cloud answers on the edge port')
    .action(async () => setExitCode(await cloudStatusCommand()));
  cloud.command('serve', { hidden: true }).action(serveCloud);

  cli
    .command('init')
    .description('write a new project around one job: src/job.ts, a test with cairn/testing, a CDK app with a CairnJob, sample events')
    .argument('<dir>', 'the project directory (new or empty)')
    .option('--name <name>', "the job's name (default: the directory's name)")
    .option('--cairn <spec>', 'the cairn dependency in package.json (default: ^ this version)')
    .action((dir: string, options: { name?: string; cairn?: string }) => setExitCode(initCommand(dir, options)));

  cli
    .command('describe')
    .description("a job's vertices as deployed: instances, where each sends, sinks (the CairnJob construct reads --json)")
    .argument('<job>', 'example name or module path')
    .option('--json', 'machine-readable')
    .action(async (job: string, options: { json?: boolean }) => setExitCode(await describeCommand(job, options)));

  cli
    .command('run')
    .description('run a job on the embedded runtime, with live progress and a checkpoint timeline')
    .argument('<job>', `an example (${exampleNames().join(', ')}) or a path to a module whose default export is a job definition (defineJob)`)
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
    .option('--input <file>', 'the events: a JSONL file (one JSON event per line), or - for stdin; bad lines become dead letters with their line number')
    .option('--output <file>', 'write the committed sink output (JSONL) to this file instead of printing it')
    .option('--sink <uid>', "the sink whose output is written (default: the job's only sink)")
    .option('--max-concurrent <n>', 'checkpoints in progress at once (default 1)', integer(1))
    .option('--min-pause <ms>', 'pause between the end of one checkpoint and the start of the next (default 0)', integer(0))
    .option('--tolerable-failures <n>', 'consecutive aborted checkpoints tolerated before a rollback (default 0)', integer(0))
    .option('--rate <events/s>', 'pace the producer (default: as fast as possible)', integer(1))
    .option('--fresh', 'delete the state directory first')
    .option('--ephemeral', "local-cloud: delete the job's table and queues when the run ends (by default they stay until `cairn destroy`, and the same command resumes)")
    .addOption(
      new Option('--target <target>', 'embedded (default), or local-cloud: the AWS adapters and Lambda handlers against the emulators (started unless AWS_ENDPOINT_URL is set)').choices([
        'embedded',
        'local-cloud',
      ]),
    )
    .action(async (job: string, options: RunOptions) => setExitCode(await runCommand(job, options)));

  const remote = (command: Command): Command =>
    command
      .option('--stack <name>', 'a deployed CairnJob stack (outputs read with DescribeStacks; AWS_ENDPOINT_URL for LocalStack)')
      .option('--job-id <id>', 'construct id of the CairnJob when the stack holds several')
      .addOption(new Option('--target <target>', 'local-cloud: the run recorded by `cairn run <job> --target local-cloud`').choices(['embedded', 'local-cloud']))
      .option('--endpoint <url>', 'AWS endpoint for --stack (default: AWS_ENDPOINT_URL, else AWS)')
      .option('--region <region>', 'AWS region for --stack (default: AWS_REGION)');

  remote(
    cli
      .command('status')
      .description('a running job: status, generation, checkpoints, queue depths, dead letters, event source mappings, schedule')
      .argument('<job>', 'example name or module path')
      .option('--state-dir <dir>', 'embedded: state directory (default .cairn/<job>)'),
  ).action(async (job: string, options: RemoteOptions & { stateDir?: string }) => setExitCode(isRemote(options) ? await statusCommand(job, options) : await embeddedStatusCommand(job, options)));

  remote(
    cli
      .command('checkpoints')
      .description("list a job's checkpoints: from its state directory (read-only; works while a run is active), or of a running job with --stack / --target local-cloud")
      .argument('<job>', 'example name or module path (names the default state directory)')
      .option('--state-dir <dir>', 'state directory (default .cairn/<job>)'),
  ).action(async (job: string, options: RemoteOptions & { stateDir?: string }) =>
    setExitCode(isRemote(options) ? await remoteCheckpointsCommand(job, options) : await checkpointsCommand(job, options)),
  );

  cli
    .command('checkpoint')
    .description('one checkpoint')
    .command('show')
    .description("a checkpoint's details: timings, state size, source offsets, snapshots")
    .argument('<job>', 'example name or module path')
    .argument('<id>', 'checkpoint id')
    .option('--state-dir <dir>', 'state directory (default .cairn/<job>)')
    .action(async (job: string, id: string, options: { stateDir?: string }) => setExitCode(await checkpointShowCommand(job, id, options)));

  remote(
    cli
      .command('output')
      .description("the committed output of a job's sinks (one JSON record per line): from its state directory, or its table on AWS / the local cloud")
      .argument('<job>', "the job's name, or its module path")
      .option('--sink <uid>', 'only this sink')
      .option('--json', 'one JSON document: sink uid -> records')
      .option('--state-dir <dir>', 'state directory (default .cairn/<job>)'),
  ).action(async (job: string, options: RemoteOptions & { stateDir?: string; sink?: string; json?: boolean }) =>
    setExitCode(isRemote(options) ? await remoteOutputCommand(job, options) : await outputCommand(job, options)),
  );

  remote(
    cli
      .command('dead-letters')
      .description('every dead letter of a job with its reason, origin and payload, and the messages in its dead-letter queues')
      .argument('<job>', "the job's name, or its module path")
      .option('--json', 'one JSON document for scripts')
      .option('--redrive', 'first send the ingress events that reached the dead-letter queue back to the ingress queue, under their event ids (--stack or --target local-cloud)')
      .option('--state-dir <dir>', 'state directory (default .cairn/<job>)'),
  ).action(async (job: string, options: RemoteOptions & { stateDir?: string; json?: boolean; redrive?: boolean }) => {
    if (options.redrive && !isRemote(options)) throw new UsageError('--redrive sends events back to a deployed or local-cloud ingress queue: add --stack <name> or --target local-cloud');
    setExitCode(isRemote(options) ? await remoteDeadLettersCommand(job, options) : await deadLettersCommand(job, options));
  });

  remote(
    cli
      .command('destroy')
      .description("delete a job's table, bucket and queues that the local cloud kept after its runs (--target local-cloud)")
      .argument('<job>', "the job's name, or its module path"),
  ).action(async (job: string, options: RemoteOptions) => setExitCode(await destroyCommand(job, options)));

  remote(
    cli
      .command('trigger')
      .description('take a checkpoint now: of the run active on a state directory (SIGUSR2), or of a running job with --stack / --target local-cloud')
      .argument('<job>', 'example name or module path')
      .option('--state-dir <dir>', 'state directory (default .cairn/<job>)')
      .option('--wait <seconds>', 'remote: wait this long for the checkpoint to finish (0: do not wait; default 60)', integer(0)),
  ).action(async (job: string, options: RemoteOptions & { stateDir?: string; wait?: number }) =>
    setExitCode(isRemote(options) ? await remoteTriggerCommand(job, options) : triggerCommand(job, options)),
  );

  remote(
    cli
      .command('pause')
      .description('stop triggering checkpoints, let pending ones finish, then stop the operators (event source mappings and schedule disabled)')
      .argument('<job>', 'example name or module path')
      .option('--drain <seconds>', 'how long pending checkpoints get to finish first (default 30)', integer(0)),
  ).action(async (job: string, options: RemoteOptions & { drain?: number }) => setExitCode(await pauseCommand(job, requireRemote(options, 'pause'))));

  remote(cli.command('resume').description('restart the operators and the checkpoint schedule of a paused job').argument('<job>', 'example name or module path')).action(
    async (job: string, options: RemoteOptions) => setExitCode(await resumeCommand(job, requireRemote(options, 'resume'))),
  );

  remote(
    cli
      .command('rollback')
      .description('roll a running job back to a retained checkpoint (new generation; sources replay from its offsets)')
      .argument('<job>', 'example name or module path')
      .requiredOption('--to <checkpointId>', 'a retained completed checkpoint (see `cairn checkpoints`)', integer(0))
      .option('--wait <seconds>', 'wait this long for the job to run again (0: do not wait; default 120)', integer(0)),
  ).action(async (job: string, options: RemoteOptions & { to: number; wait?: number }) => setExitCode(await rollbackCommand(job, requireRemote(options, 'rollback'))));

  return cli;
}

/** A failed AWS call or an unreachable endpoint, said in one line (not a bug of ours: no stack trace). */
function awsProblem(error: unknown): string | undefined {
  if (!(error instanceof Error)) return undefined;
  if (error.message === 'Region is missing') return 'no AWS region: set AWS_REGION (or pass --region)';
  const code = (error as NodeJS.ErrnoException).code ?? (error.cause as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'ETIMEDOUT') return `cannot reach the AWS endpoint (${code}): is it running? (${error.message})`;
  if ('$metadata' in error) return `AWS refused the request: ${error.name}: ${error.message}`;
  if (error.name === 'CredentialsProviderError') return `no AWS credentials: ${error.message}`;
  return undefined;
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
    if (error instanceof CheckpointNotFoundError || error instanceof JobNotControllableError) {
      process.stderr.write(`refused: ${error.message}\n`);
      return 2;
    }
    if (error instanceof CairnError) {
      process.stderr.write(`error: ${error.message}\n`);
      return 1;
    }
    const aws = awsProblem(error);
    if (aws) {
      process.stderr.write(`error: ${aws}\n`);
      return 1;
    }
    throw error;
  }
  return code;
}

const code = await main(process.argv);
// Let stdout drain, then exit (timers of a finished run must not keep the process alive).
process.stdout.write('', () => process.exit(code));
