import { instanceForKeyGroup, keyGroupOf } from './hashing.js';
import { instanceId, type InstanceId } from './messages.js';
import type { EdgeDef, JobGraph, VertexDef } from './job.js';
import { JobDefinitionError } from './errors.js';

/**
 * Derived wiring of a job graph: which instances exist, which channels feed each one, and
 * where a record goes next. Pure and computed once per job.
 */
export class Topology {
  private readonly byId = new Map<string, VertexDef>();
  private readonly outEdges = new Map<string, EdgeDef[]>();
  private readonly inEdge = new Map<string, EdgeDef>();

  constructor(readonly graph: JobGraph) {
    for (const vertex of graph.vertices) this.byId.set(vertex.id, vertex);
    for (const edge of graph.edges) {
      const list = this.outEdges.get(edge.from) ?? [];
      list.push(edge);
      this.outEdges.set(edge.from, list);
      if (this.inEdge.has(edge.to)) throw new JobDefinitionError(`vertex '${edge.to}' has two inputs; joins are not supported yet`);
      this.inEdge.set(edge.to, edge);
    }
  }

  get vertices(): readonly VertexDef[] {
    return this.graph.vertices;
  }

  vertex(id: string): VertexDef | undefined {
    return this.byId.get(id);
  }

  sources(): VertexDef[] {
    return this.graph.vertices.filter((v) => v.head.kind === 'source');
  }

  instancesOf(vertex: VertexDef): InstanceId[] {
    return Array.from({ length: vertex.parallelism }, (_, i) => instanceId(vertex.id, i));
  }

  allInstances(): InstanceId[] {
    return this.graph.vertices.flatMap((v) => this.instancesOf(v));
  }

  /** Upstream instances whose channels feed `index` of `vertex` (the inputs barriers align over). */
  inputsOf(vertex: VertexDef, index: number): InstanceId[] {
    const edge = this.inEdge.get(vertex.id);
    if (!edge) return [];
    const upstream = this.byId.get(edge.from);
    if (!upstream) return [];
    if (edge.kind === 'forward') return [instanceId(upstream.id, index)];
    return this.instancesOf(upstream);
  }

  outEdgesOf(vertexId: string): readonly EdgeDef[] {
    return this.outEdges.get(vertexId) ?? [];
  }

  /** Every instance `from` may send to (barriers and watermarks go to all of them). */
  outputsOf(vertex: VertexDef, index: number): InstanceId[] {
    return this.outEdgesOf(vertex.id).flatMap((edge) => {
      const target = this.byId.get(edge.to);
      if (!target) return [];
      return edge.kind === 'forward' ? [instanceId(target.id, index)] : this.instancesOf(target);
    });
  }

  /**
   * Targets of one record on `edge`. For rebalance the cursor picks the target; the caller
   * advances it. Returns the key for hash edges so the receiver need not recompute it.
   */
  route(edge: EdgeDef, fromIndex: number, value: unknown, rebalanceCursor: number): { targets: InstanceId[]; key: string | undefined } {
    const target = this.byId.get(edge.to);
    if (!target) return { targets: [], key: undefined };
    switch (edge.kind) {
      case 'forward':
        return { targets: [instanceId(target.id, fromIndex)], key: undefined };
      case 'broadcast':
        return { targets: this.instancesOf(target), key: undefined };
      case 'rebalance':
        return { targets: [instanceId(target.id, rebalanceCursor % target.parallelism)], key: undefined };
      case 'hash': {
        const key = edge.keySelector ? edge.keySelector(value) : String(value);
        const group = keyGroupOf(key, this.graph.maxParallelism);
        return { targets: [instanceId(target.id, instanceForKeyGroup(group, target.parallelism, this.graph.maxParallelism))], key };
      }
    }
  }
}
