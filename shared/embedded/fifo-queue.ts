import type { Clock } from '../core/ports.js';
import type { EmbeddedDb } from './db.js';

/**
 * An SQS FIFO queue, in process: message groups delivered strictly in order, a group with a
 * message in flight delivers nothing else, visibility timeout, receive counting, redrive to a
 * dead-letter queue after maxReceiveCount, and a 5-minute deduplication window.
 */

export interface QueueMessage<B = unknown> {
  readonly id: string;
  readonly groupId: string;
  readonly dedupId: string;
  readonly body: B;
  receiveCount: number;
  invisibleUntil: number;
  /** Set when redriven: why it is in the dead-letter queue. */
  reason?: string;
}

export interface FifoQueueOptions {
  readonly visibilityTimeoutMs: number;
  readonly maxReceiveCount: number;
  readonly deadLetterQueue?: FifoQueue;
  readonly dedupWindowMs?: number;
  /** Durable queues keep their messages in the db (the ingress queue: accepted events must survive a crash). */
  readonly db?: EmbeddedDb;
}

/** Inspection: the messages of every durable dead-letter queue in `db` (named `<queue>-dlq`), with the reason each was redriven. */
export function durableDeadLetterMessages(db: EmbeddedDb): { queue: string; reason: string; body: unknown }[] {
  return db
    .tableNames()
    .filter((name) => name.startsWith('queue:') && name.endsWith('-dlq'))
    .flatMap((name) => [...db.table<QueueMessage>(name).values()].map((m) => ({ queue: name.slice('queue:'.length, -'-dlq'.length), reason: m.reason ?? '', body: m.body })));
}

export class FifoQueue<B = unknown> {
  private readonly groups = new Map<string, QueueMessage<B>[]>();
  private readonly groupOf = new Map<string, string>();
  private readonly dedup = new Map<string, number>();
  private rotation = 0;
  private counter = 0;
  private size = 0;
  /** Groups held back until a time (fault injection: a slow consumer). */
  private readonly pausedUntil = new Map<string, number>();

  constructor(
    readonly name: string,
    private readonly clock: Clock,
    private readonly options: FifoQueueOptions,
  ) {
    if (options.db) {
      for (const [, message] of options.db.scan<QueueMessage<B>>(this.table, '')) {
        this.enqueue({ ...message, receiveCount: 0, invisibleUntil: 0 });
        this.counter = Math.max(this.counter, Number(message.id.split('-').pop()));
      }
    }
  }

  private get table(): string {
    return `queue:${this.name}`;
  }

  get length(): number {
    return this.size;
  }

  send(messages: readonly { groupId: string; dedupId: string; body: B; reason?: string }[], options: { bypassDedup?: boolean } = {}): number {
    const now = this.clock.now();
    const window = this.options.dedupWindowMs ?? 300_000;
    const accepted: QueueMessage<B>[] = [];
    for (const m of messages) {
      const seenUntil = this.dedup.get(m.dedupId);
      if (!options.bypassDedup && seenUntil !== undefined && seenUntil > now) continue;
      this.dedup.set(m.dedupId, now + window);
      const message: QueueMessage<B> = { id: `${this.name}-${String(++this.counter).padStart(10, '0')}`, ...m, receiveCount: 0, invisibleUntil: 0 };
      accepted.push(message);
      this.enqueue(message);
    }
    if (this.options.db && accepted.length > 0) this.options.db.write(accepted.map((m) => [this.table, m.id, m] as const));
    if (this.dedup.size > 100_000) for (const [id, until] of this.dedup) if (until <= now) this.dedup.delete(id);
    return accepted.length;
  }

  /** Up to `max` visible messages, several groups possibly, each group's in order. */
  receive(max: number): QueueMessage<B>[] {
    const now = this.clock.now();
    const out: QueueMessage<B>[] = [];
    const groupIds = [...this.groups.keys()];
    if (groupIds.length === 0) return out;
    this.rotation = (this.rotation + 1) % groupIds.length;
    for (let i = 0; i < groupIds.length && out.length < max; i++) {
      const groupId = groupIds[(this.rotation + i) % groupIds.length] as string;
      if ((this.pausedUntil.get(groupId) ?? 0) > now) continue;
      let messages = this.groups.get(groupId);
      // In-flight messages are always at the head of a group (FIFO): the head tells if it is locked.
      if (!messages || (messages[0]?.invisibleUntil ?? 0) > now) continue;
      while (messages?.[0] && messages[0].receiveCount >= this.options.maxReceiveCount) {
        this.redrive(messages[0], `max receive count ${this.options.maxReceiveCount} exceeded`);
        messages = this.groups.get(groupId);
      }
      for (const message of messages ?? []) {
        if (out.length >= max || message.receiveCount >= this.options.maxReceiveCount) break;
        message.receiveCount++;
        message.invisibleUntil = now + this.options.visibilityTimeoutMs;
        out.push(message);
      }
    }
    return out;
  }

  delete(ids: readonly string[]): void {
    const removed: string[] = [];
    for (const id of ids) {
      const groupId = this.groupOf.get(id);
      const messages = groupId === undefined ? undefined : this.groups.get(groupId);
      if (!messages || groupId === undefined) continue;
      // Deleted messages are nearly always at the head of their group: indexOf is short.
      const index = messages.findIndex((m) => m.id === id);
      if (index < 0) continue;
      messages.splice(index, 1);
      this.groupOf.delete(id);
      this.size--;
      removed.push(id);
      if (messages.length === 0) this.groups.delete(groupId);
    }
    if (this.options.db && removed.length > 0) this.options.db.write(removed.map((id) => [this.table, id, undefined] as const));
  }

  /** Failed messages become visible again now (ChangeMessageVisibility 0). */
  release(ids: readonly string[]): void {
    const wanted = new Set(ids);
    for (const messages of this.groups.values()) for (const m of messages) if (wanted.has(m.id)) m.invisibleUntil = 0;
  }

  purge(): void {
    const ids = [...this.groups.values()].flat().map((m) => m.id);
    this.delete(ids);
  }

  pauseGroup(groupId: string, until: number): void {
    this.pausedUntil.set(groupId, until);
  }

  /** Earliest time something becomes deliverable, if nothing is deliverable now. */
  nextVisibleAt(): number | undefined {
    let next: number | undefined;
    for (const [groupId, messages] of this.groups) {
      const first = messages[0];
      if (!first) continue;
      const at = Math.max(first.invisibleUntil, this.pausedUntil.get(groupId) ?? 0);
      next = next === undefined ? at : Math.min(next, at);
    }
    return next;
  }

  hasVisible(): boolean {
    const now = this.clock.now();
    const at = this.nextVisibleAt();
    return at !== undefined && at <= now;
  }

  all(): QueueMessage<B>[] {
    return [...this.groups.values()].flat();
  }

  private enqueue(message: QueueMessage<B>): void {
    const list = this.groups.get(message.groupId) ?? [];
    list.push(message);
    this.groups.set(message.groupId, list);
    this.groupOf.set(message.id, message.groupId);
    this.size++;
  }

  private redrive(message: QueueMessage<B>, reason: string): void {
    this.delete([message.id]);
    this.options.deadLetterQueue?.send([{ groupId: message.groupId, dedupId: `dlq:${message.id}`, body: message.body, reason }]);
  }
}
