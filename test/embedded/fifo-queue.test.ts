import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../shared/embedded/clock.js';
import { EmbeddedDb } from '../../shared/embedded/db.js';
import { FifoQueue } from '../../shared/embedded/fifo-queue.js';

function setup(maxReceiveCount = 3) {
  const clock = new VirtualClock(0);
  const dlq = new FifoQueue<string>('q-dlq', clock, { visibilityTimeoutMs: 100, maxReceiveCount: 100 });
  const queue = new FifoQueue<string>('q', clock, { visibilityTimeoutMs: 100, maxReceiveCount, deadLetterQueue: dlq });
  const send = (groupId: string, ...bodies: string[]) => queue.send(bodies.map((body) => ({ groupId, dedupId: `${groupId}:${body}`, body })));
  return { clock, queue, dlq, send };
}

describe('embedded FIFO queue (plays SQS FIFO for the local event source)', () => {
  it('delivers each group in order, at most `max` per receive, mixing groups', () => {
    const { queue, send } = setup();
    send('a', '1', '2', '3');
    send('b', 'x');
    const batch = queue.receive(10);
    expect(batch.map((m) => `${m.groupId}${m.body}`).sort()).toEqual(['a1', 'a2', 'a3', 'bx']);
    expect(batch.filter((m) => m.groupId === 'a').map((m) => m.body)).toEqual(['1', '2', '3']);
  });

  it('a group with a message in flight delivers nothing else until it is deleted or its visibility times out', () => {
    const { clock, queue, send } = setup();
    send('a', '1', '2');
    expect(queue.receive(1).map((m) => m.body)).toEqual(['1']);
    send('a', '3');
    expect(queue.receive(10)).toEqual([]);
    clock.advance(100);
    expect(queue.receive(10).map((m) => [m.body, m.receiveCount])).toEqual([
      ['1', 2],
      ['2', 1],
      ['3', 1],
    ]);
  });

  it('deduplicates by id within the window, not after it', () => {
    const { clock, queue, send } = setup();
    expect(send('a', '1')).toBe(1);
    expect(send('a', '1')).toBe(0);
    clock.advance(300_001);
    expect(send('a', '1')).toBe(1);
    expect(queue.length).toBe(2);
  });

  it('after maxReceiveCount receives a message is redriven to the dead-letter queue with the reason; the group moves on', () => {
    const { clock, queue, dlq, send } = setup(2);
    send('a', 'poison', 'next');
    for (let i = 0; i < 2; i++) {
      expect(queue.receive(1).map((m) => m.body)).toEqual(['poison']);
      clock.advance(100);
    }
    expect(queue.receive(1).map((m) => m.body)).toEqual(['next']);
    expect(dlq.all().map((m) => [m.body, m.reason])).toEqual([['poison', 'max receive count 2 exceeded']]);
  });

  it('a durable queue keeps unacknowledged messages across a reopen', () => {
    const dir = `/tmp/cairn-fifo-${process.pid}-${Date.now()}`;
    const clock = new VirtualClock(0);
    const db = EmbeddedDb.open(dir);
    const queue = new FifoQueue<string>('in', clock, { visibilityTimeoutMs: 10, maxReceiveCount: 3, db });
    queue.send(['1', '2', '3'].map((body) => ({ groupId: 'g', dedupId: body, body })));
    queue.delete([queue.receive(1)[0]?.id as string]);
    db.close();
    const reopened = new FifoQueue<string>('in', clock, { visibilityTimeoutMs: 10, maxReceiveCount: 3, db: EmbeddedDb.open(dir) });
    expect(reopened.receive(10).map((m) => m.body)).toEqual(['2', '3']);
  });
});
