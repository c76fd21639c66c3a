import type { RemovalPolicy } from 'aws-cdk-lib';
import { Duration, Stack } from 'aws-cdk-lib';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import type { CheckpointConfig } from '../shared/core/config.js';

/**
 * The checkpoint coordinator as two Standard Step Functions workflows (JSONPath), built from
 * the typed constructs. Every decision is the engine's `decideNext`, run by the Decide task;
 * every transition is executed by the engine's CoordinatorDriver in one task state
 * (functions/coordinator/tasks.ts). The states only route.
 *
 * Checkpoint workflow, one round:
 *
 *   Init -> Decide -> Route
 *     trigger           -> Trigger -> ManualConsumed -> Decide
 *     inject-barriers   -> InjectBarriers -> AwaitAcks (.waitForTaskToken, TimeoutSeconds =
 *                          checkpoint timeout) -> Decide;  on timeout/error -> AbortTimedOut -> Decide
 *     complete          -> CompleteCheckpoint (marks COMPLETED, prunes) -> Decide
 *     commit-sinks      -> CommitSinks -> Decide
 *     abort             -> AbortCheckpoint -> Decide
 *     start-recovery,
 *     continue-recovery -> Recover (recovery workflow, .sync) -> RestartConsumed -> Decide
 *     finish            -> Finish -> Finished
 *     wait              -> Handoff? yes -> HandedOver (the next scheduled execution carries on)
 *                                   no  -> WaitForNext (seconds from the decision) -> Decide
 *     failed            -> JobFailed
 *
 *     fail              -> MarkJobFailed -> JobFailed (restart strategy exhausted)
 *
 * Recovery workflow: PlanRestart (restart strategy) -> [exhausted: MarkFailed -> JobFailed]
 *   -> RestartDelay -> BumpGeneration (a new attempt in its own generation) ->
 *   RestoreOperators (Map over vertices) -> RestoreInstances (Map over instances) ->
 *   Resume (finishes only) -> Recovered. Every item carries the attempt's generation; a state
 *   of an attempt that a newer one superseded ends the execution as Superseded.
 *
 * Who sends the task token back: the acknowledgement listener, a function on the job table's
 * DynamoDB stream filtered to ack items (`A#...`). Step commits write the acks; the listener
 * counts them (through the driver's own fact reading) and calls SendTaskSuccess when the last
 * one is in. AwaitAcks itself checks once after storing the token, so acks that beat the token
 * are not missed. This keeps the operators free of Step Functions permissions and latency, and
 * costs nothing while a checkpoint is in flight (no polling task).
 */

export interface CheckpointCoordinatorProps {
  readonly jobName: string;
  readonly checkpoint: CheckpointConfig;
  /** The coordinator task function (functions/coordinator/handler.ts `handler`). */
  readonly fn: lambda.IFunction;
  /** How long one looping execution runs before it hands over to the next scheduled one. */
  readonly loopWindow: Duration;
  readonly logRetention: logs.RetentionDays;
  readonly removalPolicy: RemovalPolicy;
}

const APPLY_RETRY: sfn.RetryProps = { errors: ['States.TaskFailed'], interval: Duration.seconds(1), maxAttempts: 2, backoffRate: 2 };
/** The recovery attempt of a task is no longer the current one (RecoverySupersededError, a literal name that survives minification). */
const SUPERSEDED = 'RecoverySupersededError';
/** Errors that mean "the facts moved on since the decision": decide again. */
const STALE = ['StaleDecisionError', 'ConcurrentStepError'];

export class CheckpointCoordinator extends Construct {
  readonly checkpointStateMachine: sfn.StateMachine;
  readonly recoveryStateMachine: sfn.StateMachine;
  /** TimeoutSeconds of the AwaitAcks state (= the checkpoint timeout). */
  readonly ackTimeout: Duration;

