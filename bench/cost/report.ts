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
  const plan = (ms: number): string => {
    const p = r.coordinatorPlans[String(ms)];
    if (!p) return '';
    return `${ms / 1000} s: ${p.mode === 'in-process' ? 'waits slept in process, the Run function busy all month' : 'each wait through WaitForNext'}, ${p.invocationsPerMonth.toFixed(0)} Run invocations of ${(p.invocationMs / 1000).toFixed(1)} s (${p.gbSecondsPerMonth.toFixed(0)} GB-s), ${p.transitionsPerMonth.toFixed(0)} transitions (${r.coordinatorTransitionsPerCheckpoint[String(ms)] ?? 0} per checkpoint), ${p.decidesPerCheckpoint.toFixed(1)} decides and ${p.ackPollsPerCheckpoint} ack polls per checkpoint, ${p.unitsPerCheckpoint.write.toFixed(1)} WRU + ${p.unitsPerCheckpoint.read.toFixed(1)} RRU per checkpoint`;
  };
  lines.push(`coordinator (the Run task's loop, modelled from the template and the in-process coordinator's measured requests per checkpoint):`);
  for (const ms of [1_000, 60_000]) lines.push(`  ${plan(ms)}`);
  lines.push(`  coordinator alone: ${usd(r.coordinatorMonthlyUsd['1000'] ?? 0)}/month at a 1 s interval, ${usd(r.coordinatorMonthlyUsd['60000'] ?? 0)}/month at 60 s`);
  lines.push(`  with the operators' barrier steps, acks and snapshots: ${usd(r.checkpointingMonthlyUsd['1000'] ?? 0)}/month at 1 s, ${usd(r.checkpointingMonthlyUsd['60000'] ?? 0)}/month at 60 s`);
  const b = r.idleMonthlyBreakdown;
  const w = r.watchdog;
  lines.push(
    `idle (no events): ${usd(r.idleMonthlyUsd)}/month besides storage: watchdog every ${w?.rateMinutes ?? 0} min ${usd(b.watchdog ?? 0)} (${(w?.executionsPerMonth ?? 0).toFixed(0)} executions of ${w?.path.join(' > ') ?? ''}; EventBridge Scheduler $${(b.watchdogScheduler ?? 0).toFixed(4)} at list price, ${usd(b.watchdogSchedulerWithFreeTier ?? 0)} within its 14 M free tier), event source polling ${usd(b.eventSourcePolling ?? 0)} (${b.eventSourceMappings ?? 0} mappings), alarms ${usd(b.alarms ?? 0)}, checkpoints ${usd(b.checkpoints ?? 0)} (${b.idleWindowCheckpoints ?? 0} checkpoints measured in the idle window)`,
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
  for (const [e, rates] of Object.entries(r.writeUnitsPerEventByItem)) {
    for (const [rate, kinds] of Object.entries(rates)) {
      lines.push(
        `  ${e} at ${rate} ev/s: write units per event by item: ${Object.entries(kinds)
          .map(([k, n]) => `${k} ${n}`)
          .join(', ')}`,
      );
    }
  }
  for (const [e, kinds] of Object.entries(r.coordinatorUnitsPerCheckpointByItem ?? {})) {
    lines.push(
      `  ${e}: coordinator units per checkpoint by item (write/read): ${Object.entries(kinds)
        .map(([k, u]) => `${k} ${u.write}/${u.read}`)
        .join(', ')}`,
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
