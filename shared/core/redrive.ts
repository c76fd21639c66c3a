import { ConcurrentStepError } from './errors.js';
import type { CheckpointStore, Clock, DeadLetter, DeadLetterStore, JobRecord } from './ports.js';

/**
 * The dead-letter queues' consumer: SQS moves a message that failed maxReceiveCount receives to
 * its queue's dead-letter queue; this keeps it as a dead letter (reason `redriven`, its body as
 * the payload, the queue it came from) and, when it is an operator message of the job's current
 * generation (input the running job has lost), reports a failure on the job record. The next
 * coordinator decision serves it with a rollback (restart strategy applies).
 *
 * Consuming the queue, rather than alarming on its depth, is what makes every incident count:
 * a CloudWatch alarm tells EventBridge only when its state changes, so with messages left in a
 * DLQ it stays in ALARM and a later dead message would trigger nothing. Messages of an older
 * generation are kept but report nothing: the rollback that fenced them replays their input.
 */

/** A message as it arrives from a dead-letter queue. */
export interface RedrivenMessage {
  /** The vertex whose queue the message left, or `ingress`. */
  readonly queue: string;
  readonly messageId: string;
  readonly body: string;
  /** Receives before the redrive (SQS ApproximateReceiveCount). */
  readonly receiveCount: number;
  /** Ingress messages: the event id the message carried (kept with the letter for a redrive). */
  readonly eventId?: string;
}

export interface RedriveDeps {
  readonly checkpoints: CheckpointStore;
  readonly deadLetters: DeadLetterStore;
  readonly clock: Clock;
}

export interface RedriveOutcome {
  readonly stored: number;
  /** Whether this batch reported a failure on the job record (false when one was pending already). */
  readonly failureReported: boolean;
  /**
   * The failure request on the job record that this batch's lost messages belong to, written now
   * or pending already (a retried batch, a second incident before the coordinator served the
   * first): whoever consumes the queue wakes the coordinator for it. Its generation and time
   * name that one occasion, so every batch of the incident can wake the coordinator under one
   * execution name. Undefined when the batch lost nothing of the running generation.
   */
  readonly failure?: FailureRequest;
}

export type FailureRequest = NonNullable<NonNullable<JobRecord['requests']>['failure']>;

export const INGRESS_QUEUE = 'ingress';
const MAX_JOB_WRITE_ATTEMPTS = 10;

export async function handleRedriven(deps: RedriveDeps, messages: readonly RedrivenMessage[]): Promise<RedriveOutcome> {
  if (messages.length === 0) return { stored: 0, failureReported: false };
  const at = deps.clock.now();
  const letters: DeadLetter[] = messages.map((m) => ({
    id: `redriven:${m.queue}:${m.messageId}`,
    reason: 'redriven',
    message: `reached the dead-letter queue of '${m.queue}' after ${m.receiveCount} receives`,
    vertex: m.queue,
    // An ingress message keeps its whole body and event id: it can be sent again (redrivableIngress).
    payload: m.queue === INGRESS_QUEUE || m.body.length <= 4096 ? m.body : `${m.body.slice(0, 4096)}…`,
    at,
    ...(m.queue === INGRESS_QUEUE && m.eventId !== undefined ? { eventId: m.eventId } : {}),
  }));
  await deps.deadLetters.put(letters);
  // Ingress messages never reached the log: a rollback cannot bring them back (they are dead letters to see and push again).
  const lost = messages.filter((m) => m.queue !== INGRESS_QUEUE).map((m) => ({ message: m, generation: generationOf(m.body) }));
  if (lost.length === 0) return { stored: letters.length, failureReported: false };
  for (let attempt = 0; ; attempt++) {
    const job = await deps.checkpoints.getJob();
    if (!job || job.status === 'FAILED' || job.status === 'FINISHED') return { stored: letters.length, failureReported: false };
    // Unknown generation (an unreadable body): assume the current one; a needless rollback is safe, a missed one is not.
    const current = lost.find((l) => (l.generation ?? job.generation) >= job.generation);
    if (!current) return { stored: letters.length, failureReported: false };
    const pending = job.requests?.failure;
    // One pending failure is one rollback; one of an older generation was covered by the rollback since (decideNext ignores it).
    if (pending && pending.generation >= job.generation) return { stored: letters.length, failureReported: false, failure: pending };
    const failure: FailureRequest = { reason: `message reached the dead-letter queue of '${current.message.queue}'`, at, generation: job.generation };
    const next: JobRecord = { ...job, version: job.version + 1, requests: { ...job.requests, failure } };
    try {
      await deps.checkpoints.putJob(next, job.version);
      return { stored: letters.length, failureReported: true, failure };
    } catch (error) {
      // Someone else wrote the job record (a coordinator transition): decide again on the new one.
      if (!(error instanceof ConcurrentStepError) || attempt + 1 >= MAX_JOB_WRITE_ATTEMPTS) throw error;
    }
  }
}

function generationOf(body: string): number | undefined {
  try {
    const parsed = JSON.parse(body) as { gen?: unknown };
    return typeof parsed.gen === 'number' ? parsed.gen : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The dead letters an ingress redrive sends back: ingress messages that reached their
 * dead-letter queue (they never reached the log), with the event id they carried. Bad input
 * (malformed, schema) and operators' poison records are not among them: they would fail again.
 */
export function redrivableIngress(letters: readonly DeadLetter[]): Array<DeadLetter & { readonly eventId: string }> {
  return letters.filter((l): l is DeadLetter & { eventId: string } => l.reason === 'redriven' && l.vertex === INGRESS_QUEUE && l.eventId !== undefined);
}
