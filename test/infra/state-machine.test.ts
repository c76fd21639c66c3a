import { describe, expect, it } from 'vitest';
import { definitionOf, resourcesOf, synthStack } from './helpers.js';

const { template } = synthStack({ job: 'word-count', checkpoint: { timeoutMs: 45_000 } }, 'Cairn-sfn');
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

  it('runs the coordinator loop in one task, from the execution name, input and start time, carrying what it served and its history count', () => {
    expect(checkpoints.StartAt).toBe('Init');
    expect(state(checkpoints, 'Init')).toMatchObject({ Type: 'Pass', Parameters: { consumed: { manual: false, restart: false }, history: 3 }, ResultPath: '$.run', Next: 'Run' });
    const run = state(checkpoints, 'Run');
    expect(run.Resource).toMatch(/^\$\{JobCoordinator[A-Z0-9]+\.Arn\}$/);
    expect(run.Parameters).toEqual({
      action: 'run',
      'execution.$': '$$.Execution.Name',
      'input.$': '$$.Execution.Input',
      'consumed.$': '$.run.consumed',
      'startedAt.$': '$$.Execution.StartTime',
      'history.$': '$.run.history',
      'retryCount.$': '$$.State.RetryCount',
    });
    expect(run.ResultPath).toBe('$.run');
    expect(run.Next).toBe('Route');
    // Longer than the function's 15 min: the invocation ends itself (its budget) before.
    expect(run.TimeoutSeconds).toBe(930);
  });

  it('retries a failed invocation of the loop (it carries on from the table)', () => {
    const retries = state(checkpoints, 'Run').Retry as Array<{ ErrorEquals: string[]; MaxAttempts: number }>;
    expect(retries).toContainEqual(expect.objectContaining({ ErrorEquals: ['States.TaskFailed', 'States.Timeout'], MaxAttempts: 5 }));
  });

  it('has no per-checkpoint states: between invocations it only continues, waits, recovers, sleeps or ends', () => {
    expect(Object.keys(checkpoints.States).sort()).toEqual(['Asleep', 'Finished', 'HandedOver', 'Init', 'JobFailed', 'Recover', 'Route', 'Run', 'WaitForNext'].sort());
    const route = state(checkpoints, 'Route');
    const next = Object.fromEntries((route.Choices as Array<{ StringEquals: string; Next: string }>).map((c) => [c.StringEquals, c.Next]));
    expect(next).toEqual({ continue: 'Run', wait: 'WaitForNext', recover: 'Recover', sleep: 'Asleep', handoff: 'HandedOver', finished: 'Finished' });
    expect(route.Default).toBe('JobFailed');
    expect(state(checkpoints, 'WaitForNext')).toMatchObject({ Type: 'Wait', SecondsPath: '$.run.waitSeconds', Next: 'Run' });
    expect(state(checkpoints, 'Recover').Next).toBe('Run');
  });

  it('starts the recovery workflow and waits for it (.sync); a failed recovery fails the job', () => {
    const recover = state(checkpoints, 'Recover');
    expect(recover.Resource).toMatch(/:states:::states:startExecution\.sync:2$/);
    expect((recover.Parameters as { Input: Record<string, string> }).Input).toMatchObject({ 'reason.$': '$.run.reason' });
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
    expect(instances).toMatchObject({ Type: 'Map', ItemsPath: '$.targets.instanceBatches', MaxConcurrency: 10, Next: 'Resume' });
    expect(inner(instances).RestoreInstanceBatch?.Parameters).toEqual({ action: 'restore-instances', 'batch.$': '$.batch', 'toCheckpoint.$': '$.toCheckpoint', 'generation.$': '$.generation' });
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
