import type { RemovalPolicy } from 'aws-cdk-lib';
import { Duration, Stack } from 'aws-cdk-lib';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import type { CheckpointConfig } from '../shared/core/config.js';
import { WORKFLOW_HISTORY } from '../shared/lambda/coordinator-tasks.js';

/**
 * The checkpoint coordinator as two Standard Step Functions workflows (JSONPath), built from
 * the typed constructs.
 *
 * Checkpoint workflow: the coordinator loop runs inside one task, `Run` (CoordinatorTasks.run:
 * decideNext and the CoordinatorDriver's transitions, the acknowledgements read from the table,
 * the timer service's ticks), for up to its budget per invocation. A checkpoint round therefore
 * costs no state transitions; the states only say what happens between invocations:
 *
 *   Init -> Run -> Route
 *     continue -> Run                         (the invocation's budget is spent)
 *     wait     -> WaitForNext -> Run          (the next decision is far off: a Wait bills no compute)
 *     recover  -> Recover (recovery workflow, .sync) -> Run
 *     sleep    -> Asleep                      (nothing to do until input, a dead letter or a request wakes it)
 *     handoff  -> HandedOver                  (another execution holds the lease, or a successor took over)
 *     finished -> Finished;  failed -> JobFailed
 *
 * One execution at a time runs the loop: it holds a lease on the job record, and an execution
 * started meanwhile (the watchdog schedule, a wake-up) leaves its requests on the job record and
 * ends. A sleeping job runs no execution; ingest wakes it when it appends events.
 *
 * Recovery workflow: PlanRestart (restart strategy) -> [exhausted: MarkFailed -> JobFailed]
 *   -> RestartDelay -> BumpGeneration (a new attempt in its own generation) ->
 *   RestoreOperators (Map over vertices) -> RestoreInstances (Map over batches of instances) ->
 *   Resume (finishes only) -> Recovered. Every item carries the attempt's generation; a state
 *   of an attempt that a newer one superseded ends the execution as Superseded.
 */

export interface CheckpointCoordinatorProps {
  readonly jobName: string;
  readonly checkpoint: CheckpointConfig;
  /** The coordinator task function (functions/coordinator/handler.ts `handler`). */
  readonly fn: lambda.IFunction;
  /** The task function's timeout: one `Run` invocation ends before it. */
  readonly fnTimeout: Duration;
  readonly logRetention: logs.RetentionDays;
  readonly removalPolicy: RemovalPolicy;
}

const APPLY_RETRY: sfn.RetryProps = { errors: ['States.TaskFailed'], interval: Duration.seconds(1), maxAttempts: 2, backoffRate: 2 };
/** The recovery attempt of a task is no longer the current one (RecoverySupersededError, a literal name that survives minification). */
const SUPERSEDED = 'RecoverySupersededError';
/** A failed invocation of the loop (a throttled call, a cold start's error, a timeout) is retried: the loop carries on from the table. */
const RUN_RETRY: sfn.RetryProps = { errors: ['States.TaskFailed', 'States.Timeout'], interval: Duration.seconds(2), maxAttempts: WORKFLOW_HISTORY.runRetries, backoffRate: 2 };

export class CheckpointCoordinator extends Construct {
  readonly checkpointStateMachine: sfn.StateMachine;
  readonly recoveryStateMachine: sfn.StateMachine;

