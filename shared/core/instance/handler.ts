import { GenerationFencedError } from '../errors.js';
import type { InstanceMessage } from '../messages.js';
import { runInstanceStep, type QueuedMessage, type StepDeps, type StepStats } from './step.js';

/**
 * One Lambda-style invocation over a batch that may hold several FIFO groups (instances):
 * one atomic step per group; a failing group reports only its own messages as failed
 * (ReportBatchItemFailures), so the others move on.
 */

export interface BatchMessage {
  readonly id: string;
  readonly groupId: string;
  readonly receiveCount: number;
  readonly body: InstanceMessage;
}

export interface BatchOutcome {
  readonly failedIds: string[];
  readonly errors: { readonly instance: string; readonly error: Error }[];
  readonly stats: StepStats[];
}

export async function handleOperatorBatch(deps: StepDeps, batch: readonly BatchMessage[]): Promise<BatchOutcome> {
  const byGroup = new Map<string, QueuedMessage[]>();
  for (const m of batch) {
    const list = byGroup.get(m.groupId) ?? [];
    list.push({ id: m.id, receiveCount: m.receiveCount, body: m.body });
    byGroup.set(m.groupId, list);
  }
  const failedIds: string[] = [];
  const errors: { instance: string; error: Error }[] = [];
  const stats: StepStats[] = [];
  await Promise.all(
    [...byGroup].map(async ([instance, messages]) => {
      try {
        stats.push(await runInstanceStep(deps, instance, messages));
      } catch (error) {
        // A commit fenced by a newer generation: these messages belong to the past; drop them.
        if (error instanceof GenerationFencedError) return;
        failedIds.push(...messages.map((m) => m.id));
        errors.push({ instance, error: error as Error });
      }
    }),
  );
  return { failedIds, errors, stats };
}
