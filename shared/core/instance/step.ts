import type { CheckpointConfig, RuntimeLimits } from '../config.js';
import { ChannelGapError, InstanceNotReadyError } from '../errors.js';
import { keyGroupOf } from '../hashing.js';
import type { KeyedContext, VertexDef } from '../job.js';
import { WATERMARK_MAX, WATERMARK_MIN, dedupIdOf, isChannelMessage, parseInstanceId, type ChannelMessage, type InstanceId, type InstanceMessage, type RecordEnvelope } from '../messages.js';
import type {
  ChannelStateEntry,
  CheckpointAck,
  Clock,
  DeadLetter,
  InstanceRecord,
  OperatorSnapshotState,
  OutboundMessage,
  QueueTransport,
  SourceLog,
  StateKeyRef,
  StateStore,
  StepCommit,
} from '../ports.js';
import { onChannelMessage, onTimePassing, type AlignmentEffect } from '../protocol/alignment.js';
import type { Topology } from '../topology.js';
import { StepKeyedState } from './keyed-state.js';

/**
 * One atomic step of one operator instance over the messages of its FIFO group in a batch:
 * read state, apply the messages in order, commit state + consumed sequence numbers + outbox
 * + acks in one transaction conditional on the generation, then send the outbox.
 */

export interface QueuedMessage {
  /** Queue message id: stable across redeliveries of the same message. */
  readonly id: string;
  readonly receiveCount: number;
  readonly body: InstanceMessage;
}

/** Hooks a fault schedule uses to crash a step at chosen points. Absent in production. */
export interface StepFaults {
  onRecord?(instance: InstanceId, record: RecordEnvelope): void;
  beforeCommit?(instance: InstanceId): void;
  afterCommit?(instance: InstanceId): void;
}

export interface StepDeps {
  readonly topology: Topology;
  readonly config: CheckpointConfig;
  readonly limits: RuntimeLimits;
  readonly state: StateStore;
  readonly log: SourceLog;
  readonly transport: QueueTransport;
  readonly clock: Clock;
  readonly faults?: StepFaults;
}

export interface StepStats {
  readonly records: number;
  readonly duplicates: number;
  readonly fenced: number;
  readonly late: number;
  readonly deadLetters: number;
  readonly resent: boolean;
}

export function initialInstanceRecord(instance: InstanceId, generation: number): InstanceRecord {
  return {
    instance,
    generation,
    version: 0,
    epoch: 1,
    consumed: {},
    produced: {},
    alignment: undefined,
    lastOutbox: [],
    outputBuffer: {},
    outputBufferSince: undefined,
    replay: [],
    lastBarrier: 0,
    lastMessageIds: [],
    ...initialSnapshotState(),
  };
}

export function initialSnapshotState(): OperatorSnapshotState {
  return {
    watermarks: {},
    emittedWatermark: WATERMARK_MIN,
    timers: {},
    sourceOffset: 0,
    sourceMaxEventTime: WATERMARK_MIN,
    sourceFinished: false,
    rebalanceCursor: 0,
  };
}

export function snapshotStateOf(record: OperatorSnapshotState): OperatorSnapshotState {
  return {
    watermarks: record.watermarks,
    emittedWatermark: record.emittedWatermark,
    timers: record.timers,
    sourceOffset: record.sourceOffset,
    sourceMaxEventTime: record.sourceMaxEventTime,
    sourceFinished: record.sourceFinished,
    rebalanceCursor: record.rebalanceCursor,
  };
}

export async function runInstanceStep(deps: StepDeps, instance: InstanceId, messages: readonly QueuedMessage[]): Promise<StepStats> {
  const stored = await deps.state.loadInstance(instance);
  const first = messages[0];
  const record = stored ?? initialInstanceRecord(instance, first?.body.gen ?? 1);
  const step = new InstanceStep(deps, record, messages);
  return step.run();
}

type WorkItem = { readonly message: InstanceMessage; readonly sequenced: boolean };

