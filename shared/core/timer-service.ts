import type { CheckpointConfig, RuntimeLimits } from './config.js';
import type { OutboundMessage } from './ports.js';
import type { Topology } from './topology.js';

/**
 * The timer service: instances that wait on time rather than on input (flush timeouts,
 * alignment timeouts, processing-time windows) get a tick message every interval. Every host
 * sends them the same way: the embedded runtime and the local cloud (JobHost) and the deployed
 * coordinator loop (CoordinatorTasks.run).
 */

/** How often instances need a tick: only when something waits on time rather than on input. */
export function tickIntervalFor(topology: Topology, config: CheckpointConfig, limits: RuntimeLimits): number | undefined {
  const candidates: number[] = [];
  if (limits.flushTimeoutMs > 0) candidates.push(limits.flushTimeoutMs);
  if (config.alignment === 'aligned-with-timeout' && config.alignmentTimeoutMs > 0) candidates.push(config.alignmentTimeoutMs);
  for (const vertex of topology.vertices) {
    if (vertex.head.kind === 'window' && vertex.head.window.time === 'processing') candidates.push(vertex.head.window.sizeMs / 4);
  }
  if (candidates.length === 0) return undefined;
  return Math.max(5, Math.min(...candidates));
}

/** One tick to every instance that is not a source, deduplicated per instance and time. */
export function tickMessages(topology: Topology, generation: number, now: number): OutboundMessage[] {
  return topology.vertices
    .filter((v) => v.head.kind !== 'source')
    .flatMap((v) => topology.instancesOf(v).map((to) => ({ queue: v.id, groupId: to, dedupId: `g${generation}:tick:${to}:${now}`, body: { type: 'tick' as const, gen: generation, to } })));
}
