import { examples } from '../examples/index.js';
import { parseCheckpointConfig, type CheckpointConfig, type CheckpointConfigInput } from '../shared/core/config.js';
import type { JobGraph } from '../shared/core/job.js';

/**
 * What the infrastructure needs to know about a job, derived from its job graph (the same
 * graph the Lambdas build at run time from the examples registry): one queue + one function
 * per vertex, the number of instances (= FIFO message groups) per vertex, and which vertices
 * each vertex sends to.
 */

export interface VertexSpec {
  readonly id: string;
  readonly parallelism: number;
  readonly isSource: boolean;
  /** Vertices this one sends records, watermarks and barriers to. */
  readonly downstream: readonly string[];
  readonly sink: { readonly uid: string; readonly mode: 'transactional' | 'idempotent' } | undefined;
}

export interface JobSpec {
  /** Name in the examples registry (= CAIRN_JOB of every function). */
  readonly name: string;
  readonly graph: JobGraph;
  readonly vertices: readonly VertexSpec[];
  readonly checkpoint: CheckpointConfig;
  /** The checkpoint config as given (example's own, then overrides), passed to the functions. */
  readonly checkpointInput: CheckpointConfigInput;
}

export function jobNames(): string[] {
  return Object.keys(examples);
}

export function jobSpec(name: string, overrides: CheckpointConfigInput = {}): JobSpec {
  const example = examples[name];
  if (!example) throw new Error(`unknown job '${name}'; the examples registry has: ${jobNames().join(', ')}`);
  const graph = example.build();
  const checkpointInput: CheckpointConfigInput = { ...example.checkpoint, ...overrides };
  const vertices = graph.vertices.map((v): VertexSpec => ({
    id: v.id,
    parallelism: v.parallelism,
    isSource: v.head.kind === 'source',
    downstream: graph.edges.filter((e) => e.from === v.id).map((e) => e.to),
    sink: v.sink ? { uid: v.sink.uid, mode: v.sink.mode } : undefined,
  }));
  return { name, graph, vertices, checkpoint: parseCheckpointConfig(checkpointInput), checkpointInput };
}
