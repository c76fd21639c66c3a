import { describe, expect, it } from 'vitest';
import { definitionOf, resourcesOf, synthStack } from './helpers.js';

const { stack, template } = synthStack({ job: 'word-count', checkpoint: { timeoutMs: 45_000 } }, 'Cairn-sfn');
const machines = resourcesOf(template, 'AWS::StepFunctions::StateMachine');
const byName = (suffix: string): ReturnType<typeof definitionOf> & { props: Record<string, unknown> } => {
  const found = machines.find(([, p]) => String(p.StateMachineName).endsWith(suffix));
  if (!found) throw new Error(`no state machine *${suffix}`);
  return { ...definitionOf(found[1]), props: found[1] };
};
const checkpoints = byName('-checkpoints');
const recovery = byName('-recovery');
type State = Record<string, unknown>;
const state = (def: { States: Record<string, State> }, name: string): State => {
  const s = def.States[name];
  if (!s) throw new Error(`no state ${name}`);
  return s;
};
/** States of a Map's item processor. */
const inner = (map: State): Record<string, State> => (map.ItemProcessor as { States: Record<string, State> }).States;

describe('checkpoint workflow', () => {
  it('is a Standard workflow in JSONPath (moto has no JSONata) with logging and tracing', () => {
    expect(checkpoints.props.StateMachineType).toBe('STANDARD');
    expect(checkpoints.QueryLanguage ?? 'JSONPath').toBe('JSONPath');
    expect(checkpoints.props.TracingConfiguration).toEqual({ Enabled: true });
    expect((checkpoints.props.LoggingConfiguration as { Level: string }).Level).toBe('ALL');
    expect(checkpoints.TimeoutSeconds).toBeGreaterThan(45);
  });

  it('waits for the acknowledgements with a task token for exactly the checkpoint timeout', () => {
    const awaitAcks = state(checkpoints, 'AwaitAcks');
    expect(awaitAcks.Resource).toMatch(/:states:::lambda:invoke\.waitForTaskToken$/);
    expect(awaitAcks.TimeoutSeconds).toBe(45);
    expect(stack.job.coordinator.ackTimeout.toSeconds()).toBe(45);
    expect((awaitAcks.Parameters as { Payload: Record<string, string> }).Payload).toEqual({ action: 'await-acks', 'checkpointId.$': '$.step.checkpointId', 'token.$': '$$.Task.Token' });
    expect(awaitAcks.Next).toBe('Decide');
  });

  it('retries a failed AwaitAcks invocation before aborting, and never retries the timeout', () => {
    const retries = state(checkpoints, 'AwaitAcks').Retry as Array<{ ErrorEquals: string[]; MaxAttempts: number }>;
    expect(retries).toContainEqual(expect.objectContaining({ ErrorEquals: ['States.TaskFailed'], MaxAttempts: 2 }));
    expect(retries.flatMap((r) => r.ErrorEquals)).not.toContain('States.Timeout');
    expect(retries.flatMap((r) => r.ErrorEquals)).not.toContain('States.ALL');
  });

  it('aborts the checkpoint (and counts it) when the wait times out or fails', () => {
    const catches = state(checkpoints, 'AwaitAcks').Catch as Array<{ ErrorEquals: string[]; Next: string }>;
    expect(catches[0]).toMatchObject({ ErrorEquals: ['States.Timeout'], Next: 'AbortTimedOut' });
    expect(catches[1]).toMatchObject({ ErrorEquals: ['States.ALL'], Next: 'AbortTimedOut' });
    const abort = state(checkpoints, 'AbortTimedOut');
    expect(abort.Parameters).toEqual({ action: 'abort', 'checkpointId.$': '$.step.checkpointId', 'reason.$': '$.step.reason' });
    expect(abort.Next).toBe('Decide');
    expect(abort.Retry).toEqual(expect.arrayContaining([expect.objectContaining({ ErrorEquals: ['States.TaskFailed'], MaxAttempts: 2 })]));
  });

  it('routes every decision of decideNext to its own transition state', () => {
    const route = state(checkpoints, 'Route');
    const choices = (route.Choices as Array<Record<string, unknown>>).map((c) => JSON.stringify(c));
    for (const type of ['trigger', 'inject-barriers', 'complete', 'commit-sinks', 'abort', 'start-recovery', 'continue-recovery', 'finish', 'finished', 'wait', 'fail']) {
      expect(
        choices.some((c) => c.includes(`"${type}"`)),
        type,
      ).toBe(true);
    }
    expect(route.Default).toBe('JobFailed');
    expect(state(checkpoints, 'InjectBarriers').Next).toBe('AwaitAcks');
    expect(state(checkpoints, 'Trigger').Next).toBe('ManualConsumed');
    // An exhausted restart strategy (decideNext's 'fail') marks the job FAILED before the execution fails.
    expect(state(checkpoints, 'MarkJobFailed').Next).toBe('JobFailed');
    for (const name of ['Trigger', 'InjectBarriers', 'CompleteCheckpoint', 'CommitSinks', 'AbortCheckpoint', 'Finish', 'MarkJobFailed']) {
      const s = state(checkpoints, name);
      expect(s.Parameters, name).toEqual({ action: 'apply', 'decision.$': '$.step.decision', 'jobVersion.$': '$.step.jobVersion' });
      // A stale decision goes back to Decide; transient failures are retried.
      expect(s.Catch, name).toEqual([expect.objectContaining({ ErrorEquals: ['StaleDecisionError', 'ConcurrentStepError'], Next: 'Decide' })]);
      expect(s.Retry, name).toEqual(expect.arrayContaining([expect.objectContaining({ ErrorEquals: ['States.TaskFailed'] })]));
    }
  });

  it('decides with retries, from the execution input and start time', () => {
    const decide = state(checkpoints, 'Decide');
    expect(decide.Parameters).toEqual({ action: 'decide', 'input.$': '$$.Execution.Input', 'consumed.$': '$.consumed', 'startedAt.$': '$$.Execution.StartTime' });
    expect(decide.Retry).toEqual(expect.arrayContaining([expect.objectContaining({ ErrorEquals: ['States.TaskFailed'], MaxAttempts: 3, BackoffRate: 2 })]));
  });

  it('loops with a Wait for the seconds the decision names, or hands over when the window is over', () => {
    expect(state(checkpoints, 'WaitForNext')).toMatchObject({ Type: 'Wait', SecondsPath: '$.step.waitSeconds', Next: 'Decide' });
    expect(state(checkpoints, 'Handoff').Choices).toEqual([{ Variable: '$.step.handoff', BooleanEquals: true, Next: 'HandedOver' }]);
  });

  it('starts the recovery workflow and waits for it (.sync); a failed recovery fails the job', () => {
    const recover = state(checkpoints, 'Recover');
    expect(recover.Resource).toMatch(/:states:::states:startExecution\.sync:2$/);
    expect(recover.Catch).toEqual([expect.objectContaining({ ErrorEquals: ['States.ALL'], Next: 'JobFailed' })]);
    expect(state(checkpoints, 'JobFailed').Type).toBe('Fail');
  });
});