class InstanceStep {
  private readonly vertex: VertexDef;
  private readonly index: number;
  private readonly inputs: InstanceId[];
  private readonly keyed: StepKeyedState;
  private rec: Mutable<InstanceRecord>;
  private timers: Map<number, Set<string>> | undefined;
  private timersChanged = false;
  private readonly outbox: OutboundMessage[] = [];
  private readonly acks: CheckpointAck[] = [];
  private readonly deadLetters: DeadLetter[] = [];
  private readonly staged = new Map<number, unknown[]>();
  private readonly upserts: { sink: string; key: string; value: unknown }[] = [];
  /** In-flight records recorded as channel state, per unaligned checkpoint. */
  private readonly channelState = new Map<number, ChannelStateEntry[]>();
  private readonly snapshots: { checkpointId: number; state: OperatorSnapshotState }[] = [];
  private readonly isolate: boolean;
  private stats = { records: 0, duplicates: 0, fenced: 0, late: 0, deadLetters: 0, resent: false };

  constructor(
    private readonly deps: StepDeps,
    record: InstanceRecord,
    private readonly messages: readonly QueuedMessage[],
  ) {
    const { vertexId, index } = parseInstanceId(record.instance);
    const vertex = deps.topology.vertex(vertexId);
    if (!vertex) throw new Error(`unknown vertex ${vertexId}`);
    this.vertex = vertex;
    this.index = index;
    this.inputs = deps.topology.inputsOf(vertex, index);
    this.rec = { ...record };
    this.keyed = new StepKeyedState(record.epoch);
    this.isolate = messages.some((m) => m.receiveCount >= deps.limits.isolatePoisonAfterReceives);
  }

  private get now(): number {
    return this.deps.clock.now();
  }

  async run(): Promise<StepStats> {
    const consumedBefore = new Set(this.rec.lastMessageIds);
    const redelivered = this.messages.filter((m) => consumedBefore.has(m.id));
    const fresh = this.messages.filter((m) => !consumedBefore.has(m.id));
    if (redelivered.length > 0 && this.rec.lastOutbox.length > 0) {
      // The last step committed but may have crashed before sending: send again; receivers
      // drop what they already have by channel sequence number.
      await this.deps.transport.send(this.rec.lastOutbox);
      this.stats.resent = true;
    }
    const work: WorkItem[] = [];
    for (const m of fresh) {
      if (m.body.gen < this.rec.generation) this.stats.fenced++;
      else if (m.body.gen > this.rec.generation) {
        throw new InstanceNotReadyError(`${this.rec.instance} is in generation ${this.rec.generation}, message is from ${m.body.gen}`);
      } else work.push({ message: m.body, sequenced: true });
    }
    if (work.length === 0 && this.rec.replay.length === 0) return this.stats;

    const before = { alignment: this.rec.alignment, outputBuffer: this.rec.outputBuffer, replay: this.rec.replay.length };
    await this.replayChannelState();
    await this.drain(work);
    // An alignment that outlived its timeout switches to unaligned and releases what it held.
    const released = await this.applyEffects(onTimePassing(this.rec.alignment, this.alignmentContext()));
    await this.drain(released.map((message) => ({ message, sequenced: false })));
    await this.fireTimers();
    this.flushOutputs(false);
    if (fresh.every((m) => m.body.type === 'tick') && this.unchangedSince(before)) return this.stats;
    await this.commit(fresh.map((m) => m.id));
    return this.stats;
  }

  /** A timer tick that found nothing to do commits nothing (ticks must not cost a write each). */
  private unchangedSince(before: { alignment: unknown; outputBuffer: unknown; replay: number }): boolean {
    return (
      this.outbox.length === 0 &&
      this.acks.length === 0 &&
      this.snapshots.length === 0 &&
      this.channelState.size === 0 &&
      this.deadLetters.length === 0 &&
      this.staged.size === 0 &&
      this.upserts.length === 0 &&
      !this.timersChanged &&
      this.keyed.writes().length === 0 &&
      this.rec.alignment === before.alignment &&
      this.rec.outputBuffer === before.outputBuffer &&
      before.replay === 0
    );
  }

  // ---------- input ----------

