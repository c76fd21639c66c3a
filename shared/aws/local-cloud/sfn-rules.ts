import { GetExecutionHistoryCommand, ListExecutionsCommand, SFNClient, StopExecutionCommand } from '@aws-sdk/client-sfn';
import { parseJson, withJsonBody, type AwsRuleCounts, type EdgeResponse, type Forward, type ResolvedAwsRules } from './aws-rules.js';
import type { BackendAddress } from './edge-router.js';

/**
 * Step Functions' rule that moto's interpreter does not play, applied at the edge: a Standard
 * execution whose history reaches 25,000 events fails. AWS writes the failure as event 25,000
 * (`ExecutionFailed`, `States.Runtime`, "The execution reached the maximum number of history
 * events (25000)."), event 24,999 being the last one the machine produced.
 *
 * moto cannot be told, so the edge watches: every `watchMs` it asks moto for the running
 * executions of the state machines created through it, and stops (StopExecution) one whose
 * history has reached the limit. moto then reports it ABORTED, with the events it produced
 * meanwhile; the edge answers DescribeExecution, ListExecutions and GetExecutionHistory as
 * AWS would: FAILED, with the history cut at the limit and the failure as its last event.
 * The cut is late by up to one watch period (what the machine did in it did happen).
 *
 * moto also ignores GetExecutionHistory's paging; the edge pages as AWS does (pageOf).
 */

type Input = Record<string, unknown>;

export const HISTORY_LIMIT_ERROR = 'States.Runtime';
export const historyLimitCause = (limit: number): string => `The execution reached the maximum number of history events (${limit}).`;

interface Watched {
  readonly region: string;
  /** The caller's access key id: moto's account follows it. */
  readonly accessKeyId: string;
}

interface Failure {
  readonly error: string;
  readonly cause: string;
  /** Epoch seconds. */
  readonly stopDate: number;
}

interface HistoryEvent {
  id?: number;
  previousEventId?: number;
  type?: string;
  timestamp?: number;
  [detail: string]: unknown;
}

const PAGE_TOKEN = 'cairn-edge:';

/**
 * GetExecutionHistory's paging as AWS does it (`reverseOrder`, `maxResults` up to 1,000, then
 * `nextToken`); moto ignores all three and returns every event.
 */
export function pageOf(events: readonly HistoryEvent[], input: Input): { events: HistoryEvent[]; nextToken?: string } {
  const ordered = input.reverseOrder === true ? [...events].reverse() : events;
  const token = typeof input.nextToken === 'string' && input.nextToken.startsWith(PAGE_TOKEN) ? input.nextToken : undefined;
  const start = token ? Number(token.slice(PAGE_TOKEN.length)) : 0;
  const size = typeof input.maxResults === 'number' && input.maxResults > 0 ? Math.min(input.maxResults, 1000) : 1000;
  const end = start + size;
  return { events: ordered.slice(start, end), ...(end < ordered.length ? { nextToken: `${PAGE_TOKEN}${end}` } : {}) };
}