  constructor(scope: Construct, id: string, props: CheckpointCoordinatorProps) {
    super(scope, id);
    const { fn } = props;
    this.ackTimeout = Duration.seconds(Math.max(1, Math.ceil(props.checkpoint.timeoutMs / 1000)));

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

    const restoreInstance = invoke(
      'RestoreInstance',
      { action: 'restore-instance', 'instance.$': '$.instance', 'toCheckpoint.$': '$.toCheckpoint', 'generation.$': '$.generation' },
      sfn.JsonPath.DISCARD,
      'Instance record from its snapshot of the checkpoint, in the new generation',
    );
    restoreInstance.addRetry(APPLY_RETRY);
    const restoreInstances = new sfn.Map(this, 'RestoreInstances', { itemsPath: '$.targets.instances', maxConcurrency: 20, resultPath: sfn.JsonPath.DISCARD });
    restoreInstances.itemProcessor(restoreInstance);
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
      parameters: { consumed: { manual: false, restart: false } },
      comment: 'Execution input ({"manual": true} | {"restart": "reason"} | {"windowSeconds": n}) is read from $$.Execution.Input',
    });
    const decide = invoke(
      'Decide',
      {
        action: 'decide',
        'input.$': '$$.Execution.Input',
        'consumed.$': '$.consumed',
        'startedAt.$': '$$.Execution.StartTime',
      },
      '$.step',
      'decideNext over the facts read from the job table',
    );
    decide.addRetry({ errors: ['States.TaskFailed'], interval: Duration.seconds(1), maxAttempts: 3, backoffRate: 2 });

    const applyPayload = { action: 'apply', 'decision.$': '$.step.decision', 'jobVersion.$': '$.step.jobVersion' };
    const apply = (sid: string, comment: string): tasks.LambdaInvoke => {
      const task = invoke(sid, applyPayload, sfn.JsonPath.DISCARD, comment);
      task.addCatch(decide, { errors: STALE, resultPath: '$.stale' });
      task.addRetry(APPLY_RETRY);
      return task;
    };

    const trigger = apply('Trigger', 'Allocate checkpoint N (min pause and max concurrent were respected by decideNext)');
    const manualConsumed = new sfn.Pass(this, 'ManualConsumed', { result: sfn.Result.fromBoolean(true), resultPath: '$.consumed.manual' });
    const injectBarriers = apply('InjectBarriers', 'Barrier N to every source instance');
    const awaitAcks = new tasks.LambdaInvoke(this, 'AwaitAcks', {
      lambdaFunction: fn,
      integrationPattern: sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
      payload: sfn.TaskInput.fromObject({ action: 'await-acks', 'checkpointId.$': '$.step.checkpointId', token: sfn.JsonPath.taskToken }),
      taskTimeout: sfn.Timeout.duration(this.ackTimeout),
      resultPath: '$.acks',
      comment: 'Waits for every instance to acknowledge checkpoint N; the token is stored on the checkpoint record',
    });
    const abortTimedOut = invoke('AbortTimedOut', { action: 'abort', 'checkpointId.$': '$.step.checkpointId', 'reason.$': '$.step.reason' }, sfn.JsonPath.DISCARD, 'Abort N and count the failure');
    abortTimedOut.addRetry(APPLY_RETRY);
    // A failed AwaitAcks invocation (a throttled read, a cold start's error) is retried before
    // it costs the checkpoint: with no tolerable failures, an abort means a full rollback. The
    // wait running out (States.Timeout, the checkpoint timeout) is never retried.
    awaitAcks.addRetry(APPLY_RETRY);
    awaitAcks.addCatch(abortTimedOut, { errors: ['States.Timeout'], resultPath: '$.error' });
    awaitAcks.addCatch(abortTimedOut, { errors: ['States.ALL'], resultPath: '$.error' });
    abortTimedOut.next(decide);

    const complete = apply('CompleteCheckpoint', 'Mark N COMPLETED and prune versions no retained checkpoint needs');
    const commitSinks = apply('CommitSinks', 'Two-phase commit: publish transactional sink output of completed epochs');
    const abort = apply('AbortCheckpoint', 'Abort N and count the failure');
    const finish = apply('Finish', 'Bounded input fully processed and checkpointed');
    const markJobFailed = apply('MarkJobFailed', 'Restart strategy exhausted (decideNext): job status FAILED with the reason');

    const recover = new tasks.StepFunctionsStartExecution(this, 'Recover', {
      stateMachine: this.recoveryStateMachine,
      integrationPattern: sfn.IntegrationPattern.RUN_JOB,
      associateWithParent: true,
      input: sfn.TaskInput.fromObject({ 'reason.$': '$.step.reason' }),
      resultPath: sfn.JsonPath.DISCARD,
      comment: 'Rollback-replay in the recovery workflow',
    });
    const jobFailed = new sfn.Fail(this, 'JobFailed', { error: 'JobFailed', cause: 'restart strategy exhausted or recovery failed; see the job record' });
    recover.addCatch(jobFailed, { errors: ['States.ALL'], resultPath: '$.error' });
    const restartConsumed = new sfn.Pass(this, 'RestartConsumed', { result: sfn.Result.fromBoolean(true), resultPath: '$.consumed.restart' });

    const finished = new sfn.Succeed(this, 'Finished');
    const waitForNext = new sfn.Wait(this, 'WaitForNext', { time: sfn.WaitTime.secondsPath('$.step.waitSeconds') });
    const handoff = new sfn.Choice(this, 'Handoff').when(sfn.Condition.booleanEquals('$.step.handoff', true), new sfn.Succeed(this, 'HandedOver')).otherwise(waitForNext.next(decide));

    const is = (type: string): sfn.Condition => sfn.Condition.stringEquals('$.step.type', type);
    const route = new sfn.Choice(this, 'Route')
      .when(is('trigger'), trigger.next(manualConsumed).next(decide))
      .when(is('inject-barriers'), injectBarriers.next(awaitAcks).next(decide))
      .when(is('complete'), complete.next(decide))
      .when(is('commit-sinks'), commitSinks.next(decide))
      .when(is('abort'), abort.next(decide))
      .when(sfn.Condition.or(is('start-recovery'), is('continue-recovery')), recover.next(restartConsumed).next(decide))
      .when(is('finish'), finish.next(finished))
      .when(is('fail'), markJobFailed.next(jobFailed))
      .when(is('finished'), finished)
      .when(is('wait'), handoff)
      .otherwise(jobFailed);

    this.checkpointStateMachine = new sfn.StateMachine(this, 'Checkpoints', {
      stateMachineName: `${props.jobName}-checkpoints`,
      stateMachineType: sfn.StateMachineType.STANDARD,
      definitionBody: sfn.DefinitionBody.fromChainable(init.next(decide).next(route)),
      // One execution lives at most one loop window plus one checkpoint's timeout, a recovery and slack.
      timeout: props.loopWindow.plus(this.ackTimeout).plus(Duration.hours(3)),
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
