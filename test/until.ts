/**
 * Waits in tests whose deadline follows progress, not wall time: `until` polls `probe` until it
 * returns a value, and fails only once `progress` (a mark of the work being done: a counter, a
 * history length, the output so far) has not changed for `stallMs`. A slow machine makes the
 * wait longer, never a failure; a stuck run still fails, with what it was waiting for.
 */
import { DescribeExecutionCommand, GetExecutionHistoryCommand, type DescribeExecutionCommandOutput, type SFNClient } from '@aws-sdk/client-sfn';

export interface UntilOptions {
  /** Fail after this long without progress. @default 30_000 */
  readonly stallMs?: number;
  /** A mark of progress, compared with `!==` (JSON-encode objects). @default nothing: the deadline is then stallMs from the start. */
  readonly progress?: () => unknown;
  /** @default 200 */
  readonly pollMs?: number;
}

export class NoProgressError extends Error {
  override readonly name = 'NoProgressError';
  constructor(
    readonly waitingFor: string,
    readonly stallMs: number,
  ) {
    super(`no progress for ${stallMs} ms waiting for ${waitingFor}`);
  }
}

export async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, options: UntilOptions = {}): Promise<T> {
  const stallMs = options.stallMs ?? 30_000;
  let mark = await options.progress?.();
  let progressedAt = Date.now();
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    const now = await options.progress?.();
    if (now !== mark) {
      mark = now;
      progressedAt = Date.now();
    } else if (Date.now() - progressedAt > stallMs) throw new NoProgressError(what, stallMs);
    await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 200));
  }
}

/**
 * A progress mark for a Step Functions execution: its history's size and newest event id
 * (moto ignores `maxResults` and `reverseOrder`, so both are kept in the mark).
 */
export async function historyMark(sfn: SFNClient, executionArn: string): Promise<string> {
  const { events = [] } = await sfn.send(new GetExecutionHistoryCommand({ executionArn, reverseOrder: true, maxResults: 1000 }));
  return `${events.length}:${events[0]?.id ?? 0}`;
}

/** Waits until a Step Functions execution has ended; fails only once its history stops growing for `stallMs`. */
export function executionEnded(sfn: SFNClient, executionArn: string, stallMs?: number): Promise<DescribeExecutionCommandOutput> {
  return until(
    `execution ${executionArn} to end`,
    async () => {
      const d = await sfn.send(new DescribeExecutionCommand({ executionArn }));
      return d.status === 'RUNNING' ? undefined : d;
    },
    { progress: () => historyMark(sfn, executionArn), ...(stallMs === undefined ? {} : { stallMs }) },
  );
}