  private async drain(work: WorkItem[]): Promise<void> {
    while (work.length > 0) {
      const item = work.shift() as WorkItem;
      const released = await this.apply(item);
      // Released (held) messages were consumed already: they skip the sequence check.
      if (released.length > 0) work.unshift(...released.map((message) => ({ message, sequenced: false })));
    }
  }

  private async apply(item: WorkItem): Promise<ChannelMessage[]> {
    const message = item.message;
    if (!isChannelMessage(message)) {
      await this.applyControl(message);
      return [];
    }
    if (item.sequenced) {
      const last = this.rec.consumed[message.from] ?? 0;
      if (message.seq <= last) {
        this.stats.duplicates++;
        return [];
      }
      if (message.seq !== last + 1) throw new ChannelGapError(`${message.from}>${message.to}`, last + 1, message.seq);
      this.rec.consumed = { ...this.rec.consumed, [message.from]: message.seq };
    }
    const decision = onChannelMessage(this.rec.alignment, message, this.alignmentContext());
    this.rec.alignment = decision.alignment;
    return this.applyEffects(decision);
  }

  private async applyEffects(decision: { alignment: InstanceRecord['alignment']; effects: readonly AlignmentEffect[] }): Promise<ChannelMessage[]> {
    this.rec.alignment = decision.alignment;
    const released: ChannelMessage[] = [];
    for (const effect of decision.effects) {
      switch (effect.kind) {
        case 'process':
          if (effect.recordAsChannelState && decision.alignment) {
            const entries = this.channelState.get(decision.alignment.checkpointId) ?? [];
            for (const record of effect.message.records ?? []) entries.push({ from: effect.message.from, record });
            this.channelState.set(decision.alignment.checkpointId, entries);
          }
          await this.processData(effect.message);
          break;
        case 'snapshot':
          this.takeSnapshot(effect.checkpointId, effect.final);
          break;
        case 'ack':
          this.acks.push(this.ack(effect.checkpointId, effect.alignmentMs, effect.unaligned));
          break;
        case 'release':
          released.push(...effect.messages);
          break;
        case 'hold':
        case 'drop-stale-barrier':
          break;
      }
    }
    return released;
  }

  private alignmentContext() {
    return { inputs: this.inputs, config: this.deps.config, now: this.now };
  }

  private async applyControl(message: Exclude<InstanceMessage, ChannelMessage>): Promise<void> {
    if (message.type === 'tick') return;
    if (this.vertex.head.kind !== 'source') return;
    if (message.type === 'poll') {
      await this.pollSource();
      return;
    }
    if (message.checkpointId <= this.rec.lastBarrier) return;
    // Read what the log holds first: a source whose poll was lost (a purge racing the new
    // generation's polls, a rollback between ingest and its poll) is woken by every checkpoint.
    await this.pollSource();
    this.takeSnapshot(message.checkpointId, message.final === true);
    this.acks.push(this.ack(message.checkpointId, 0, false));
  }

  private async replayChannelState(): Promise<void> {
    if (this.rec.replay.length === 0) return;
    const entries = this.rec.replay;
    this.rec.replay = [];
    for (const entry of entries) {
      await this.processRecords([entry.record]);
    }
  }

  private async processData(message: ChannelMessage): Promise<void> {
    if (message.records && message.records.length > 0) await this.processRecords(message.records);
    if (message.wm !== undefined && message.wm > (this.rec.watermarks[message.from] ?? WATERMARK_MIN)) {
      this.rec.watermarks = { ...this.rec.watermarks, [message.from]: message.wm };
      await this.fireTimers();
    }
  }

  // ---------- sources ----------