  constructor(scope: Construct, id: string, props: CheckpointCoordinatorProps) {
    super(scope, id);
    const { fn } = props;

    const invoke = (sid: string, payload: Record<string, unknown>, resultPath: string, comment: string): tasks.LambdaInvoke =>
      new tasks.LambdaInvoke(this, sid, {
        lambdaFunction: fn,
        payloadResponseOnly: true,
        payload: sfn.TaskInput.fromObject(payload),
        resultPath,
        comment,
      });

    // ---------- recovery workflow ----------
    const planRestart = invoke('PlanRestart', { action: 'plan-restart', 'reason.$': '$.reason' }, '$.plan', 'The restart strategy decides: restart after a delay, or fail the job');
    planRestart.addRetry(APPLY_RETRY);
    const markFailed = invoke('MarkFailed', { action: 'mark-failed', 'reason.$': '$.plan.reason' }, sfn.JsonPath.DISCARD, 'Restart strategy exhausted: job status FAILED');
    markFailed.addRetry(APPLY_RETRY);
    const recoveryFailed = new sfn.Fail(this, 'RecoveryJobFailed', { error: 'JobFailed', causePath: '$.plan.reason' });
    const restartDelay = new sfn.Wait(this, 'RestartDelay', { time: sfn.WaitTime.secondsPath('$.plan.delaySeconds') });
    const bump = invoke('BumpGeneration', { action: 'start-recovery', 'reason.$': '$.plan.reason' }, '$.targets', 'Generation + 1: every message and commit of the old generation is fenced off');
    bump.addRetry(APPLY_RETRY);

    // No PurgeQueue: on AWS a purge takes up to 60 s and deletes the messages sent meanwhile,
    // which would be the new generation's polls, ticks and barriers (then ack timeouts, another
    // rollback, another purge). The old generation's messages are fenced and dropped instead.

    // A newer attempt (a retried or concurrent BumpGeneration) took over: this one stops, successfully.
    const superseded = new sfn.Succeed(this, 'Superseded', { comment: 'A newer recovery attempt (generation) took over, or the recovery already finished' });
    const restoreOperator = invoke(
      'RestoreOperator',
      { action: 'restore-operator', 'vertex.$': '$.vertex', 'toCheckpoint.$': '$.toCheckpoint', 'generation.$': '$.generation' },
      sfn.JsonPath.DISCARD,
      'Keyed state back to the checkpoint; later sink epochs discarded and withdrawn',
    );
    restoreOperator.addRetry(APPLY_RETRY);
    const restoreOperators = new sfn.Map(this, 'RestoreOperators', { itemsPath: '$.targets.vertices', maxConcurrency: 10, resultPath: sfn.JsonPath.DISCARD });
    restoreOperators.itemProcessor(restoreOperator);
    restoreOperators.addCatch(superseded, { errors: [SUPERSEDED], resultPath: '$.superseded' });

    // One iteration per batch of instances (INSTANCES_PER_RESTORE_TASK), so large jobs stay far below the history and payload limits.
    const restoreInstanceBatch = invoke(
      'RestoreInstanceBatch',
      { action: 'restore-instances', 'batch.$': '$.batch', 'toCheckpoint.$': '$.toCheckpoint', 'generation.$': '$.generation' },
      sfn.JsonPath.DISCARD,
      'Instance records of one batch from their snapshots of the checkpoint, in the new generation',
    );
    restoreInstanceBatch.addRetry(APPLY_RETRY);
    const restoreInstances = new sfn.Map(this, 'RestoreInstances', { itemsPath: '$.targets.instanceBatches', maxConcurrency: 10, resultPath: sfn.JsonPath.DISCARD });
    restoreInstances.itemProcessor(restoreInstanceBatch);
    restoreInstances.addCatch(superseded, { errors: [SUPERSEDED], resultPath: '$.superseded' });

    const resume = invoke(
      'Resume',
      { action: 'resume', 'generation.$': '$.targets.generation' },
      '$.resumed',
      'Only finishes the attempt (never restores again): job RUNNING, sources polled from their restored offsets, replay ticks sent',
    );
    resume.addRetry(APPLY_RETRY);
    resume.addCatch(superseded, { errors: [SUPERSEDED], resultPath: '$.superseded' });

    const recoveryDefinition = planRestart.next(
      new sfn.Choice(this, 'RestartAllowed')
        .when(sfn.Condition.stringEquals('$.plan.action', 'fail'), markFailed.next(recoveryFailed))
        .otherwise(restartDelay.next(bump).next(restoreOperators).next(restoreInstances).next(resume).next(new sfn.Succeed(this, 'Recovered'))),
    );

    this.recoveryStateMachine = new sfn.StateMachine(this, 'Recovery', {
      stateMachineName: `${props.jobName}-recovery`,
      stateMachineType: sfn.StateMachineType.STANDARD,
      definitionBody: sfn.DefinitionBody.fromChainable(recoveryDefinition),
      timeout: Duration.hours(2),
      tracingEnabled: true,
      logs: { destination: this.logGroup('RecoveryLogs', props), level: sfn.LogLevel.ALL, includeExecutionData: true },
      comment: `Cairn ${props.jobName}: rollback to the last completed checkpoint with a restart strategy`,
    });

    // ---------- checkpoint workflow ----------
    const init = new sfn.Pass(this, 'Init', {
      // history: the events so far, carried by Run, which hands over before Standard's limit (WORKFLOW_HISTORY).
      parameters: { consumed: { manual: false, restart: false }, history: WORKFLOW_HISTORY.start },
      resultPath: '$.run',
      comment: 'Execution input ({"manual": true} | {"restart": "reason"} | {}) is read from $$.Execution.Input',
    });
    const run = new tasks.LambdaInvoke(this, 'Run', {
      lambdaFunction: fn,
      payloadResponseOnly: true,
      payload: sfn.TaskInput.fromObject({
        action: 'run',
        'execution.$': '$$.Execution.Name',
        'input.$': '$$.Execution.Input',
        'consumed.$': '$.run.consumed',
        'startedAt.$': '$$.Execution.StartTime',
        'history.$': '$.run.history',
        'retryCount.$': '$$.State.RetryCount',
      }),
      resultPath: '$.run',
      taskTimeout: sfn.Timeout.duration(props.fnTimeout.plus(Duration.seconds(30))),
      comment: 'The coordinator loop for one invocation (decide, execute, read acknowledgements, tick)',
    });
    run.addRetry(RUN_RETRY);

    const recover = new tasks.StepFunctionsStartExecution(this, 'Recover', {
      stateMachine: this.recoveryStateMachine,
      integrationPattern: sfn.IntegrationPattern.RUN_JOB,
      associateWithParent: true,
      input: sfn.TaskInput.fromObject({ 'reason.$': '$.run.reason' }),
      resultPath: sfn.JsonPath.DISCARD,
      comment: 'Rollback-replay in the recovery workflow',
    });
    const jobFailed = new sfn.Fail(this, 'JobFailed', { error: 'JobFailed', cause: 'restart strategy exhausted or recovery failed; see the job record' });
    recover.addCatch(jobFailed, { errors: ['States.ALL'], resultPath: '$.error' });
    const waitForNext = new sfn.Wait(this, 'WaitForNext', { time: sfn.WaitTime.secondsPath('$.run.waitSeconds') });

    const is = (type: string): sfn.Condition => sfn.Condition.stringEquals('$.run.type', type);
    const route = new sfn.Choice(this, 'Route')
      .when(is('continue'), run)
      .when(is('wait'), waitForNext.next(run))
      .when(is('recover'), recover.next(run))
      .when(is('sleep'), new sfn.Succeed(this, 'Asleep', { comment: 'Nothing to do: ingest, a dead letter or the CLI wakes the coordinator' }))
      .when(is('handoff'), new sfn.Succeed(this, 'HandedOver'))
      .when(is('finished'), new sfn.Succeed(this, 'Finished'))
      .otherwise(jobFailed);
    run.next(route);

    this.checkpointStateMachine = new sfn.StateMachine(this, 'Checkpoints', {
      stateMachineName: `${props.jobName}-checkpoints`,
      stateMachineType: sfn.StateMachineType.STANDARD,
      definitionBody: sfn.DefinitionBody.fromChainable(init.next(run)),
      // An execution hands over to a successor after 6 h (CoordinatorTasks' lifetime); a recovery and slack on top.
      timeout: Duration.hours(12),
      tracingEnabled: true,
      logs: { destination: this.logGroup('CheckpointLogs', props), level: sfn.LogLevel.ALL, includeExecutionData: true },
      comment: `Cairn ${props.jobName}: checkpoint coordinator`,
    });
    this.checkpointStateMachine.node.addDependency(this.recoveryStateMachine);
  }

  private logGroup(id: string, props: CheckpointCoordinatorProps): logs.LogGroup {
    return new logs.LogGroup(this, id, {
      logGroupName: `/aws/vendedlogs/states/${Stack.of(this).stackName}-${props.jobName}-${id}`,
      retention: props.logRetention,
      removalPolicy: props.removalPolicy,
    });
  }
}
