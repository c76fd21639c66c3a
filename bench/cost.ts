import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DEFAULT_COST_BENCH, QUICK_COST_BENCH, runCostBench, type CostBenchOptions } from './cost/cost-bench.js';
import { formatCostReport } from './cost/report.js';

/**
 * `npm run bench:cost`: each example on the local cloud at steady rates, billed by AWS's rules;
 * prints a table and writes bench/results/cost-latest.json (and --out if given).
 *
 *   npm run bench:cost                          # 4 rates (5, 20, 100, 500 ev/s) x 20 s per example (about 7 minutes)
 *   npm run bench:cost -- --quick               # 2 rates (5, 50 ev/s) x 8 s (about 2 minutes)
 *   npm run bench:cost -- --rates 5,10 --seconds 15 --examples word-count
 */

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    rates: { type: 'string' },
    seconds: { type: 'string' },
    warmup: { type: 'string' },
    idle: { type: 'string' },
    interval: { type: 'string' },
    examples: { type: 'string' },
    out: { type: 'string' },
  },
});

const base = values.quick ? QUICK_COST_BENCH : DEFAULT_COST_BENCH;
const options: CostBenchOptions = {
  ...base,
  ...(values.rates ? { rates: values.rates.split(',').map(Number) } : {}),
  ...(values.seconds ? { seconds: Number(values.seconds) } : {}),
  ...(values.warmup ? { warmupSeconds: Number(values.warmup) } : {}),
  ...(values.idle ? { idleSeconds: Number(values.idle) } : {}),
  ...(values.interval ? { intervalMs: Number(values.interval) } : {}),
  ...(values.examples ? { examples: values.examples.split(',') } : {}),
  log: (line) => process.stderr.write(`  ${line}\n`),
};
const command = process.argv.length > 2 ? `npm run bench:cost -- ${process.argv.slice(2).join(' ')}` : 'npm run bench:cost';
const result = await runCostBench(options, command);
process.stdout.write(`\n${formatCostReport(result)}\n`);
const resultsDir = join(dirname(fileURLToPath(import.meta.url)), 'results');
mkdirSync(resultsDir, { recursive: true });
const json = `${JSON.stringify(result, null, 2)}\n`;
writeFileSync(join(resultsDir, 'cost-latest.json'), json);
if (values.out) writeFileSync(values.out, json);
process.stdout.write(`results: bench/results/cost-latest.json${values.out ? ` and ${values.out}` : ''}\n`);
