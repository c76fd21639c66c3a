import { GetExecutionHistoryCommand, ListExecutionsCommand, StartExecutionCommand, StopExecutionCommand } from '@aws-sdk/client-sfn';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { wordCount } from '../../examples/word-count.js';
import { Topology } from '../../shared/core/topology.js';
import { WORKFLOW_HISTORY, type RunOutput } from '../../shared/lambda/coordinator-tasks.js';
import { rulesEdge } from '../cloud/rules-edge.js';
import { acknowledge, deploy, drainOperators, finished, visitedStates, type Deployed } from './moto-deploy.js';

/**
 * The synthesized checkpoint workflow, created with CreateStateMachine on moto and EXECUTED by
 * moto's interpreter: its Lambda tasks run the real coordinator handler, DynamoDB and SQS are
 * the local cloud's, the operators run in this process against the real FIFO queues.
 */

describe('the synthesized checkpoint workflow on moto', () => {
  const deployed: Deployed[] = [];
  let cpl: Deployed;
  let tmo: Deployed;
  let rec: Deployed;
  let twice: Deployed;
  let live: Deployed;

  beforeAll(async () => {
    cpl = await deploy('cpl', { trigger: 'manual', timeoutMs: 60_000 });
    tmo = await deploy('tmo', { trigger: 'manual', timeoutMs: 3_000, tolerableFailures: 1 });
    rec = await deploy('rec', { trigger: 'manual', timeoutMs: 60_000 });
    twice = await deploy('twice', { trigger: 'manual', timeoutMs: 60_000 });
    live = await deploy('live', { trigger: 'manual', timeoutMs: 60_000 });
    deployed.push(cpl, tmo, rec, twice, live);
  });
  afterAll(async () => {
    for (const d of deployed) {
      d.stores.destroy();
      d.runtime.stores.destroy();
      await d.lambda.close();
    }
  });

  it('a manual checkpoint completes in the Run task, which reads the acknowledgements; then the coordinator sleeps and the execution ends', async () => {
    const d = cpl;
    await d.stores.sourceLog.append(0, [{ id: 'e1', event: { line: 'barrier state barrier' } }]);
    const { executionArn } = await d.sfn.send(new StartExecutionCommand({ stateMachineArn: d.checkpointsArn, name: 'manual-1', input: JSON.stringify({ manual: true }) }));
    if (!executionArn) throw new Error('no execution');
    // While the loop waits in its invocation, the operators process the barriers and commit their acks.
    await acknowledge(d, 1);
    expect(await finished(d, executionArn)).toBe('SUCCEEDED');
    expect((await d.stores.checkpoints.getCheckpoint(1))?.status).toBe('COMPLETED');
    expect(await visitedStates(d, executionArn)).toEqual(['Init', 'Run', 'Route', 'Asleep']);
    const job = await d.stores.checkpoints.getJob();
    expect(job).toMatchObject({ lastCompletedId: 1, sinksCommittedThrough: 1 });
    expect(job?.coordinator?.owner).toBeUndefined();
    expect(job?.coordinator?.asleepSince).toBeGreaterThan(0);
    expect((await d.stores.sinks.read('counts')).length).toBe(3);
  });

  it('a checkpoint without acknowledgements is aborted at its timeout by the loop and counted', async () => {
    const d = tmo;
    const started = Date.now();
    const { executionArn } = await d.sfn.send(new StartExecutionCommand({ stateMachineArn: d.checkpointsArn, input: JSON.stringify({ manual: true }) }));
    if (!executionArn) throw new Error('no execution');
    expect(await finished(d, executionArn)).toBe('SUCCEEDED');
    expect(Date.now() - started).toBeGreaterThanOrEqual(3_000);
    expect(await d.stores.checkpoints.getCheckpoint(1)).toMatchObject({ status: 'ABORTED', abortReason: 'timed out after 3000 ms' });
    expect((await d.stores.checkpoints.getJob())?.consecutiveFailures).toBe(1);
    expect(await visitedStates(d, executionArn)).toEqual(['Init', 'Run', 'Route', 'Asleep']);
  });

  // moto 5.2.5 cannot run the checkpoint workflow's nested `states:startExecution.sync:2`
  // (States.Runtime, KeyError 'Input'), so the recovery workflow is started directly here.
  it('the recovery workflow rolls every instance back into a new generation; the replay ends with the sink equal to the oracle', async () => {
    const d = rec;
    await d.stores.sourceLog.append(0, [{ id: 'r1', event: { line: 'replay replay' } }]);
    const first = await d.sfn.send(new StartExecutionCommand({ stateMachineArn: d.checkpointsArn, input: JSON.stringify({ manual: true }) }));
    await acknowledge(d, 1);
    expect(await finished(d, first.executionArn as string)).toBe('SUCCEEDED');
    // Work past checkpoint 1 that no checkpoint covers yet: processed, staged, not committed.
    await d.stores.sourceLog.append(0, [{ id: 'r2', event: { line: 'barrier replay state' } }]);
    await d.runtime.stores.transport?.send([{ queue: 'lines', groupId: 'lines#0', dedupId: 'g1:poll:r2', body: { type: 'poll', gen: 1, to: 'lines#0' } }]);
    await drainOperators(d);
    expect(await d.stores.sinks.read('counts')).toHaveLength(2);

    const { executionArn } = await d.sfn.send(new StartExecutionCommand({ stateMachineArn: d.recoveryArn, input: JSON.stringify({ reason: 'restart requested by the test' }) }));
    if (!executionArn) throw new Error('no execution');
    expect(await finished(d, executionArn)).toBe('SUCCEEDED');
    const states = await visitedStates(d, executionArn);
    expect(states).toEqual(expect.arrayContaining(['PlanRestart', 'RestartDelay', 'BumpGeneration', 'RestoreOperators', 'RestoreInstances', 'Resume', 'Recovered']));
    const job = await d.stores.checkpoints.getJob();
    expect(job).toMatchObject({ status: 'RUNNING', generation: 2, lastCompletedId: 1 });
    expect(job?.restarts).toEqual([expect.objectContaining({ toCheckpoint: 1, reason: 'restart requested by the test' })]);
    for (const instance of new Topology(wordCount.build()).allInstances()) {
      expect(await d.stores.stateStore.loadInstance(instance)).toMatchObject({ generation: 2, lastBarrier: 1, epoch: 2 });
    }

    // Replay from checkpoint 1's source offsets, then checkpoint 2 through the workflow: the
    // sink holds exactly what one fault-free run over both lines gives.
    await drainOperators(d);
    const second = await d.sfn.send(new StartExecutionCommand({ stateMachineArn: d.checkpointsArn, name: 'after-recovery', input: JSON.stringify({ manual: true }) }));
    await acknowledge(d, 2);
    expect(await finished(d, second.executionArn as string)).toBe('SUCCEEDED');
    expect((await d.stores.checkpoints.getCheckpoint(2))?.status).toBe('COMPLETED');
    const lines = [{ line: 'replay replay' }, { line: 'barrier replay state' }];
    expect(wordCount.canonical(await d.stores.sinks.read('counts'))).toEqual(wordCount.oracle(lines));
  });

  it('the recovery workflow never restores keyed state while instances of its generation are live (Resume only finishes); the sink equals the oracle', async () => {
    const d = live;
    const lines = [{ line: 'replay replay' }];
    await d.stores.sourceLog.append(0, [{ id: 'l0', event: lines[0] }]);
    const first = await d.sfn.send(new StartExecutionCommand({ stateMachineArn: d.checkpointsArn, input: JSON.stringify({ manual: true }) }));
    await acknowledge(d, 1);
    expect(await finished(d, first.executionArn as string)).toBe('SUCCEEDED');

    // Whenever the workflow restores the counters, look whether the instances of the job's
    // current generation are live; if they are, let them work at that moment (a new line is
    // ingested and polled), as the event source mappings would.
    const store = d.runtime.stores.stateStore;
    const restore = store.restoreOperator.bind(store);
    const restoresWhileLive: number[] = [];
    store.restoreOperator = async (operator, checkpointId, fence) => {
      const restored = await restore(operator, checkpointId, fence);
      const job = await d.stores.checkpoints.getJob();
      const source = await d.stores.stateStore.loadInstance('lines#0');
      if (operator === 'count' && job && source?.generation === job.generation) {
        restoresWhileLive.push(job.generation);
        const line = { line: `state ${'barrier '.repeat(restoresWhileLive.length)}`.trim() };
        lines.push(line);
        await d.stores.sourceLog.append(0, [{ id: `l${lines.length - 1}`, event: line }]);
        await d.runtime.stores.transport?.send([{ queue: 'lines', groupId: 'lines#0', dedupId: `live-${lines.length}`, body: { type: 'poll', gen: job.generation, to: 'lines#0' } }]);
        await drainOperators(d);
      }
      return restored;
    };
    try {
      const { executionArn } = await d.sfn.send(new StartExecutionCommand({ stateMachineArn: d.recoveryArn, input: JSON.stringify({ reason: 'restart requested by the test' }) }));
      expect(await finished(d, executionArn as string)).toBe('SUCCEEDED');
    } finally {
      store.restoreOperator = restore;
    }
    expect(restoresWhileLive).toEqual([]);
    await d.stores.sourceLog.append(0, [{ id: 'l-after', event: { line: 'flink state' } }]);
    lines.push({ line: 'flink state' });
    const job = await d.stores.checkpoints.getJob();
    await d.runtime.stores.transport?.send([{ queue: 'lines', groupId: 'lines#0', dedupId: 'after', body: { type: 'poll', gen: job?.generation ?? 0, to: 'lines#0' } }]);
    await drainOperators(d);
    const second = await d.sfn.send(new StartExecutionCommand({ stateMachineArn: d.checkpointsArn, name: 'after-live', input: JSON.stringify({ manual: true }) }));
    await acknowledge(d, job?.nextCheckpointId ?? 2);
    expect(await finished(d, second.executionArn as string)).toBe('SUCCEEDED');
    expect(wordCount.canonical(await d.stores.sinks.read('counts'))).toEqual(wordCount.oracle(lines));
  });

  it('two recovery executions at once (a rollback and a looping coordinator): a later attempt supersedes the earlier one; the sink equals the oracle', async () => {
    const d = twice;
    await d.stores.sourceLog.append(0, [{ id: 't1', event: { line: 'replay replay' } }]);
    const first = await d.sfn.send(new StartExecutionCommand({ stateMachineArn: d.checkpointsArn, input: JSON.stringify({ manual: true }) }));
    await acknowledge(d, 1);
    expect(await finished(d, first.executionArn as string)).toBe('SUCCEEDED');
    await d.stores.sourceLog.append(0, [{ id: 't2', event: { line: 'barrier replay state' } }]);
    await d.runtime.stores.transport?.send([{ queue: 'lines', groupId: 'lines#0', dedupId: 'g1:poll:t2', body: { type: 'poll', gen: 1, to: 'lines#0' } }]);
    await drainOperators(d);

    const start = async (name: string): Promise<string> => {
      const { executionArn } = await d.sfn.send(new StartExecutionCommand({ stateMachineArn: d.recoveryArn, name, input: JSON.stringify({ reason: `restart by ${name}` }) }));
      if (!executionArn) throw new Error('no execution');
      return executionArn;
    };
    const [a, b] = await Promise.all([start('rollback'), start('coordinator')]);
    expect([await finished(d, a), await finished(d, b)]).toEqual(['SUCCEEDED', 'SUCCEEDED']);
    const visited = [await visitedStates(d, a), await visitedStates(d, b)];
    // Both began an attempt; each attempt after the first has a generation of its own.
    expect(visited.map((states) => states.includes('BumpGeneration'))).toEqual([true, true]);
    const job = await d.stores.checkpoints.getJob();
    expect(job).toMatchObject({ status: 'RUNNING', lastCompletedId: 1 });
    expect(job?.recovery).toBeUndefined();
    expect(job?.generation).toBeGreaterThanOrEqual(3);
    for (const instance of new Topology(wordCount.build()).allInstances()) {
      expect(await d.stores.stateStore.loadInstance(instance)).toMatchObject({ generation: job?.generation, lastBarrier: 1 });
    }

    await drainOperators(d);
    const second = await d.sfn.send(new StartExecutionCommand({ stateMachineArn: d.checkpointsArn, name: 'after-both', input: JSON.stringify({ manual: true }) }));
    const next = job?.nextCheckpointId ?? 2;
    await acknowledge(d, next);
    expect(await finished(d, second.executionArn as string)).toBe('SUCCEEDED');
    const lines = [{ line: 'replay replay' }, { line: 'barrier replay state' }];
    expect(wordCount.canonical(await d.stores.sinks.read('counts'))).toEqual(wordCount.oracle(lines));
  });

  it("Standard's history limit (played by the edge at 150 events here): a looping execution hands over to a successor before it, and the Run task's count is the history Step Functions wrote", async () => {
    const edge = await rulesEdge({ sfnHistoryEvents: 150 });
    // A checkpoint nobody acknowledges, and waits spent in the invocation: each Run spends its 1 s budget, and the workflow runs it again.
    const d = await deploy('hist', { trigger: 'manual', timeoutMs: 600_000 }, { run: { budgetMs: 1_000, maxInvocationWaitMs: 900_000, historyLimit: 150 }, sfnEndpoint: edge.url, wake: true });
    deployed.push(d);
    await d.stores.sourceLog.append(0, [{ id: 'h1', event: { line: 'history' } }]);
    try {
      const { executionArn } = await d.sfn.send(new StartExecutionCommand({ stateMachineArn: d.checkpointsArn, name: 'looping', input: JSON.stringify({ manual: true }) }));
      if (!executionArn) throw new Error('no execution');
      expect(await finished(d, executionArn)).toBe('SUCCEEDED');
      const { events = [] } = await d.sfn.send(new GetExecutionHistoryCommand({ executionArn, maxResults: 1000 }));
      const runs = events.filter((e) => e.type === 'TaskStateExited' && e.stateExitedEventDetails?.name === 'Run');
      const last = JSON.parse(runs.at(-1)?.stateExitedEventDetails?.output ?? '{}') as { run: RunOutput };
      expect(last.run.type).toBe('handoff');
      expect(runs.length).toBeGreaterThan(5);
      expect(events.length).toBeLessThan(150);
      expect(events.length).toBe(last.run.history + WORKFLOW_HISTORY.end);
      expect(events.at(-1)?.type).toBe('ExecutionSucceeded');
      const { executions = [] } = await d.sfn.send(new ListExecutionsCommand({ stateMachineArn: d.checkpointsArn }));
      expect(executions.map((e) => e.name).filter((n) => n !== 'looping')).toEqual([expect.stringMatching(/^next-v\d+$/)]);
      expect(edge.edge.ruleCounts().historyLimitFailures).toBe(0);
    } finally {
      const { executions = [] } = await d.sfn.send(new ListExecutionsCommand({ stateMachineArn: d.checkpointsArn, statusFilter: 'RUNNING' }));
      for (const e of executions) await d.sfn.send(new StopExecutionCommand({ executionArn: e.executionArn }));
      await edge.close();
    }
  });
});
