import type { CheckpointConfigInput } from './config.js';
import { JobDefinitionError } from './errors.js';
import { job, type JobBuilder, type JobGraph } from './job.js';
import type { RestartStrategy } from './protocol/restart-strategy.js';

/**
 * A job as a user defines it, once, for every runtime: a name, its checkpointing and restart
 * strategy, and the graph (built by a function, so every runtime gets a fresh graph). The module
 * that holds it exports it as default; `cairn run`, `cairn/testing`, the Lambda handlers and the
 * `CairnJob` construct all take this object. An Example (examples/) is a definition plus a demo
 * input generator and an oracle.
 */
export interface JobDefinition {
  readonly name: string;
  readonly checkpoint?: CheckpointConfigInput;
  readonly restartStrategy?: RestartStrategy;
  build(): JobGraph;
}

/** The job's name: one name for its state directory, its local-cloud records and `cairn status`. */
const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;

/**
 * Defines a job: `export default defineJob({ name: 'fraud', build: (j) => { j.source(...)... } })`.
 * The graph is built (and so validated) here, once: a broken job fails at definition time with
 * the operator's uid, not per record at run time.
 */
export function defineJob(spec: {
  readonly name: string;
  readonly checkpoint?: CheckpointConfigInput;
  readonly restartStrategy?: RestartStrategy;
  readonly maxParallelism?: number;
  readonly build: (j: JobBuilder) => void;
}): JobDefinition {
  if (!NAME.test(spec.name)) throw new JobDefinitionError(`job name '${spec.name}' must be 1-63 lowercase letters, digits and dashes, starting with a letter or digit`);
  const build = (): JobGraph => {
    const builder = job(spec.name, spec.maxParallelism === undefined ? {} : { maxParallelism: spec.maxParallelism });
    spec.build(builder);
    return builder.build();
  };
  build();
  return {
    name: spec.name,
    ...(spec.checkpoint ? { checkpoint: spec.checkpoint } : {}),
    ...(spec.restartStrategy ? { restartStrategy: spec.restartStrategy } : {}),
    build,
  };
}

export function isJobDefinition(value: unknown): value is JobDefinition {
  if (typeof value !== 'object' || value === null) return false;
  const d = value as Record<string, unknown>;
  return typeof d.name === 'string' && typeof d.build === 'function';
}

/**
 * A runnable example (`npm start`, `cairn run word-count`): a job definition plus a
 * deterministic demo input generator and an oracle for its output.
 */
export interface Example<E = unknown, O = unknown> extends JobDefinition {
  readonly description: string;
  readonly sink: string;
  /**
   * Events number 0..count-1 for a seed; ids are stable so re-pushing them is harmless.
   * `eventsPerSecond`: the pace they will be sent at, for events that carry an event time (their
   * clock then advances with it, as a real producer's would); without it, the example's own pace.
   */
  generate(count: number, seed: number, options?: { readonly eventsPerSecond?: number }): Array<{ id: string; event: E }>;
  /** What a single fault-free run must put in the sink, in canonical order. */
  oracle(events: readonly E[]): O[];
  /** Canonical order of sink output, for comparison with the oracle. */
  canonical(output: readonly unknown[]): O[];
}

/** One vertex as the infrastructure sees it: a queue, a function, `parallelism` message groups. */
export interface VertexDescription {
  readonly id: string;
  readonly parallelism: number;
  readonly isSource: boolean;
  /** Vertices this one sends records, watermarks and barriers to. */
  readonly downstream: readonly string[];
  readonly sink: { readonly uid: string; readonly mode: 'transactional' | 'idempotent' } | undefined;
}

/** What deploying a job needs to know about it, as plain JSON (`cairn describe <module> --json`). */
export interface JobDescription {
  readonly name: string;
  readonly checkpoint: CheckpointConfigInput;
  readonly vertices: readonly VertexDescription[];
}

export function describeJob(definition: JobDefinition): JobDescription {
  const graph = definition.build();
  return {
    name: definition.name,
    checkpoint: definition.checkpoint ?? {},
    vertices: graph.vertices.map((v) => ({
      id: v.id,
      parallelism: v.parallelism,
      isSource: v.head.kind === 'source',
      downstream: graph.edges.filter((e) => e.from === v.id).map((e) => e.to),
      sink: v.sink ? { uid: v.sink.uid, mode: v.sink.mode } : undefined,
    })),
  };
}

/** Uids of the job's sinks, in graph order. */
export function sinksOf(graph: JobGraph): string[] {
  return graph.vertices.flatMap((v) => (v.sink ? [v.sink.uid] : []));
}
