import { z } from 'zod';
import { keyGroupOf } from '../../shared/core/hashing.js';
import { job, type JobGraph } from '../../shared/core/job.js';
import type { StateStore } from '../../shared/core/ports.js';

/**
 * The job of Flink's checkpointing ITCases, adapted: a sequence generator (per key, value
 * i+1 follows i), a validating keyed operator that checks the step is exactly 1, a second
 * keyed hop that counts, and a transactional sink. A poison key always throws.
 */

export const Step = z.object({ key: z.string(), value: z.number().int().positive() });
export type Step = z.infer<typeof Step>;
export type Validated = { key: string; value: number; step: number; seen: number };

export const POISON_KEY = 'poison';

export function sequenceJob(options: { sourcePartitions?: number; validators?: number; counters?: number } = {}): JobGraph {
  const j = job('sequence');
  j.source('steps', { schema: Step, partitions: options.sourcePartitions ?? 2, partitionKey: (s) => s.key })
    .keyBy((s) => s.key)
    .process<Step & { step: number }>(
      'validate',
      (s, ctx) => {
        if (s.key === POISON_KEY) throw new Error(`poison record ${s.key}/${s.value}`);
        const last = ctx.state.value<number>('last');
        const step = s.value - (last.get() ?? 0);
        last.set(s.value);
        ctx.emit({ ...s, step });
      },
      { parallelism: options.validators ?? 2 },
    )
    .keyBy((s) => s.key)
    .process<Validated>(
      'count',
      (s, ctx) => {
        const seen = ctx.state.value<number>('seen');
        const n = (seen.get() ?? 0) + 1;
        seen.set(n);
        ctx.emit({ ...s, seen: n });
      },
      { parallelism: options.counters ?? 3 },
    )
    .sink('validated');
  return j.build();
}

/** Interleaved sequences 1..perKey for `keys` keys, plus `poison` poison events. */
export function sequenceEvents(keys: number, perKey: number, poison = 0): Array<{ id: string; body: string }> {
  const out: Array<{ id: string; body: string }> = [];
  for (let value = 1; value <= perKey; value++) {
    for (let k = 0; k < keys; k++) out.push({ id: `k${k}-${value}`, body: JSON.stringify({ key: `k${k}`, value }) });
    if (value <= poison) out.push({ id: `poison-${value}`, body: JSON.stringify({ key: POISON_KEY, value }) });
  }
  return out;
}

/** What exactly-once means here: every key has 1..perKey, each once, every step 1, seen = value. */
export function sequenceOracle(keys: number, perKey: number): Validated[] {
  const out: Validated[] = [];
  for (let k = 0; k < keys; k++) for (let value = 1; value <= perKey; value++) out.push({ key: `k${k}`, value, step: 1, seen: value });
  return canonical(out);
}

export function canonical(output: readonly unknown[]): Validated[] {
  return [...(output as Validated[])].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.value - b.value || a.seen - b.seen));
}

/** Violations of the ITCase checks, for a readable failure message. */
export function violations(output: readonly Validated[], keys: number, perKey: number, mode: 'exactly-once' | 'at-least-once'): string[] {
  const problems: string[] = [];
  for (let k = 0; k < keys; k++) {
    const key = `k${k}`;
    const values = output.filter((o) => o.key === key).map((o) => o.value);
    const distinct = new Set(values);
    for (let v = 1; v <= perKey; v++) if (!distinct.has(v)) problems.push(`${key}: value ${v} missing (gap)`);
    if (mode === 'exactly-once') {
      if (values.length !== distinct.size) problems.push(`${key}: ${values.length - distinct.size} duplicates`);
      for (const o of output.filter((x) => x.key === key)) if (o.step !== 1) problems.push(`${key}: value ${o.value} came with step ${o.step}`);
    }
  }
  return problems.slice(0, 10);
}

/** Final keyed state of both operators, for comparison with the fault-free run. */
export async function finalState(state: StateStore, keys: number, maxParallelism = 128): Promise<Record<string, unknown>> {
  const refs = Array.from({ length: keys }, (_, k) => ({ key: `k${k}`, keyGroup: keyGroupOf(`k${k}`, maxParallelism) }));
  const out: Record<string, unknown> = {};
  for (const op of ['validate', 'count']) {
    const items = await state.getItems(op, refs);
    for (const ref of refs) out[`${op}/${ref.key}`] = items.get(`${ref.keyGroup}|${ref.key}`)?.value ?? null;
  }
  return out;
}
