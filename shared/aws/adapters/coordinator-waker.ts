import type { SFNClient } from '@aws-sdk/client-sfn';
import { ExecutionAlreadyExists, StartExecutionCommand } from '@aws-sdk/client-sfn';

/**
 * Starts the job's coordinator (the checkpoint state machine) when something happened that it
 * must act on: events appended while it sleeps, a message in a dead-letter queue, a request of
 * the CLI. The name makes it idempotent: every caller that saw the same occasion passes the
 * same name, and Step Functions starts one execution (a Standard execution's name is unique for
 * 90 days; ExecutionAlreadyExists means another caller already woke it).
 */
export class CoordinatorWaker {
  constructor(
    private readonly sfn: SFNClient,
    readonly stateMachineArn: string,
  ) {}

  /** `name`: 1-80 characters of [A-Za-z0-9_-] (longer or other characters are replaced/cut). */
  async wake(name: string, input: Readonly<Record<string, unknown>> = {}): Promise<{ started: boolean }> {
    try {
      await this.sfn.send(new StartExecutionCommand({ stateMachineArn: this.stateMachineArn, name: executionNameOf(name), input: JSON.stringify(input) }));
      return { started: true };
    } catch (error) {
      if (error instanceof ExecutionAlreadyExists || (error as Error).name === 'ExecutionAlreadyExists') return { started: false };
      throw error;
    }
  }
}

/** A valid Step Functions execution name from any string. */
export function executionNameOf(name: string): string {
  const cleaned = name.replace(/[^A-Za-z0-9_-]/g, '-');
  return (cleaned === '' ? 'wake' : cleaned).slice(0, 80);
}
