import { createHash } from 'node:crypto';
import { SendMessageBatchCommand, type SendMessageBatchRequestEntry, type SQSClient } from '@aws-sdk/client-sqs';
import type { OutboundMessage, QueueTransport } from '../../core/ports.js';
import { chunksOf } from './chunks.js';

/**
 * QueueTransport on SQS FIFO queues. Messages go out in SendMessageBatch calls of at most 10
 * entries and `maxBatchBytes` (256 KiB) of bodies; MessageGroupId = groupId, deduplication id =
 * dedupId, body = JSON.
 *
 * Order per group: a batch holds at most one message of a group (the n-th message of every
 * group goes in the n-th round of batches, see pack), and a batch holding a message of group g
 * starts only after every earlier batch holding g has succeeded; batches of disjoint groups go
 * out concurrently. Entries reported in `Failed` with SenderFault=false (throttling, internal
 * errors) are retried with backoff before any later batch of their group starts, so a partial
 * failure never lets a later message of the group in ahead of a failed one. Client-side faults
 * (SenderFault=true) are not retried: they throw.
 *
 * Ids: SQS accepts group and deduplication ids of 1-128 characters from [!-~]; anything else
 * (longer, or other characters) is replaced by `h-` + its SHA-256 (deterministic, so dedup
 * still works across resends).
 */

export interface SqsFifoTransportOptions {
  readonly client: SQSClient;
  /** Queue name (OutboundMessage.queue) -> queue URL. */
  readonly queueUrls: Readonly<Record<string, string>> | ReadonlyMap<string, string>;
  readonly maxBatchBytes?: number;
  /** Attempts per batch for entries that fail in the batch response. */
  readonly maxAttempts?: number;
  readonly concurrency?: number;
  readonly retryBaseMs?: number;
}

const MAX_ENTRIES = 10;

/** `items` in order, cut into SendMessageBatch requests: at most 10 entries and `maxBytes` of bodies each (an entry alone may exceed it). */
export function sendBatchesOf<T>(items: readonly T[], bodyOf: (item: T) => string, maxBytes: number): T[][] {
  return chunksOf(items, (item) => Buffer.byteLength(bodyOf(item)), MAX_ENTRIES, maxBytes);
}

export function sqsId(id: string): string {
  if (id.length >= 1 && id.length <= 128 && /^[\x21-\x7e]+$/.test(id)) return id;
  return `h-${createHash('sha256').update(id).digest('hex')}`;
}

export class SqsFifoTransport implements QueueTransport {
  private readonly client: SQSClient;
  private readonly urls: ReadonlyMap<string, string>;
  private readonly maxBatchBytes: number;
  private readonly maxAttempts: number;
  private readonly concurrency: number;
  private readonly retryBaseMs: number;
  private inFlight = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(options: SqsFifoTransportOptions) {
    this.client = options.client;
    this.urls = options.queueUrls instanceof Map ? options.queueUrls : new Map(Object.entries(options.queueUrls));
    this.maxBatchBytes = options.maxBatchBytes ?? 256 * 1024;
    this.maxAttempts = options.maxAttempts ?? 8;
    this.concurrency = options.concurrency ?? 8;
    this.retryBaseMs = options.retryBaseMs ?? 50;
  }

  async send(messages: readonly OutboundMessage[]): Promise<void> {
    const byQueue = new Map<string, OutboundMessage[]>();
    for (const m of messages) byQueue.set(m.queue, [...(byQueue.get(m.queue) ?? []), m]);
    const lastOfGroup = new Map<string, Promise<void>>();
    const tasks: Promise<void>[] = [];
    for (const [queue, list] of byQueue) {
      const url = this.urls.get(queue);
      if (url === undefined) throw new Error(`no queue URL for queue '${queue}'`);
      for (const batch of this.pack(list)) {
        const groups = [...new Set(batch.map((m) => m.groupId))];
        const before = groups.map((g) => lastOfGroup.get(`${queue}\u0000${g}`)).filter((p): p is Promise<void> => p !== undefined);
        const task = Promise.all(before).then(() => this.limited(() => this.sendBatch(url, batch)));
        for (const g of groups) lastOfGroup.set(`${queue}\u0000${g}`, task);
        tasks.push(task);
      }
    }
    const results = await Promise.allSettled(tasks);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /**
   * Batches of at most 10 entries and maxBatchBytes, holding at most one message per group:
   * the n-th message of every group goes in the n-th round of batches. SQS reports the entries
   * of a SendMessageBatch one by one, so a later entry of a group could be accepted while an
   * earlier one failed and is retried: it would be ahead of it in the group, a gap that no
   * redelivery heals. With one entry per group per call, a failed entry is retried before any
   * later message of its group is sent.
   */
  private pack(list: readonly OutboundMessage[]): Array<Array<OutboundMessage & { json: string }>> {
    const rounds: Array<Array<OutboundMessage & { json: string }>> = [];
    const perGroup = new Map<string, number>();
    for (const m of list) {
      const json = sqsSafeJson(m.body);
      const size = Buffer.byteLength(json);
      if (size > this.maxBatchBytes) throw new Error(`message of ${size} bytes to ${m.groupId} exceeds the SQS limit of ${this.maxBatchBytes} bytes`);
      const round = perGroup.get(m.groupId) ?? 0;
      perGroup.set(m.groupId, round + 1);
      (rounds[round] ??= []).push({ ...m, json });
    }
    return rounds.flatMap((round) => sendBatchesOf(round, (m) => m.json, this.maxBatchBytes));
  }

  private async limited<T>(fn: () => Promise<T>): Promise<T> {
    while (this.inFlight >= this.concurrency) await new Promise<void>((r) => this.waiting.push(r));
    this.inFlight++;
    try {
      return await fn();
    } finally {
      this.inFlight--;
      this.waiting.shift()?.();
    }
  }

  private async sendBatch(url: string, batch: ReadonlyArray<OutboundMessage & { json: string }>): Promise<void> {
    let entries: SendMessageBatchRequestEntry[] = batch.map((m, i) => ({
      Id: String(i),
      MessageBody: m.json,
      MessageGroupId: sqsId(m.groupId),
      MessageDeduplicationId: sqsId(m.dedupId),
    }));
    for (let attempt = 1; ; attempt++) {
      const out = await this.client.send(new SendMessageBatchCommand({ QueueUrl: url, Entries: entries }));
      const failed = out.Failed ?? [];
      if (failed.length === 0) return;
      const fatal = failed.find((f) => f.SenderFault);
      if (fatal || attempt >= this.maxAttempts) {
        const f = fatal ?? failed[0];
        throw new Error(`SendMessageBatch to ${url}: entry ${f?.Id} failed: ${f?.Code} ${f?.Message ?? ''}`);
      }
      const retry = new Set(failed.map((f) => f.Id));
      entries = entries.filter((e) => retry.has(e.Id));
      await new Promise((r) => setTimeout(r, Math.random() * this.retryBaseMs * 2 ** attempt));
    }
  }
}

/**
 * SQS accepts only #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF in a
 * message body: a user string holding U+FFFE or U+FFFF (legal in JSON and JavaScript) would
 * make the send fail after the commit, and every redelivery fail again. JSON.stringify already
 * escapes control characters and lone surrogates; these two are escaped here (`\\uffff` decodes
 * to the same string). Lines that are not JSON (`--input`) are made sendable the same way.
 */
export function sqsSafeJson(value: unknown): string {
  return sqsSafeBody(JSON.stringify(value));
}

export function sqsSafeBody(text: string): string {
  return text.replace(/[\ufffe\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16)}`);
}
