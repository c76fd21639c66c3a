import { SECONDS_PER_MONTH } from '../aws-prices.js';
import type { CostBenchResult } from './cost-bench.js';

const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;
const usd = (x: number): string => `$${x.toFixed(2)}`;

/** The table `npm run bench:cost` prints. */
export function formatCostReport(r: CostBenchResult): string {
  const lines: string[] = [];
  lines.push(`Cost of a Cairn job on AWS: ${r.prices.region} list prices taken ${r.prices.asOf}; checkpoint every ${r.intervalMs} ms`);
  lines.push(
    `measured on the local cloud (${r.machine.cores} cores, load average ${r.machine.loadAverage.join(' ')}), commit ${r.commit.slice(0, 12)}${r.dirty.length > 0 ? ` + uncommitted changes in ${r.dirty.join(', ')}` : ''}; rates marked "model" are modelled, not measured`,
  );
  lines.push('');
  const header = ['example', 'ev/s', 'how', '$/M events', 'dynamodb', 'sqs', 'lambda', 'logs', 'storage*', 'coord.', 'WRU/ev', 'RRU/ev', 'req/1k ev', 'ms/invocation'];
  const rows: string[][] = [header];
  for (const [example, rates] of Object.entries(r.perMillionUsd)) {
    for (const [rate, total] of Object.entries(rates)) {
      const modelled = rate.includes('modelled');
      const key = rate.replace(' (modelled)', '');
      const b = r.perMillionBreakdown[example]?.[key];
      const run = r.examples.find((e) => e.example === example)?.runs.find((x) => String(x.rate) === key);
      const how = modelled ? 'model' : run?.sustained ? 'measured' : 'measured (not sustained)';
      const ms = r.lambdaMsPerInvocation[example]?.[key];
      rows.push([
        example,
        key,
        how,
        usd(total),
        b ? b.dynamodb.toFixed(2) : '',
        b ? (b.sqs + b.producer).toFixed(2) : '',
        b ? b.lambda.toFixed(2) : '',
        b ? b.logs.toFixed(2) : '',
        b ? b.storage.toFixed(3) : '',
        b ? b.coordinator.toFixed(2) : '',
        String(r.writeUnitsPerEvent[example]?.[rate] ?? ''),
        String(r.readUnitsPerEvent[example]?.[rate] ?? ''),
        String(r.requestsPerThousand[example]?.[rate] ?? ''),
        ms
          ? Object.entries(ms)
              .map(([s, v]) => `${s} ${v.toFixed(0)}`)
              .join(', ')
          : '',
      ]);
    }
  }
  const widths = header.map((_, i) => Math.max(...rows.map((row) => (row[i] ?? '').length)));
  for (const [i, row] of rows.entries()) {
    lines.push(row.map((cell, j) => (j < 3 ? cell.padEnd(widths[j] ?? 0) : cell.padStart(widths[j] ?? 0))).join('  '));
    if (i === 0) lines.push(widths.map((w) => '-'.repeat(w)).join('  '));
  }
  lines.push("  dynamodb..coord.: $ per million events by service (sqs includes the producer's sends to the ingress queue; coord. = the coordinator's share at one round per interval);");
  lines.push(
    "  storage*: the table bytes (and S3) a million events leave behind, DynamoDB + PITR: dedup items for their 15-day window (TTL), a month of the job's state and results growth (log and checkpoints: bounded)",
  );
  lines.push('');
  const first = r.examples[0];
  lines.push(`coordinator: ${r.coordinatorTransitionsPerCheckpoint} Standard state transitions per checkpoint (${first?.round.path.join(' > ') ?? ''}), ${first?.round.tasks ?? 0} Lambda tasks`);
  lines.push(
    `  (${r.coordinatorTransitionsPerScheduledCheckpoint} with Init and the hand-over when the schedule starts one execution per round, intervals >= 60 s; +4 for a wait when a round ends before the next is due)`,
  );
  lines.push(`  coordinator alone: ${usd(r.coordinatorMonthlyUsd['1000'] ?? 0)}/month at a 1 s interval, ${usd(r.coordinatorMonthlyUsd['60000'] ?? 0)}/month at 60 s`);
  lines.push(`  with the operators' barrier steps, acks and snapshots: ${usd(r.checkpointingMonthlyUsd['1000'] ?? 0)}/month at 1 s, ${usd(r.checkpointingMonthlyUsd['60000'] ?? 0)}/month at 60 s`);
  lines.push(
    `idle (no events, ${r.intervalMs} ms interval): ${usd(r.idleMonthlyUsd)}/month besides storage (checkpoints ${usd(r.idleMonthlyBreakdown.checkpoints ?? 0)}, coordinator waits ${usd(r.idleMonthlyBreakdown.waits ?? 0)}, event source polling ${usd(r.idleMonthlyBreakdown.eventSourcePolling ?? 0)}, alarms ${usd(r.idleMonthlyBreakdown.alarms ?? 0)}; ${r.idleMonthlyBreakdown.idleWindowCheckpointsPerSecond ?? 0} checkpoints/s measured with no events; the table grows ${r.idleMonthlyBreakdown.tableGrowthGbPerMonth ?? 0} GB/month)`,
  );
  lines.push(
    `storage kept by Cairn: ${r.storageBytesPerEventPerMonth} byte-months per event (${Object.entries(r.storageBytesPerEvent)
      .map(([e, b]) => `${e} ${b}`)
      .join(
        ', ',
      )}): flat at steady load (R events/s keep R x ${SECONDS_PER_MONTH} x that many bytes), $${(((r.storageBytesPerEventPerMonth * 1e6) / 1024 ** 3) * (r.prices.dynamoStoragePerGbMonth + r.prices.dynamoPitrPerGbMonth)).toFixed(4)} per million events`,
  );
  lines.push(
    `  (its dedup items, for their 15-day window, then TTL deletes them; the log and checkpoint metadata are bounded by retention: ${Object.entries(r.storageBoundedBytes)
      .map(
        ([e, b]) =>
          `${e} ${Object.entries(b)
            .map(([k, n]) => `${k} ${Math.round(n / 1024)} KiB`)
            .join(' + ')}`,
      )
      .join(', ')} at the end)`,
  );
  for (const [e, kinds] of Object.entries(r.storageGrowthBytesPerEventByKind)) {
    lines.push(
      `  ${e}: table growth per event by kind: ${Object.entries(kinds)
        .map(([k, b]) => `${k} ${b}`)
        .join(', ')} (state and output are the job's own: its keys and its results)`,
    );
  }
  lines.push(
    `sustained here: ${Object.entries(r.sustainedRates)
      .map(([e, rates]) => `${e} ${rates.length > 0 ? rates.join(', ') : 'none'}`)
      .join('; ')} ev/s (of ${r.measuredRates.join(', ')})`,
  );
  lines.push(`model error (leave one measured rate out): data path ${pct(r.modelError)}, total ${pct(r.modelErrorTotal)}`);
  lines.push(
    `Managed Service for Apache Flink floor: ${usd(r.managedFlinkFloorMonthlyUsd)}/month; Cairn cheaper below: ${Object.entries(r.crossoverEventsPerSecond)
      .map(
        ([e, c]) =>
          `${e} ${Object.entries(c)
            .map(([i, v]) => `${Number(i) / 1000} s: ${v === null ? 'never' : `${v} ev/s`}`)
            .join(', ')}`,
      )
      .join('; ')}`,
  );
  lines.push(`runtime: ${r.totalSeconds.toFixed(0)} s`);
  return lines.join('\n');
}
