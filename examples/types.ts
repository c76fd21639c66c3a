import type { JobDefinition } from '../shared/core/definition.js';

/** A runnable example: a job definition, plus a deterministic input generator and an oracle for its output. */
export interface Example<E = unknown, O = unknown> extends JobDefinition {
  readonly description: string;
  readonly sink: string;
  /** Events number 0..count-1 for a seed; ids are stable so re-pushing them is harmless. */
  generate(count: number, seed: number): Array<{ id: string; event: E }>;
  /** What a single fault-free run must put in the sink, in canonical order. */
  oracle(events: readonly E[]): O[];
  /** Canonical order of sink output, for comparison with the oracle. */
  canonical(output: readonly unknown[]): O[];
}

/** Small deterministic PRNG (mulberry32): examples and fault schedules replay from a seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function byJson(a: unknown, b: unknown): number {
  const x = JSON.stringify(a);
  const y = JSON.stringify(b);
  return x < y ? -1 : x > y ? 1 : 0;
}
