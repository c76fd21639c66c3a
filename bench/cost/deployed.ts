import { App } from 'aws-cdk-lib';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { examples } from '../../examples/index.js';
import { CairnStack } from '../../infra/cairn-stack.js';

/**
 * What the deployed stack bills by, read from the synthesized CloudFormation template (no
 * bundling): each function's memory size and architecture, which queues are FIFO, the
 * checkpoint workflow's states, its type and its (watchdog) schedule, the SQS event source
 * mappings (every mapping polls its queue, idle or not). The coordinator's state transitions
 * between two `Run` invocations are the lengths of the paths through that definition
 * (`transitionsPerDecision`).
 */

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface AslState {
  readonly Type: string;
  readonly Next?: string;
  readonly End?: boolean;
  readonly Default?: string;
  readonly Choices?: ReadonlyArray<{ readonly Variable?: string; readonly StringEquals?: string; readonly Next: string; readonly Or?: ReadonlyArray<{ StringEquals?: string }> }>;
}
export interface Asl {
  readonly StartAt: string;
  readonly States: Readonly<Record<string, AslState>>;
}

export interface DeployedFunction {
  /** The handler's export name: operator, ingest, coordinator, or any other (e.g. a dead-letter consumer). */
  readonly role: string;
  readonly logicalId: string;
  readonly vertex?: string;
  readonly memoryMb: number;
  readonly architecture: 'arm64' | 'x86_64';
}

export interface DeployedJob {
  readonly example: string;
  readonly functions: readonly DeployedFunction[];
  readonly ingressFifo: boolean;
  readonly operatorQueuesFifo: boolean;
  readonly stateMachineType: string;
  readonly checkpointAsl: Asl;
  /** The coordinator function's timeout (s): one `Run` invocation ends before it. */
  readonly coordinatorTimeoutSeconds: number | undefined;
  /** Every SQS event source mapping: the function it invokes and whether its queue is FIFO. */
  /** batchSize and the batching window (MaximumBatchingWindowInSeconds, 0 when unset) as the template sets them. */
  readonly eventSourceMappings: ReadonlyArray<{ readonly functionRole: string; readonly queue: string; readonly fifo: boolean; readonly batchSize: number; readonly windowSeconds: number }>;
  /** EventBridge Scheduler rate of the coordinator's watchdog schedule (minutes). */
  readonly scheduleRateMinutes: number | undefined;
  /** The Step Functions log level (ALL: every history event is a log event). */
  readonly sfnLogLevel: string | undefined;
  readonly pointInTimeRecovery: boolean;
  /** CloudWatch alarms ($0.10 per alarm-month, standard resolution) and composite alarms ($0.50). */
  readonly alarms: number;
  readonly compositeAlarms: number;
}

type Json = Record<string, unknown>;

const cache = new Map<string, DeployedJob>();