describe('recovery workflow', () => {
  it('plans the restart with the restart strategy and fails the job when it is exhausted', () => {
    expect(recovery.StartAt).toBe('PlanRestart');
    const allowed = state(recovery, 'RestartAllowed');
    expect(allowed.Choices).toEqual([{ Variable: '$.plan.action', StringEquals: 'fail', Next: 'MarkFailed' }]);
    expect(allowed.Default).toBe('RestartDelay');
    expect(state(recovery, 'MarkFailed').Next).toBe('RecoveryJobFailed');
    expect(state(recovery, 'RestartDelay')).toMatchObject({ Type: 'Wait', SecondsPath: '$.plan.delaySeconds', Next: 'BumpGeneration' });
  });

  it('bumps the generation, restores operators and every instance (Map), then resumes; it never purges a queue', () => {
    // A purge on AWS deletes for up to 60 s what is sent after it: the new generation's first messages.
    expect(state(recovery, 'BumpGeneration').Next).toBe('RestoreOperators');
    expect(JSON.stringify(recovery)).not.toMatch(/purge/i);
    expect(JSON.stringify(template.toJSON())).not.toContain('sqs:PurgeQueue');
    expect(state(recovery, 'RestoreOperators')).toMatchObject({ Type: 'Map', ItemsPath: '$.targets.vertices', Next: 'RestoreInstances' });
    const instances = state(recovery, 'RestoreInstances');
    expect(instances).toMatchObject({ Type: 'Map', ItemsPath: '$.targets.instances', MaxConcurrency: 20, Next: 'Resume' });
    expect(inner(instances).RestoreInstance?.Parameters).toEqual({ action: 'restore-instance', 'instance.$': '$.instance', 'toCheckpoint.$': '$.toCheckpoint', 'generation.$': '$.generation' });
    expect(state(recovery, 'Resume').Next).toBe('Recovered');
    expect(recovery.TimeoutSeconds).toBe(7200);
  });

  it("every restore step carries the attempt's generation; a superseded attempt ends as Superseded, and Resume only finishes", () => {
    expect(inner(state(recovery, 'RestoreOperators')).RestoreOperator?.Parameters).toEqual({
      action: 'restore-operator',
      'vertex.$': '$.vertex',
      'toCheckpoint.$': '$.toCheckpoint',
      'generation.$': '$.generation',
    });
    expect(state(recovery, 'Resume').Parameters).toEqual({ action: 'resume', 'generation.$': '$.targets.generation' });
    for (const name of ['RestoreOperators', 'RestoreInstances', 'Resume']) {
      expect(state(recovery, name).Catch, name).toEqual([{ ErrorEquals: ['RecoverySupersededError'], ResultPath: '$.superseded', Next: 'Superseded' }]);
    }
    expect(state(recovery, 'Superseded').Type).toBe('Succeed');
  });
});
