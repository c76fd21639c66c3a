import type { CheckpointCostResult } from './checkpoint-cost.js';
import type { SuiteResult } from './suite.js';

/** Plain-text tables of a SuiteResult. */

const int = (n: number): string => Math.round(n).toLocaleString('en-US');
const ms = (n: number): string => (n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2));
const kb = (n: number): string => `${(n / 1024).toFixed(1)} KiB`;
const x = (n: number): string => (Number.isFinite(n) ? `${n.toFixed(2)}x` : 'n/a');
const yes = (b: boolean): string => (b ? 'yes' : 'NO');

function table(header: readonly string[], rows: readonly (readonly string[])[], leftColumns = 1): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i < leftColumns ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function formatReport(result: SuiteResult, command = 'npm run bench'): string {
  const { machine: m, cost, options: o } = result;
  const out: string[] = [];
  out.push(`Cairn benchmark  ${m.date}`);
  out.push(`machine: ${m.cores} cores (${m.cpu}), ${m.memoryGb} GiB RAM, node ${m.node}, ${m.platform}`);
  out.push(`command: ${command}${m.git ? `  (at ${m.git.commit.slice(0, 10)}${m.git.dirty ? ', uncommitted changes to tracked files in shared/ or examples/' : ''})` : ''}`);
  out.push('');

  const { small: s, large: l, smallOff, largeOff, ratios: r } = cost;
  const label = (c: CheckpointCostResult): string => `${int(c.keys)} keys`;
  out.push(
    `1. Checkpoint cost vs total state: keyed job 'checkpoint-cost' (parallelism 2), ${int(o.changedPerEpoch)} keys changed per epoch, ` +
      `one manual checkpoint per epoch; mean of ${o.epochs} epochs after ${o.warmupEpochs} warm-up; durable EmbeddedDb (temp dir), real clock`,
  );
  const rows: string[][] = [
    ['total state (live keys)', int(s.liveKeys), int(l.liveKeys), x(l.liveKeys / s.liveKeys)],
    ['checkpoint ms, trigger->complete, mean', ms(s.mean.checkpointMs), ms(l.mean.checkpointMs), x(r.checkpointMs)],
    ['checkpoint ms, trigger->complete, median', ms(s.median.checkpointMs), ms(l.median.checkpointMs), x(r.checkpointMsMedian)],
    ['checkpoint ms incl. prune + sink commit, mean', ms(s.mean.checkpointWithPruneMs), ms(l.mean.checkpointWithPruneMs), x(r.checkpointWithPruneMs)],
    ['checkpoint ms incl. prune + sink commit, median', ms(s.median.checkpointWithPruneMs), ms(l.median.checkpointWithPruneMs), x(r.checkpointWithPruneMsMedian)],
    ['  V8 GC ms inside that window, mean', ms(s.mean.gcMsDuringCheckpoint), ms(l.mean.gcMsDuringCheckpoint), x(l.mean.gcMsDuringCheckpoint / s.mean.gcMsDuringCheckpoint)],
    ['bytes per epoch, total', kb(s.mean.bytes), kb(l.mean.bytes), x(r.bytesPerEpoch)],
    ['  of which checkpointing (ver, chg, snap, ack, cp, job)', kb(s.mean.checkpointBytes), kb(l.mean.checkpointBytes), x(r.checkpointBytes)],
    ['  of which plain state (item)', kb(s.mean.stateBytes), kb(l.mean.stateBytes), x(l.mean.stateBytes / s.mean.stateBytes)],
    ['  of which ingress, source log, instance records', kb(s.mean.otherBytes), kb(l.mean.otherBytes), x(l.mean.otherBytes / s.mean.otherBytes)],
    ['bytes written trigger->complete (incl. prune)', kb(s.mean.bytesDuringCheckpoint), kb(l.mean.bytesDuringCheckpoint), x(r.bytesDuringCheckpoint)],
  ];
  if (smallOff && largeOff) {
    rows.push(['bytes per epoch with checkpointing off', kb(smallOff.mean.bytes), kb(largeOff.mean.bytes), x(largeOff.mean.bytes / smallOff.mean.bytes)]);
    rows.push([
      '  on - off (cost of checkpointing)',
      kb(s.mean.bytes - smallOff.mean.bytes),
      kb(l.mean.bytes - largeOff.mean.bytes),
      x((l.mean.bytes - largeOff.mean.bytes) / (s.mean.bytes - smallOff.mean.bytes)),
    ]);
    rows.push(['processing ms per epoch, on / off', `${ms(s.mean.processMs)} / ${ms(smallOff.mean.processMs)}`, `${ms(l.mean.processMs)} / ${ms(largeOff.mean.processMs)}`, '']);
  } else {
    rows.push(['processing ms per epoch', ms(s.mean.processMs), ms(l.mean.processMs), x(l.mean.processMs / s.mean.processMs)]);
  }
  rows.push(['preload ms (commitStep batches of 50k)', ms(s.preloadMs), ms(l.preloadMs), '']);
  rows.push(['sealing checkpoint ms (its epoch changed every key)', ms(s.sealCheckpointMs), ms(l.sealCheckpointMs), '']);
  out.push(table(['', label(s), label(l), `ratio ${int(l.keys / 1000)}k/${int(s.keys / 1000)}k`], rows));
  out.push(
    `ratio < ${cost.threshold}: checkpoint duration: ${yes(cost.proportionalToChanges.duration)} (${x(r.checkpointMs)}), ` +
      `checkpoint bytes: ${yes(cost.proportionalToChanges.bytes)} (${x(r.checkpointBytes)})`,
  );
  out.push('');

  out.push(
    `2. Throughput: examples/${o.example}, ${int(o.events)} events fed in chunks of 2,000, real clock, until FINISHED ` +
      `(the final checkpoint included); checkpointing every ${int(o.intervalMs)} ms vs off; ` +
      `best of ${o.repeats} interleaved runs per configuration`,
  );
  const trows = result.throughput.flatMap((p) => {
    const db = p.durable ? 'durable (state dir)' : 'in-memory';
    return [
      [db, 'end to end (push -> FINISHED)', int(p.on.eventsPerSec), int(p.off.eventsPerSec), x(p.ratio), `${ms(p.on.wallMs / 1000)} / ${ms(p.off.wallMs / 1000)}`],
      [
        db,
        'processing (push -> final ckpt triggered)',
        int(p.on.processingEventsPerSec),
        int(p.off.processingEventsPerSec),
        x(p.processingRatio),
        `${ms(p.on.processingMs / 1000)} / ${ms(p.off.processingMs / 1000)}`,
      ],
      [db, 'final checkpoint + sink commit', '', '', '', `${ms(p.on.finalPhaseMs / 1000)} / ${ms(p.off.finalPhaseMs / 1000)}`],
    ];
  });
  out.push(table(['EmbeddedDb', 'phase', 'events/s on', 'events/s off', 'on/off', 'seconds on / off'], trows, 2));
  for (const p of result.throughput) {
    out.push(
      `${p.durable ? 'durable' : 'in-memory'}: checkpoints completed on/off ${p.on.checkpointsCompleted}/${p.off.checkpointsCompleted} ` +
        `(mean ${ms(p.on.meanCheckpointMs)} ms trigger->complete with checkpointing on), ` +
        `journal ${(p.on.bytesWritten / 2 ** 20).toFixed(1)} / ${(p.off.bytesWritten / 2 ** 20).toFixed(1)} MiB, ` +
        `sink records ${int(p.on.sinkRecords)} / ${int(p.off.sinkRecords)}; ` +
        `end-to-end events/s of every run: on ${p.runs.on.map(int).join(', ')}, off ${p.runs.off.map(int).join(', ')}`,
    );
  }
  out.push('');
  out.push(`total benchmark time: ${(result.totalMs / 1000).toFixed(1)} s`);
  return out.join('\n');
}