export class SfnRules {
  /** State machine ARN -> how to ask moto about it. */
  private readonly machines = new Map<string, Watched>();
  /** Execution ARN -> the failure the rule gave it. */
  private readonly failed = new Map<string, Failure>();
  private readonly clients = new Map<string, SFNClient>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly rules: ResolvedAwsRules,
    private readonly counts: AwsRuleCounts,
    /** moto, where the watcher's own calls go (not through the edge). */
    private readonly moto: () => BackendAddress | undefined,
    private readonly watchMs = 200,
  ) {}

  /** The rules for a request signed with `accessKeyId` (a state machine it creates is watched with it). */
  forCaller(accessKeyId: string): { handle: (op: string, text: string, forward: Forward) => Promise<EdgeResponse> } {
    return { handle: (op, text, forward) => this.handle(op, text, accessKeyId, forward) };
  }

  private async handle(op: string, text: string, accessKeyId: string, forward: Forward): Promise<EdgeResponse> {
    let input: Input;
    try {
      input = JSON.parse(text) as Input;
    } catch {
      return forward(text);
    }
    // moto answers GetExecutionHistory with every event, whatever the paging: the edge pages (pageOf).
    const response = await forward(op === 'GetExecutionHistory' ? JSON.stringify({ executionArn: input.executionArn }) : text);
    if (response.status !== 200) return response;
    const output = parseJson(response);
    switch (op) {
      case 'CreateStateMachine': {
        const arn = output.stateMachineArn;
        if (typeof arn === 'string' && this.rules.sfnHistoryEvents > 0) this.watch(arn, accessKeyId);
        return response;
      }
      case 'DescribeExecution': {
        const failure = this.failed.get(String(input.executionArn));
        return failure ? withJsonBody(response, { ...output, status: 'FAILED', error: failure.error, cause: failure.cause, stopDate: failure.stopDate }) : response;
      }
      case 'ListExecutions': {
        if (this.failed.size === 0) return response;
        // moto holds the rule's executions as ABORTED: a FAILED filter finds them there.
        const aborted = input.statusFilter === 'FAILED' ? parseJson(await forward(JSON.stringify({ ...input, statusFilter: 'ABORTED', nextToken: undefined }))) : {};
        const ours = ((aborted.executions ?? []) as Array<{ executionArn?: string }>).filter((e) => e.executionArn !== undefined && this.failed.has(e.executionArn));
        const listed = this.listed(input, output);
        return withJsonBody(response, { ...listed, executions: [...listed.executions, ...this.listed({}, { executions: ours }).executions] });
      }
      case 'GetExecutionHistory': {
        const failure = this.failed.get(String(input.executionArn));
        const events = (output.events ?? []) as HistoryEvent[];
        return withJsonBody(response, { ...output, ...pageOf(failure ? this.cut(events, failure) : events, input) });
      }
      default:
        return response;
    }
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    for (const client of this.clients.values()) client.destroy();
  }

  private watch(stateMachineArn: string, accessKeyId: string): void {
    this.machines.set(stateMachineArn, { region: stateMachineArn.split(':')[3] ?? 'us-east-1', accessKeyId });
    if (!this.timer && !this.closed) this.schedule();
  }

  private schedule(): void {
    this.timer = setTimeout(() => {
      void this.sweep()
        .catch(() => undefined)
        .finally(() => {
          if (!this.closed) this.schedule();
        });
    }, this.watchMs);
    this.timer.unref();
  }

  /** Stops every watched execution whose history has reached the limit. */
  private async sweep(): Promise<void> {
    const limit = this.rules.sfnHistoryEvents;
    for (const [stateMachineArn, watched] of this.machines) {
      const sfn = this.client(watched);
      if (!sfn) return;
      let running;
      try {
        running = await sfn.send(new ListExecutionsCommand({ stateMachineArn, statusFilter: 'RUNNING', maxResults: 1000 }));
      } catch (error) {
        if ((error as Error).name === 'StateMachineDoesNotExist') this.machines.delete(stateMachineArn);
        continue;
      }
      for (const { executionArn } of running.executions ?? []) {
        if (!executionArn || this.failed.has(executionArn)) continue;
        // moto returns the whole history at once.
        const { events = [] } = await sfn.send(new GetExecutionHistoryCommand({ executionArn }));
        if (events.length < limit) continue;
        const failure: Failure = { error: HISTORY_LIMIT_ERROR, cause: historyLimitCause(limit), stopDate: Date.now() / 1000 };
        this.failed.set(executionArn, failure);
        this.counts.historyLimitFailures++;
        await sfn.send(new StopExecutionCommand({ executionArn, error: failure.error, cause: failure.cause }));
      }
    }
  }

  private client(watched: Watched): SFNClient | undefined {
    const moto = this.moto();
    if (!moto) return undefined;
    const key = `${watched.region}/${watched.accessKeyId}`;
    let client = this.clients.get(key);
    if (!client) {
      client = new SFNClient({ endpoint: `http://${moto.host}:${moto.port}`, region: watched.region, credentials: { accessKeyId: watched.accessKeyId, secretAccessKey: 'local-cloud' } });
      this.clients.set(key, client);
    }
    return client;
  }

  /** ListExecutions as AWS answers it: the rule's executions FAILED (and filtered by that status). */
  private listed(input: Input, output: Input): Input & { executions: unknown[] } {
    const executions = ((output.executions ?? []) as Array<{ executionArn?: string; status?: string }>).map((e) => {
      const failure = e.executionArn === undefined ? undefined : this.failed.get(e.executionArn);
      return failure ? { ...e, status: 'FAILED', stopDate: failure.stopDate } : e;
    });
    const filter = input.statusFilter;
    return { ...output, executions: typeof filter === 'string' ? executions.filter((e) => e.status === filter) : executions };
  }

  /** The events AWS would have kept: none past the limit, the limit's own event the failure. */
  private cut(events: readonly HistoryEvent[], failure: Failure): HistoryEvent[] {
    const limit = this.rules.sfnHistoryEvents;
    const out: HistoryEvent[] = [];
    for (const event of events) {
      const id = event.id ?? 0;
      if (id > limit) continue;
      if (id < limit) out.push(event);
      else
        out.push({
          id,
          previousEventId: limit - 1,
          type: 'ExecutionFailed',
          timestamp: event.timestamp ?? failure.stopDate,
          executionFailedEventDetails: { error: failure.error, cause: failure.cause },
        });
    }
    return out;
  }
}