/** Synthesizes the example's stack as `npx cdk synth` would (cdk.json feature flags; bundling skipped). */
export function deployedJob(example: string, intervalMs = 1_000): DeployedJob {
  const cacheKey = `${example}:${intervalMs}`;
  const hit = cache.get(cacheKey);
  if (hit) return hit;
  const job = examples[example];
  if (!job) throw new Error(`no example ${example}`);
  const context = (JSON.parse(readFileSync(join(ROOT, 'cdk.json'), 'utf8')) as { context?: Json }).context ?? {};
  const app = new App({ context: { ...context, 'aws:cdk:bundling-stacks': [] } });
  const stack = new CairnStack(app, `Cairn-${example}`, { job: { job, entry: `examples/${example}.ts`, projectRoot: ROOT, checkpoint: { intervalMs } } });
  const template = app.synth().getStackByName(stack.stackName).template as { Resources: Record<string, { Type: string; Properties: Json }> };
  const resources = Object.entries(template.Resources);
  const functions: DeployedFunction[] = [];
  let coordinatorTimeoutSeconds: number | undefined;
  for (const [id, r] of resources) {
    if (r.Type !== 'AWS::Lambda::Function') continue;
    const handler = typeof r.Properties.Handler === 'string' ? r.Properties.Handler : '';
    const fn = handler.split('.').pop() ?? '';
    // CDK's own helper functions (log retention, custom resources) have no Cairn handler.
    if (fn === '' || fn === 'handler') continue;
    const env = ((r.Properties.Environment as Json | undefined)?.Variables ?? {}) as Record<string, string>;
    const archs = (r.Properties.Architectures as string[] | undefined) ?? ['x86_64'];
    if (fn === 'coordinator') coordinatorTimeoutSeconds = Number(r.Properties.Timeout ?? 3);
    functions.push({
      role: fn,
      logicalId: id,
      ...(env.CAIRN_VERTEX ? { vertex: env.CAIRN_VERTEX } : {}),
      memoryMb: Number(r.Properties.MemorySize ?? 128),
      architecture: archs[0] === 'arm64' ? 'arm64' : 'x86_64',
    });
  }
  const queues = resources.filter(([, r]) => r.Type === 'AWS::SQS::Queue');
  const refId = (v: unknown): string | undefined => {
    if (typeof v !== 'object' || v === null) return undefined;
    const o = v as { Ref?: string; 'Fn::GetAtt'?: [string, string] };
    return o.Ref ?? o['Fn::GetAtt']?.[0];
  };
  const eventSourceMappings = resources
    .filter(([, r]) => r.Type === 'AWS::Lambda::EventSourceMapping')
    .flatMap(([, r]) => {
      const queueId = refId(r.Properties.EventSourceArn);
      const queue = queues.find(([id]) => id === queueId);
      if (!queue) return []; // not an SQS mapping
      const fnId = refId(r.Properties.FunctionName);
      return [
        {
          functionRole: functions.find((f) => f.logicalId === fnId)?.role ?? 'unknown',
          queue: queue[0],
          fifo: queue[1].Properties.FifoQueue === true,
          batchSize: Number(r.Properties.BatchSize ?? 10),
          windowSeconds: Number(r.Properties.MaximumBatchingWindowInSeconds ?? 0),
        },
      ];
    });
  const ingress = queues.find(([id]) => id.startsWith('JobIngress') && !id.includes('Dlq'));
  const operatorQueues = queues.filter(([id]) => /Queue[0-9A-F]{8}$/.test(id));
  const machines = resources.filter(([, r]) => r.Type === 'AWS::StepFunctions::StateMachine');
  const checkpoints = machines.find(([id]) => id.includes('Checkpoints'));
  if (!checkpoints) throw new Error('no checkpoint state machine in the template');
  const props = checkpoints[1].Properties;
  const schedule = resources.find(([, r]) => r.Type === 'AWS::Scheduler::Schedule');
  const rate = schedule ? /rate\((\d+) minutes?\)/.exec(String(schedule[1].Properties.ScheduleExpression))?.[1] : undefined;
  const table = resources.find(([, r]) => r.Type === 'AWS::DynamoDB::Table' || r.Type === 'AWS::DynamoDB::GlobalTable');
  const pitr = (table?.[1].Properties.PointInTimeRecoverySpecification as Json | undefined)?.PointInTimeRecoveryEnabled === true;
  const deployed: DeployedJob = {
    example,
    functions,
    ingressFifo: ingress?.[1].Properties.FifoQueue === true,
    operatorQueuesFifo: operatorQueues.length > 0 && operatorQueues.every(([, r]) => r.Properties.FifoQueue === true),
    stateMachineType: typeof props.StateMachineType === 'string' ? props.StateMachineType : 'STANDARD',
    checkpointAsl: aslOf(props.DefinitionString),
    coordinatorTimeoutSeconds,
    eventSourceMappings,
    scheduleRateMinutes: rate === undefined ? undefined : Number(rate),
    sfnLogLevel: (props.LoggingConfiguration as Json | undefined)?.Level as string | undefined,
    pointInTimeRecovery: pitr,
    alarms: resources.filter(([, r]) => r.Type === 'AWS::CloudWatch::Alarm').length,
    compositeAlarms: resources.filter(([, r]) => r.Type === 'AWS::CloudWatch::CompositeAlarm').length,
  };
  cache.set(cacheKey, deployed);
  return deployed;
}

/** The DefinitionString (an Fn::Join of strings and references) as JSON; references become placeholders. */
function aslOf(definition: unknown): Asl {
  if (typeof definition === 'string') return JSON.parse(definition) as Asl;
  const join = (definition as { 'Fn::Join': [string, unknown[]] })['Fn::Join'];
  return JSON.parse(
    join[1]
      .map((part) => (typeof part === 'string' ? part : '"REF"').replace(/^"REF"$/, 'REF'))
      .join(join[0])
      .replace(/REF/g, ''),
  ) as Asl;
}

/**
 * State transitions of one pass through the checkpoint workflow: every state entered from
 * `from` (default: the `Run` task; `StartAt` for a whole execution) until `Run` is entered
 * again (excluded) or the execution ends (the end state included), following Route's choice
 * for the `Run` task's result `type` (continue, wait, recover, sleep, handoff, finished, failed).
 * Step Functions bills one transition per state entered.
 */
export function transitionsPerDecision(asl: Asl, type: string, options: { from?: string } = {}): { transitions: number; path: string[] } {
  const path: string[] = [];
  let name: string | undefined = options.from ?? 'Run';
  for (let guard = 0; name !== undefined && guard < 50; guard++) {
    if (path.includes(name)) break;
    const state: AslState | undefined = asl.States[name];
    if (!state) throw new Error(`no state ${name}`);
    path.push(name);
    if (state.Type === 'Choice') {
      const match: { Next: string } | undefined = (state.Choices ?? []).find((c) => c.StringEquals === type || (c.Or ?? []).some((o) => o.StringEquals === type));
      name = match?.Next ?? state.Default;
      continue;
    }
    if (state.End === true || state.Type === 'Succeed' || state.Type === 'Fail') break;
    name = state.Next;
  }
  return { transitions: path.length, path };
}

/** Task states on a path (each logs 5 history events; other states 2). */
export function tasksOn(asl: Asl, path: readonly string[]): number {
  return path.filter((s) => asl.States[s]?.Type === 'Task').length;
}
