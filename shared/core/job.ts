import type { z } from 'zod';
import { JobDefinitionError } from './errors.js';

/**
 * The typed builder users write jobs with, and the job graph it produces.
 *
 * Operators after a source or a keyed operator are chained into the same vertex (as Flink
 * chains operators into one task) until the next `keyBy`, `rebalance` or `broadcast`:
 * a chain runs in one step, so a record crosses a queue only where it must change instance.
 */

export type EdgeKind = 'forward' | 'hash' | 'broadcast' | 'rebalance';

export interface SourceOptions<T> {
  /** Events failing this schema go to the ingress dead-letter queue with the zod message. */
  readonly schema: z.ZodType<T>;
  /** Source partitions = source instances. Default 1. */
  readonly partitions?: number;
  /** Chooses the partition of an event; events with the same partition key stay in order. */
  readonly partitionKey?: (event: T) => string;
  /** Event time of an event (ms); enables event-time windows downstream. */
  readonly eventTime?: (event: T) => number;
  /** Bounded out-of-orderness for the watermark (Flink's forBoundedOutOfOrderness). Default 0. */
  readonly maxOutOfOrdernessMs?: number;
}

export interface ValueState<V> {
  get(): V | undefined;
  set(value: V): void;
  clear(): void;
}

export interface MapState<V> {
  get(key: string): V | undefined;
  has(key: string): boolean;
  set(key: string, value: V): void;
  delete(key: string): void;
  keys(): string[];
  entries(): Array<[string, V]>;
  clear(): void;
}

export interface KeyedStateAccess {
  value<V>(name: string): ValueState<V>;
  map<V>(name: string): MapState<V>;
}

export interface KeyedContext<O> {
  readonly key: string;
  /** Event time of the current record, if the source assigns one. */
  readonly timestamp: number | undefined;
  /** Current event-time watermark of this instance. */
  readonly watermark: number;
  readonly state: KeyedStateAccess;
  emit(value: O): void;
}

export type KeyedProcessFunction<T, O> = (value: T, ctx: KeyedContext<O>) => void;

export interface WindowSpec {
  readonly sizeMs: number;
  readonly time: 'event' | 'processing';
}

export interface WindowInfo {
  readonly key: string;
  readonly start: number;
  readonly end: number;
}

export interface WindowAggregate<T, A, O> {
  readonly create: () => A;
  readonly add: (acc: A, value: T) => A;
  readonly result: (acc: A, window: WindowInfo) => O;
}

export interface SinkOptions<T> {
  /** transactional (default): output of epoch N is published when checkpoint N completes. */
  readonly mode?: 'transactional' | 'idempotent';
  /** Idempotent sinks upsert by this deterministic key. */
  readonly key?: (value: T) => string;
  readonly parallelism?: number;
}

export interface OperatorOptions {
  readonly parallelism?: number;
}

// ---------- graph ----------

export type SourceOp = {
  readonly kind: 'source';
  readonly uid: string;
  readonly schema: z.ZodType;
  readonly partitionKey: ((event: unknown) => string) | undefined;
  readonly eventTime: ((event: unknown) => number) | undefined;
  readonly maxOutOfOrdernessMs: number;
};

export type StatelessOp =
  | { readonly kind: 'map'; readonly uid: string; readonly fn: (value: unknown) => unknown }
  | { readonly kind: 'filter'; readonly uid: string; readonly fn: (value: unknown) => boolean }
  | { readonly kind: 'flatMap'; readonly uid: string; readonly fn: (value: unknown) => Iterable<unknown> };

export type KeyedOp =
  | { readonly kind: 'process'; readonly uid: string; readonly fn: KeyedProcessFunction<unknown, unknown> }
  | { readonly kind: 'reduce'; readonly uid: string; readonly fn: (acc: unknown, value: unknown) => unknown }
  | {
      readonly kind: 'window';
      readonly uid: string;
      readonly window: WindowSpec;
      readonly aggregate: WindowAggregate<unknown, unknown, unknown>;
    };

export type HeadOp = SourceOp | KeyedOp | { readonly kind: 'passthrough'; readonly uid: string };

export type SinkOp = {
  readonly kind: 'sink';
  readonly uid: string;
  readonly mode: 'transactional' | 'idempotent';
  readonly key: ((value: unknown) => string) | undefined;
};

export interface VertexDef {
  /** Stable id (the head operator's uid): queues, state and instance ids derive from it. */
  readonly id: string;
  readonly parallelism: number;
  readonly head: HeadOp;
  readonly chain: readonly StatelessOp[];
  readonly sink: SinkOp | undefined;
}

export interface EdgeDef {
  readonly from: string;
  readonly to: string;
  readonly kind: EdgeKind;
  readonly keySelector: ((value: unknown) => string) | undefined;
}

export interface JobGraph {
  readonly name: string;
  readonly maxParallelism: number;
  /** Topological order: sources first. */
  readonly vertices: readonly VertexDef[];
  readonly edges: readonly EdgeDef[];
}

// ---------- builder ----------