  private async pollSource(): Promise<void> {
    const head = this.vertex.head;
    if (head.kind !== 'source' || this.rec.sourceFinished) return;
    const batch = this.deps.limits.sourceReadBatch;
    const entries = await this.deps.log.read(this.index, this.rec.sourceOffset, batch);
    for (const entry of entries) {
      const t = head.eventTime?.(entry.event);
      const envelope: RecordEnvelope = { v: entry.event, o: `${this.index}:${entry.offset}`, ...(t === undefined ? {} : { t }) };
      this.rec.sourceOffset = entry.offset + 1;
      if (t !== undefined) {
        // Late at the source (behind its own watermark): decided here, deterministically, and
        // kept as a dead letter with reason 'late' (Flink drops it, or sends it to a side output).
        const watermark = this.sourceWatermark();
        if (t <= watermark) {
          this.stats.late++;
          this.deadLetter(envelope, 'late', `event time ${t} is at or behind the watermark ${watermark} of source '${this.vertex.id}'`);
          continue;
        }
        this.rec.sourceMaxEventTime = Math.max(this.rec.sourceMaxEventTime, t);
      }
      this.runRecord(envelope, () => this.emitChain(envelope, envelope.v, 0));
    }
    if (entries.length === batch) {
      this.outbox.push(this.controlToSelf({ type: 'poll', gen: this.rec.generation, to: this.rec.instance }));
    } else {
      const log = await this.deps.log.status(this.index);
      if (log.sealed && this.rec.sourceOffset >= log.head) this.rec.sourceFinished = true;
    }
  }

  private sourceWatermark(): number {
    const head = this.vertex.head;
    if (head.kind !== 'source') return WATERMARK_MIN;
    if (this.rec.sourceFinished) return WATERMARK_MAX;
    if (this.rec.sourceMaxEventTime === WATERMARK_MIN) return WATERMARK_MIN;
    return this.rec.sourceMaxEventTime - head.maxOutOfOrdernessMs - 1;
  }

  private controlToSelf(body: InstanceMessage): OutboundMessage {
    return { queue: this.vertex.id, groupId: this.rec.instance, dedupId: `${dedupIdOf(body)}`, body };
  }

  // ---------- records ----------

  private currentWatermark(): number {
    if (this.vertex.head.kind === 'source') return this.sourceWatermark();
    if (this.inputs.length === 0) return WATERMARK_MIN;
    return Math.min(...this.inputs.map((i) => this.rec.watermarks[i] ?? WATERMARK_MIN));
  }

  private async processRecords(records: readonly RecordEnvelope[]): Promise<void> {
    const head = this.vertex.head;
    if (head.kind === 'source' || head.kind === 'passthrough') {
      for (const record of records) this.runRecord(record, () => this.emitChain(record, record.v, 0));
      return;
    }
    const refs = records.map((r) => this.refOf(r.k ?? ''));
    await this.prefetch(refs);
    for (const [i, record] of records.entries()) {
      const ref = refs[i] as StateKeyRef;
      this.runRecord(record, () => this.applyKeyed(record, ref));
    }
  }

  private refOf(key: string): StateKeyRef {
    return { keyGroup: keyGroupOf(key, this.deps.topology.graph.maxParallelism), key };
  }

  private async prefetch(refs: readonly StateKeyRef[]): Promise<void> {
    const missing = this.keyed.missing(refs);
    if (missing.length === 0) return;
    const items = await this.deps.state.getItems(this.vertex.id, missing);
    this.keyed.load(missing, items);
  }

  /**
   * Runs one record's work. Normally a throw fails the whole step (the batch is retried). In
   * isolation mode (the batch keeps failing) a record gets a second attempt at once, so a
   * transient error passes; a record that throws twice is poison and becomes a dead letter.
   */
  private runRecord(record: RecordEnvelope, work: () => void): void {
    this.stats.records++;
    const attempts = this.isolate ? 2 : 1;
    for (let attempt = 1; ; attempt++) {
      const outputsBefore = this.pendingOutputMark();
      this.keyed.beginRecord();
      try {
        this.deps.faults?.onRecord?.(this.rec.instance, record);
        work();
        this.keyed.commitRecord();
        return;
      } catch (error) {
        this.keyed.abortRecord();
        if (!this.isolate) throw error;
        this.rollbackOutputs(outputsBefore);
        if (attempt < attempts) continue;
        this.deadLetter(record, 'operator-error', `operator '${this.vertex.id}' threw: ${(error as Error).message}`);
        return;
      }
    }
  }

