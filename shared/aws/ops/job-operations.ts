import { randomUUID } from 'node:crypto';
import { GetEventSourceMappingCommand, LambdaClient, UpdateEventSourceMappingCommand } from '@aws-sdk/client-lambda';
import { GetScheduleCommand, SchedulerClient, UpdateScheduleCommand } from '@aws-sdk/client-scheduler';
import { ListExecutionsCommand, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { GetQueueAttributesCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { pauseJob, requestCheckpoint, requestRollback, resumeJob, updateJob } from '../../core/control.js';
import type { CheckpointRecord, CheckpointStore, JobRecord } from '../../core/ports.js';
import { createAwsStores, type AwsStores } from '../index.js';
import type { JobResources } from './job-resources.js';

/**
 * `cairn status | checkpoints | trigger | pause | resume | rollback` against a running job on
 * AWS (a deployed stack) or on the local cloud. Requests go into the job record first (durable,
 * served by whichever coordinator decides next: shared/core/control.ts); then, where the job
 * has them, the AWS controls act: a coordinator execution is started so the request is served
 * now, event source mappings and the schedule are disabled or enabled.
 */

export interface QueueDepth {
  readonly role: 'ingress' | 'operator' | 'dead-letter';
  readonly name: string;
  readonly visible: number;
  readonly inFlight: number;
}

export interface JobStatusReport {
  readonly resources: JobResources;
  readonly job: JobRecord | undefined;
  readonly checkpoints: readonly CheckpointRecord[];
  readonly queues: readonly QueueDepth[];
  /** Letters in the dead-letter store (the dead-letter function moves every DLQ message there). */
  readonly deadLetters: number;
  /** State of each SQS event source mapping ('Enabled', 'Disabled', 'Updating', ...). */
  readonly eventSourceMappings: readonly { readonly uuid: string; readonly state: string }[];
  readonly schedule?: { readonly name: string; readonly state: string; readonly expression: string };
  /** The newest execution of the checkpoint workflow. */
  readonly coordinator?: { readonly name: string; readonly status: string; readonly startedAt: number };
}

export type FinishedCheckpoint = CheckpointRecord & { readonly status: 'COMPLETED' | 'ABORTED' };

export interface TriggerResult {
  /** Id the checkpoint will get (or got): the job's next id when the request was stored. */
  readonly firstCandidateId: number;
  /** The checkpoint the request started, once finished; undefined if not within the wait. */
  readonly checkpoint: FinishedCheckpoint | undefined;
}

export interface PauseResult {
  /** Pending checkpoints that had not finished within the drain time (they will time out, not counted as failures). */
  readonly pendingLeft: readonly number[];
  readonly mappingsDisabled: number;
  readonly scheduleDisabled: boolean;
}

export interface ResumeResult {
  readonly mappingsEnabled: number;
  readonly scheduleEnabled: boolean;
  readonly executionStarted: boolean;
}

export interface RollbackResult {
  readonly requestedTo: number;
  /** The job after the recovery, or undefined if it had not finished within the wait. */
  readonly job: JobRecord | undefined;
}

export interface JobOperationsOptions {
  readonly credentials?: { accessKeyId: string; secretAccessKey: string };
  /** How often waits re-read the job record. Default 500 ms. */
  readonly pollMs?: number;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export class JobOperations {
  private constructor(
    readonly resources: JobResources,
    private readonly stores: AwsStores,
    private readonly sfn: SFNClient,
    private readonly lambda: LambdaClient,
    private readonly scheduler: SchedulerClient,
    private readonly pollMs: number,
  ) {}

  static async open(resources: JobResources, options: JobOperationsOptions = {}): Promise<JobOperations> {
    const where = {
      ...(resources.endpoint ? { endpoint: resources.endpoint } : {}),
      ...(resources.region ? { region: resources.region } : {}),
      ...(options.credentials ? { credentials: options.credentials } : {}),
    };
    const stores = await createAwsStores({ tableName: resources.tableName, bucket: resources.bucket, ...where });
    return new JobOperations(resources, stores, new SFNClient(where), new LambdaClient(where), new SchedulerClient(where), options.pollMs ?? 500);
  }

  private get checkpointStore(): CheckpointStore {
    return this.stores.checkpoints;
  }

  async status(): Promise<JobStatusReport> {
    const [job, checkpoints, queues, letters, eventSourceMappings, schedule, coordinator] = await Promise.all([
      this.checkpointStore.getJob(),
      this.checkpointStore.listCheckpoints(),
      this.queueDepths(),
      this.stores.deadLetters.list(),
      Promise.all(
        this.resources.eventSourceMappingIds.map(async (uuid) => {
          const mapping = await this.lambda.send(new GetEventSourceMappingCommand({ UUID: uuid }));
          return { uuid, state: mapping.State ?? 'unknown' };
        }),
      ),
      this.scheduleState(),
      this.latestExecution(),
    ]);
    return {
      resources: this.resources,
      job,
      checkpoints: checkpoints.sort((a, b) => a.id - b.id),
      queues,
      deadLetters: letters.length,
      eventSourceMappings,
      ...(schedule ? { schedule } : {}),
      ...(coordinator ? { coordinator } : {}),
    };
  }

  async checkpoints(): Promise<CheckpointRecord[]> {
    return (await this.checkpointStore.listCheckpoints()).sort((a, b) => a.id - b.id);
  }

  /**
   * Requests a checkpoint, wakes the coordinator, and waits up to `waitMs` for it to finish. The
   * request lives in the job record only, where the checkpoint that serves it clears it: the
   * wake's input asks for nothing, so an execution that gets the lease after another one served
   * the request (a looping coordinator was running) triggers no second checkpoint.
   */
  async trigger(options: { waitMs?: number } = {}): Promise<TriggerResult> {
    const job = await updateJob(this.checkpointStore, requestCheckpoint);
    await this.startCoordinator({}, 'trigger');
    const firstCandidateId = job.nextCheckpointId;
    const checkpoint = await this.waitFor(options.waitMs ?? 0, async () => {
      const current = await this.checkpointStore.getJob();
      if (current?.requests?.checkpoint) return undefined;
      // Served: the first checkpoint triggered after the request is the one it asked for.
      const records = await this.checkpoints();
      const served = records.find((c) => c.id >= firstCandidateId);
      return served && (served.status === 'COMPLETED' || served.status === 'ABORTED') ? (served as FinishedCheckpoint) : undefined;
    });
    return { firstCandidateId, checkpoint };
  }

  /**
   * Pauses the job: no new checkpoints; pending ones get `drainMs` to finish while the operators
   * still run; then the event source mappings and the schedule are disabled. Events pushed
   * meanwhile wait in the ingress queue (14 days' retention).
   */
  async pause(options: { drainMs?: number } = {}): Promise<PauseResult> {
    await updateJob(this.checkpointStore, pauseJob);
    const drained = await this.waitFor(options.drainMs ?? 0, async () => ((await this.checkpointStore.getJob())?.pendingCheckpoints.length === 0 ? true : undefined));
    const pendingLeft = drained ? [] : ((await this.checkpointStore.getJob())?.pendingCheckpoints ?? []);
    const mappingsDisabled = await this.setMappings(false);
    const scheduleDisabled = await this.setSchedule('DISABLED');
    return { pendingLeft, mappingsDisabled, scheduleDisabled };
  }

  /** Resumes: mappings and schedule back on, the job record unpaused, a coordinator execution started. */
  async resume(): Promise<ResumeResult> {
    const mappingsEnabled = await this.setMappings(true);
    const scheduleEnabled = await this.setSchedule('ENABLED');
    await updateJob(this.checkpointStore, resumeJob);
    // Start the execution the schedule would start (same input: its loop window), not a one-round one.
    const input = await this.scheduleInput();
    const executionStarted = await this.startCoordinator(input ?? {}, 'resume');
    return { mappingsEnabled, scheduleEnabled, executionStarted };
  }

  /**
   * Rolls the job back to retained checkpoint `toCheckpoint`: the request goes into the job
   * record, the recovery workflow is started (it skips the restart strategy for operator
   * rollbacks), and the call waits up to `waitMs` for the job to run again in a new generation.
   */
  async rollback(toCheckpoint: number, options: { waitMs?: number; reason?: string } = {}): Promise<RollbackResult> {
    const requested = await updateJob(this.checkpointStore, (job) => requestRollback(job, toCheckpoint, options.reason));
    const reason = requested.requests?.rollback?.reason ?? `rollback to ${toCheckpoint}`;
    if (this.resources.recoveryStateMachineArn) {
      await this.sfn.send(new StartExecutionCommand({ stateMachineArn: this.resources.recoveryStateMachineArn, name: executionName('rollback'), input: JSON.stringify({ reason }) }));
    }
    const job = await this.waitFor(options.waitMs ?? 0, async () => {
      const current = await this.checkpointStore.getJob();
      const done = current && current.generation > requested.generation && !current.recovery && !current.requests?.rollback;
      return done || current?.status === 'FAILED' ? current : undefined;
    });
    return { requestedTo: toCheckpoint, job };
  }

  close(): void {
    for (const client of [this.sfn, this.lambda, this.scheduler]) client.destroy();
    this.stores.destroy();
  }

  // ---------- AWS controls ----------

  private async startCoordinator(input: Record<string, unknown>, why: string): Promise<boolean> {
    if (!this.resources.checkpointStateMachineArn) return false;
    await this.sfn.send(new StartExecutionCommand({ stateMachineArn: this.resources.checkpointStateMachineArn, name: executionName(why), input: JSON.stringify(input) }));
    return true;
  }

  private async setMappings(enabled: boolean): Promise<number> {
    await Promise.all(this.resources.eventSourceMappingIds.map((uuid) => this.lambda.send(new UpdateEventSourceMappingCommand({ UUID: uuid, Enabled: enabled }))));
    return this.resources.eventSourceMappingIds.length;
  }

  /** UpdateSchedule replaces the whole schedule: every field is carried over, only State changes. */
  private async setSchedule(state: 'ENABLED' | 'DISABLED'): Promise<boolean> {
    if (!this.resources.scheduleName) return false;
    const current = await this.scheduler.send(new GetScheduleCommand({ Name: this.resources.scheduleName }));
    if (!current.ScheduleExpression || !current.FlexibleTimeWindow || !current.Target) throw new Error(`schedule ${this.resources.scheduleName} has no expression or target`);
    await this.scheduler.send(
      new UpdateScheduleCommand({
        Name: this.resources.scheduleName,
        GroupName: current.GroupName,
        ScheduleExpression: current.ScheduleExpression,
        ScheduleExpressionTimezone: current.ScheduleExpressionTimezone,
        FlexibleTimeWindow: current.FlexibleTimeWindow,
        Target: current.Target,
        Description: current.Description,
        StartDate: current.StartDate,
        EndDate: current.EndDate,
        KmsKeyArn: current.KmsKeyArn,
        ActionAfterCompletion: current.ActionAfterCompletion,
        State: state,
      }),
    );
    return true;
  }

  private async scheduleInput(): Promise<Record<string, unknown> | undefined> {
    if (!this.resources.scheduleName) return undefined;
    const current = await this.scheduler.send(new GetScheduleCommand({ Name: this.resources.scheduleName }));
    return current.Target?.Input ? (JSON.parse(current.Target.Input) as Record<string, unknown>) : undefined;
  }

  private async scheduleState(): Promise<JobStatusReport['schedule']> {
    if (!this.resources.scheduleName) return undefined;
    const s = await this.scheduler.send(new GetScheduleCommand({ Name: this.resources.scheduleName }));
    return { name: this.resources.scheduleName, state: s.State ?? 'unknown', expression: s.ScheduleExpression ?? '' };
  }

  private async latestExecution(): Promise<JobStatusReport['coordinator']> {
    if (!this.resources.checkpointStateMachineArn) return undefined;
    const { executions = [] } = await this.sfn.send(new ListExecutionsCommand({ stateMachineArn: this.resources.checkpointStateMachineArn, maxResults: 10 }));
    const newest = [...executions].sort((a, b) => (b.startDate?.getTime() ?? 0) - (a.startDate?.getTime() ?? 0))[0];
    return newest ? { name: newest.name ?? '', status: newest.status ?? 'unknown', startedAt: newest.startDate?.getTime() ?? 0 } : undefined;
  }

  private async queueDepths(): Promise<QueueDepth[]> {
    const sqs: SQSClient = this.stores.clients.sqs;
    const entries: Array<[QueueDepth['role'], string, string]> = [
      ['ingress', 'ingress', this.resources.ingressQueueUrl],
      ...Object.entries(this.resources.queueUrls).map(([vertex, url]): [QueueDepth['role'], string, string] => ['operator', vertex, url]),
      ...Object.entries(this.resources.deadLetterQueueUrls).map(([name, url]): [QueueDepth['role'], string, string] => ['dead-letter', name, url]),
    ];
    return Promise.all(
      entries.map(async ([role, name, QueueUrl]) => {
        const { Attributes = {} } = await sqs.send(new GetQueueAttributesCommand({ QueueUrl, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }));
        return { role, name, visible: Number(Attributes.ApproximateNumberOfMessages ?? 0), inFlight: Number(Attributes.ApproximateNumberOfMessagesNotVisible ?? 0) };
      }),
    );
  }

  /** Polls `probe` until it returns a value or `waitMs` passes (0: one probe). */
  private async waitFor<T>(waitMs: number, probe: () => Promise<T | undefined>): Promise<T | undefined> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const value = await probe();
      if (value !== undefined || Date.now() >= deadline) return value;
      await sleep(Math.min(this.pollMs, Math.max(1, deadline - Date.now())));
    }
  }
}

/** Execution names must be unique per state machine for 90 days (and moto rejects repeated unnamed ones). */
function executionName(why: string): string {
  return `cairn-${why}-${new Date()
    .toISOString()
    .replace(/[^0-9]/g, '')
    .slice(0, 14)}-${randomUUID().slice(0, 8)}`;
}