interface MutableVertex {
  id: string;
  parallelism: number;
  head: HeadOp;
  chain: StatelessOp[];
  sink: SinkOp | undefined;
  closed: boolean;
}

const UID_PATTERN = /^[a-z][a-z0-9-]{0,39}$/;

export class JobBuilder {
  private readonly vertices: MutableVertex[] = [];
  private readonly edges: EdgeDef[] = [];
  private readonly uids = new Set<string>();

  constructor(
    readonly name: string,
    readonly maxParallelism = 128,
  ) {
    if (!UID_PATTERN.test(name)) throw new JobDefinitionError(`job name '${name}' must match ${String(UID_PATTERN)}`);
    if (!Number.isInteger(maxParallelism) || maxParallelism < 1 || maxParallelism > 32768) {
      throw new JobDefinitionError(`maxParallelism must be an integer in 1..32768, got ${maxParallelism}`);
    }
  }

  source<T>(uid: string, options: SourceOptions<T>): DataStream<T> {
    const vertex = this.addVertex(uid, options.partitions ?? 1, {
      kind: 'source',
      uid,
      schema: options.schema,
      partitionKey: options.partitionKey as ((event: unknown) => string) | undefined,
      eventTime: options.eventTime as ((event: unknown) => number) | undefined,
      maxOutOfOrdernessMs: options.maxOutOfOrdernessMs ?? 0,
    });
    return new DataStream<T>(this, vertex);
  }

  build(): JobGraph {
    if (this.vertices.length === 0) throw new JobDefinitionError(`job '${this.name}' has no source`);
    const sources = this.vertices.filter((v) => v.head.kind === 'source');
    // One ingress queue feeds one source log: a second source would never receive an event.
    if (sources.length > 1) throw new JobDefinitionError(`job '${this.name}' has ${sources.length} sources (${sources.map((v) => v.id).join(', ')}); a job has exactly one source`);
    const source = sources[0]?.head;
    for (const vertex of this.vertices) {
      if (vertex.head.kind === 'window' && vertex.head.window.time === 'event' && source?.kind === 'source' && !source.eventTime) {
        throw new JobDefinitionError(`event-time window '${vertex.id}' needs event time: give the source '${source.uid}' an eventTime function`);
      }
    }
    for (const vertex of this.vertices) {
      const hasOut = this.edges.some((e) => e.from === vertex.id);
      if (!hasOut && !vertex.sink) {
        throw new JobDefinitionError(`stream ending at '${vertex.id}' has no sink; end it with .sink(...)`);
      }
    }
    return {
      name: this.name,
      maxParallelism: this.maxParallelism,
      vertices: this.vertices.map((v) => ({ id: v.id, parallelism: v.parallelism, head: v.head, chain: [...v.chain], sink: v.sink })),
      edges: [...this.edges],
    };
  }

  /** @internal */
  claimUid(uid: string): void {
    if (!UID_PATTERN.test(uid)) throw new JobDefinitionError(`operator uid '${uid}' must match ${String(UID_PATTERN)}`);
    if (this.uids.has(uid)) throw new JobDefinitionError(`operator uid '${uid}' is used twice`);
    this.uids.add(uid);
  }

  /** @internal */
  addVertex(uid: string, parallelism: number, head: HeadOp): MutableVertex {
    this.claimUid(uid);
    if (!Number.isInteger(parallelism) || parallelism < 1 || parallelism > this.maxParallelism) {
      throw new JobDefinitionError(`parallelism of '${uid}' must be in 1..${this.maxParallelism}, got ${parallelism}`);
    }
    const vertex: MutableVertex = { id: uid, parallelism, head, chain: [], sink: undefined, closed: false };
    this.vertices.push(vertex);
    return vertex;
  }

  /** @internal */
  connect(from: MutableVertex, to: MutableVertex, kind: EdgeKind, keySelector?: (value: unknown) => string): void {
    if (kind === 'forward' && from.parallelism !== to.parallelism) {
      throw new JobDefinitionError(`forward edge ${from.id} -> ${to.id} needs equal parallelism`);
    }
    from.closed = true;
    this.edges.push({ from: from.id, to: to.id, kind, keySelector });
  }
}

export function job(name: string, options: { maxParallelism?: number } = {}): JobBuilder {
  return new JobBuilder(name, options.maxParallelism);
}

export class DataStream<T> {
  /** @internal */
  constructor(
    protected readonly builder: JobBuilder,
    protected readonly vertex: MutableVertex,
    private readonly pendingEdge: 'rebalance' | 'broadcast' | undefined = undefined,
  ) {
    if (vertex.closed || vertex.sink) {
      throw new JobDefinitionError(`stream of '${vertex.id}' already has a consumer; fan-out is not supported yet`);
    }
  }

  map<U>(uid: string, fn: (value: T) => U): DataStream<U> {
    return this.chain<U>({ kind: 'map', uid, fn: fn as (value: unknown) => unknown });
  }

  filter(uid: string, fn: (value: T) => boolean): DataStream<T> {
    return this.chain<T>({ kind: 'filter', uid, fn: fn as (value: unknown) => boolean });
  }