  private applyKeyed(record: RecordEnvelope, ref: StateKeyRef): void {
    const head = this.vertex.head;
    const state = this.keyed.access(ref);
    let emitted = 0;
    const emit = (value: unknown, t = record.t): void => {
      const out: RecordEnvelope = { v: value, o: emitted === 0 ? record.o : `${record.o}#${emitted}`, ...(t === undefined ? {} : { t }) };
      emitted++;
      this.emitChain(out, value, 0);
    };
    switch (head.kind) {
      case 'process': {
        const ctx: KeyedContext<unknown> = { key: ref.key, timestamp: record.t, watermark: this.currentWatermark(), state, emit: (v) => emit(v) };
        head.fn(record.v, ctx);
        return;
      }
      case 'reduce': {
        const acc = state.value<unknown>('reduce');
        const previous = acc.get();
        const next = previous === undefined ? record.v : head.fn(previous, record.v);
        acc.set(next);
        emit(next);
        return;
      }
      case 'window': {
        const size = head.window.sizeMs;
        const time = head.window.time === 'event' ? record.t : this.now;
        if (time === undefined) throw new Error(`window '${head.uid}' on event time needs a source eventTime`);
        const start = time - (((time % size) + size) % size);
        const end = start + size;
        const watermark = this.currentWatermark();
        if (head.window.time === 'event' && end - 1 <= watermark) {
          this.stats.late++;
          this.deadLetter(record, 'late', `event time ${time} falls in the window [${start}, ${end}) of '${head.uid}', already closed by the watermark ${watermark}`);
          return;
        }
        const slot = state.value<unknown>(`w:${start}`);
        const acc = slot.get();
        slot.set(head.aggregate.add(acc === undefined ? head.aggregate.create() : acc, record.v));
        this.addTimer(end, ref.key);
        return;
      }
      default:
        return;
    }
  }

  private timerMap(): Map<number, Set<string>> {
    if (!this.timers) {
      this.timers = new Map(Object.entries(this.rec.timers).map(([end, keys]) => [Number(end), new Set(keys)]));
    }
    return this.timers;
  }

  private addTimer(end: number, key: string): void {
    const timers = this.timerMap();
    const keys = timers.get(end) ?? new Set<string>();
    if (!keys.has(key)) this.timersChanged = true;
    keys.add(key);
    timers.set(end, keys);
  }

  /** Fires due windows: event time by the watermark (end - 1 <= watermark), processing time by the clock. */
  private async fireTimers(): Promise<void> {
    const head = this.vertex.head;
    if (head.kind !== 'window') return;
    const timers = this.timerMap();
    if (timers.size === 0) return;
    const limit = head.window.time === 'event' ? this.currentWatermark() + 1 : this.now;
    const due = [...timers.keys()].filter((end) => end <= limit).sort((a, b) => a - b);
    for (const end of due) {
      const keys = [...(timers.get(end) ?? [])].sort();
      timers.delete(end);
      this.timersChanged = true;
      const refs = keys.map((k) => this.refOf(k));
      await this.prefetch(refs);
      const start = end - head.window.sizeMs;
      for (const ref of refs) {
        const origin: RecordEnvelope = { v: null, o: `w:${ref.key}:${end}`, t: end - 1 };
        this.runRecord(origin, () => {
          const slot = this.keyed.access(ref).value<unknown>(`w:${start}`);
          const acc = slot.get();
          if (acc === undefined) return;
          slot.clear();
          const value = head.aggregate.result(acc, { key: ref.key, start, end });
          this.emitChain({ v: value, o: origin.o, t: end - 1 }, value, 0);
        });
      }
    }
  }

  /** Runs the chained stateless operators from position `from`, then sinks or routes. */
  private emitChain(envelope: RecordEnvelope, value: unknown, from: number): void {
    const chain = this.vertex.chain;
    for (let i = from; i < chain.length; i++) {
      const op = chain[i];
      if (!op) break;
      if (op.kind === 'map') value = op.fn(value);
      else if (op.kind === 'filter') {
        if (!op.fn(value)) return;
      } else {
        let n = 0;
        for (const out of op.fn(value)) {
          this.emitChain({ ...envelope, o: `${envelope.o}.${n++}` }, out, i + 1);
        }
        return;
      }
    }
    this.deliver({ ...envelope, v: value });
  }

  private deliver(envelope: RecordEnvelope): void {
    const sink = this.vertex.sink;
    if (sink) {
      if (sink.mode === 'transactional') {
        const list = this.staged.get(this.rec.epoch) ?? [];
        list.push(envelope.v);
        this.staged.set(this.rec.epoch, list);
      } else {
        this.upserts.push({ sink: sink.uid, key: (sink.key as (v: unknown) => string)(envelope.v), value: envelope.v });
      }
      return;
    }
    for (const edge of this.deps.topology.outEdgesOf(this.vertex.id)) {
      const { targets, key } = this.deps.topology.route(edge, this.index, envelope.v, this.rec.rebalanceCursor);
      if (edge.kind === 'rebalance') this.rec.rebalanceCursor++;
      const out: RecordEnvelope = key === undefined ? { ...envelope } : { ...envelope, k: key };
      for (const target of targets) {
        const buffer = (this.rec.outputBuffer[target] as RecordEnvelope[] | undefined) ?? [];
        if (buffer.length === 0 && this.rec.outputBufferSince === undefined) this.rec.outputBufferSince = this.now;
        this.rec.outputBuffer = { ...this.rec.outputBuffer, [target]: [...buffer, out] };
      }
    }
  }

  private pendingOutputMark(): { buffers: InstanceRecord['outputBuffer']; staged: Map<number, number>; upserts: number; cursor: number } {
    return {
      buffers: this.rec.outputBuffer,
      staged: new Map([...this.staged].map(([e, l]) => [e, l.length])),
      upserts: this.upserts.length,
      cursor: this.rec.rebalanceCursor,
    };
  }

  private rollbackOutputs(mark: ReturnType<InstanceStep['pendingOutputMark']>): void {
    this.rec.outputBuffer = mark.buffers;
    this.rec.rebalanceCursor = mark.cursor;
    for (const [epoch, list] of this.staged) list.length = mark.staged.get(epoch) ?? 0;
    this.upserts.length = mark.upserts;
  }

  private deadLetter(record: RecordEnvelope, reason: DeadLetter['reason'], message: string): void {
    this.stats.deadLetters++;
    const payload = JSON.stringify(record.v) ?? 'undefined';
    this.deadLetters.push({
      id: `${this.vertex.id}:${record.o}`,
      reason,
      message,
      vertex: this.vertex.id,
      payload: payload.length > 4096 ? `${payload.slice(0, 4096)}…` : payload,
      at: this.now,
    });
  }

  // ---------- checkpoints ----------

  private takeSnapshot(checkpointId: number, final: boolean): void {
    // Everything produced so far belongs to the closing epoch and must precede the barrier.
    this.flushOutputs(true);
    this.persistTimers();
    this.keyed.seal(checkpointId + 1);
    this.snapshots.push({ checkpointId, state: snapshotStateOf(this.rec) });
    const wm = this.currentWatermark();
    for (const target of this.deps.topology.outputsOf(this.vertex, this.index)) {
      this.pushChannelMessage(target, { type: 'barrier', checkpointId, wm, ...(final ? { final } : {}) });
    }
    this.rec.emittedWatermark = Math.max(this.rec.emittedWatermark, wm);
    this.rec.epoch = checkpointId + 1;
    this.rec.lastBarrier = checkpointId;
  }

  private ack(checkpointId: number, alignmentMs: number, unaligned: boolean): CheckpointAck {
    return {
      checkpointId,
      instance: this.rec.instance,
      generation: this.rec.generation,
      alignmentMs,
      unaligned,
      channelStateRecords: this.channelState.get(checkpointId)?.length ?? 0,
      stateWrites: this.keyed.writes().length,
      ...(this.vertex.head.kind === 'source' ? { sourceOffset: this.rec.sourceOffset } : {}),
      at: this.now,
    };
  }

  // ---------- output ----------