  flatMap<U>(uid: string, fn: (value: T) => Iterable<U>): DataStream<U> {
    return this.chain<U>({ kind: 'flatMap', uid, fn: fn as (value: unknown) => Iterable<unknown> });
  }

  /** Partition by key: the next operator is keyed and gets its own vertex. */
  keyBy(selector: (value: T) => string | number): KeyedStream<T> {
    return new KeyedStream<T>(this.builder, this.openVertex(), (v) => String(selector(v as T)));
  }

  /** Round-robin to the next operator. */
  rebalance(): DataStream<T> {
    return new DataStream<T>(this.builder, this.openVertex(), 'rebalance');
  }

  /** Every record to every instance of the next operator. */
  broadcast(): DataStream<T> {
    return new DataStream<T>(this.builder, this.openVertex(), 'broadcast');
  }

  sink(uid: string, options: SinkOptions<T> = {}): void {
    const mode = options.mode ?? 'transactional';
    if (mode === 'idempotent' && !options.key) {
      throw new JobDefinitionError(`idempotent sink '${uid}' needs a deterministic key function`);
    }
    const sinkOp: SinkOp = { kind: 'sink', uid, mode, key: options.key as ((value: unknown) => string) | undefined };
    const target = this.targetFor(uid, options.parallelism);
    this.builder.claimUid(uid);
    target.sink = sinkOp;
  }

  private chain<U>(op: StatelessOp): DataStream<U> {
    const target = this.targetFor(op.uid, undefined);
    this.builder.claimUid(op.uid);
    target.chain.push(op);
    return new DataStream<U>(this.builder, target);
  }

  /** The vertex the next chained operator goes into: this one, or a new one after rebalance/broadcast. */
  private targetFor(uid: string, parallelism: number | undefined): MutableVertex {
    if (this.pendingEdge === undefined && (parallelism === undefined || parallelism === this.vertex.parallelism)) {
      return this.vertex;
    }
    const next = this.builder.addVertex(`${uid}-in`, parallelism ?? this.vertex.parallelism, {
      kind: 'passthrough',
      uid: `${uid}-in`,
    });
    this.builder.connect(this.vertex, next, this.pendingEdge ?? 'rebalance');
    return next;
  }

  private openVertex(): MutableVertex {
    if (this.pendingEdge !== undefined) {
      throw new JobDefinitionError(`'${this.vertex.id}': ${this.pendingEdge}() must be followed by an operator`);
    }
    return this.vertex;
  }
}

export class KeyedStream<T> {
  /** @internal */
  constructor(
    private readonly builder: JobBuilder,
    private readonly upstream: MutableVertex,
    private readonly keySelector: (value: unknown) => string,
  ) {}

  /** Keyed process function with value and map state scoped to the current key. */
  process<O>(uid: string, fn: KeyedProcessFunction<T, O>, options: OperatorOptions = {}): DataStream<O> {
    return this.keyed({ kind: 'process', uid, fn: fn as KeyedProcessFunction<unknown, unknown> }, options);
  }

  /** Rolling reduce: emits the updated accumulator for the key after every record. */
  reduce(uid: string, fn: (acc: T, value: T) => T, options: OperatorOptions = {}): DataStream<T> {
    return this.keyed({ kind: 'reduce', uid, fn: fn as (acc: unknown, value: unknown) => unknown }, options);
  }

  /** Tumbling windows of `sizeMs` on event time (fired by the watermark) or processing time. */
  window(spec: WindowSpec): WindowedStream<T> {
    if (!Number.isInteger(spec.sizeMs) || spec.sizeMs <= 0) {
      throw new JobDefinitionError(`window size must be a positive integer of ms, got ${spec.sizeMs}`);
    }
    return new WindowedStream<T>(spec, (op, options) => this.keyed(op, options));
  }

  private keyed<O>(op: KeyedOp, options: OperatorOptions): DataStream<O> {
    const vertex = this.builder.addVertex(op.uid, options.parallelism ?? this.upstream.parallelism, op);
    this.builder.connect(this.upstream, vertex, 'hash', this.keySelector);
    return new DataStream<O>(this.builder, vertex);
  }
}

export class WindowedStream<T> {
  /** @internal */
  constructor(
    private readonly spec: WindowSpec,
    private readonly add: (op: KeyedOp, options: OperatorOptions) => DataStream<unknown>,
  ) {}

  aggregate<A, O>(uid: string, aggregate: WindowAggregate<T, A, O>, options: OperatorOptions = {}): DataStream<O> {
    return this.add({ kind: 'window', uid, window: this.spec, aggregate: aggregate as unknown as WindowAggregate<unknown, unknown, unknown> }, options) as DataStream<O>;
  }

  count(uid: string, options: OperatorOptions = {}): DataStream<WindowInfo & { count: number }> {
    return this.aggregate(uid, { create: () => 0, add: (acc: number) => acc + 1, result: (count, window) => ({ ...window, count }) }, options);
  }
}