  /** Packs buffered records into messages up to the size bound; keeps them if the flush timeout allows. */
  private flushOutputs(force: boolean): void {
    const wm = this.currentWatermark();
    const wmAdvanced = wm > this.rec.emittedWatermark;
    const timeout = this.deps.limits.flushTimeoutMs;
    const aged = this.rec.outputBufferSince !== undefined && this.now - this.rec.outputBufferSince >= timeout;
    const flush = force || timeout === 0 || aged;
    if (!flush) return;
    const targets = this.deps.topology.outputsOf(this.vertex, this.index);
    for (const target of targets) {
      const records = this.rec.outputBuffer[target] ?? [];
      const messages = this.pack(records);
      if (messages.length === 0 && wmAdvanced) messages.push([]);
      messages.forEach((chunk, i) => {
        const last = i === messages.length - 1;
        this.pushChannelMessage(target, { type: 'data', records: chunk, ...(last && wmAdvanced ? { wm } : {}) });
      });
    }
    if (wmAdvanced) this.rec.emittedWatermark = wm;
    this.rec.outputBuffer = {};
    this.rec.outputBufferSince = undefined;
  }

  private pack(records: readonly RecordEnvelope[]): RecordEnvelope[][] {
    const { maxMessageBytes, maxRecordBytes } = this.deps.limits;
    const budget = maxMessageBytes - 1024; // message envelope overhead
    const chunks: RecordEnvelope[][] = [];
    let chunk: RecordEnvelope[] = [];
    let bytes = 0;
    for (const record of records) {
      const size = Buffer.byteLength(JSON.stringify(record));
      if (size > maxRecordBytes) {
        this.deadLetter(record, 'oversize-record', `record of ${size} bytes from '${this.vertex.id}' exceeds the limit of ${maxRecordBytes} bytes`);
        continue;
      }
      if (bytes + size > budget && chunk.length > 0) {
        chunks.push(chunk);
        chunk = [];
        bytes = 0;
      }
      chunk.push(record);
      bytes += size + 1;
    }
    if (chunk.length > 0) chunks.push(chunk);
    return chunks;
  }

  private pushChannelMessage(target: InstanceId, body: { type: 'data' | 'barrier'; records?: RecordEnvelope[]; wm?: number; checkpointId?: number; final?: true }): void {
    const seq = (this.rec.produced[target] ?? 0) + 1;
    this.rec.produced = { ...this.rec.produced, [target]: seq };
    const message: ChannelMessage = { ...body, gen: this.rec.generation, from: this.rec.instance, to: target, seq };
    const { vertexId } = parseInstanceId(target);
    this.outbox.push({ queue: vertexId, groupId: target, dedupId: dedupIdOf(message), body: message });
  }

  private persistTimers(): void {
    if (!this.timers) return;
    this.rec.timers = Object.fromEntries([...this.timers].sort(([a], [b]) => a - b).map(([end, keys]) => [String(end), [...keys]]));
  }

  // ---------- commit ----------

  private async commit(consumedIds: string[]): Promise<void> {
    this.persistTimers();
    const expectedVersion = this.rec.version;
    const sink = this.vertex.sink;
    const record: InstanceRecord = {
      ...this.rec,
      version: expectedVersion + 1,
      lastOutbox: this.outbox,
      lastMessageIds: consumedIds,
    };
    const commit: StepCommit = {
      instance: this.rec.instance,
      operator: this.vertex.id,
      generation: this.rec.generation,
      expectedVersion,
      record,
      stateWrites: this.keyed.writes(),
      ...(this.snapshots.length > 0 ? { snapshots: this.snapshots } : {}),
      channelState: [...this.channelState].map(([checkpointId, entries]) => ({ checkpointId, entries })),
      acks: this.acks,
      staged: sink ? [...this.staged].filter(([, r]) => r.length > 0).map(([epoch, records]) => ({ sink: sink.uid, epoch, records })) : [],
      upserts: this.upserts,
      deadLetters: this.deadLetters,
    };
    this.deps.faults?.beforeCommit?.(this.rec.instance);
    await this.deps.state.commitStep(commit);
    this.deps.faults?.afterCommit?.(this.rec.instance);
    if (this.outbox.length > 0) await this.deps.transport.send(this.outbox);
  }
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
