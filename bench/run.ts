import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DEFAULT_AWS_COST, formatAwsCost, runAwsCost } from './aws-cost.js';
import { formatReport } from './report.js';
import { DEFAULT_SUITE, runSuite, type SuiteOptions } from './suite.js';

/**
 * `npm run bench`: checkpoint cost vs total state, and throughput with checkpointing on/off.
 * Prints a table and writes the results to bench/results/latest.json (and to --out if given).
 *
 *   npm run bench                       # the full run (10k vs 1M keys, 200k events)
 *   npm run bench -- --quick            # a small run (seconds)
 *   npm run bench -- --no-aws           # skip the local-cloud cost section
 *   npm run bench -- --out bench/results/2026-11-24.json
 */

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    out: { type: 'string' },
    'no-baseline': { type: 'boolean', default: false },
    'no-memory': { type: 'boolean', default: false },
    events: { type: 'string' },
    'large-keys': { type: 'string' },
    repeats: { type: 'string' },
    'no-aws': { type: 'boolean', default: false },
    'aws-events': { type: 'string' },
  },
});

const options: SuiteOptions = {
  ...DEFAULT_SUITE,
  ...(values.quick ? { smallKeys: 1_000, largeKeys: 20_000, changedPerEpoch: 200, epochs: 4, warmupEpochs: 1, events: 10_000, warmupEvents: 1_000, repeats: 1 } : {}),
  ...(values.events ? { events: Number(values.events) } : {}),
  ...(values.repeats ? { repeats: Number(values.repeats) } : {}),
  ...(values['large-keys'] ? { largeKeys: Number(values['large-keys']) } : {}),
  ...(values['no-baseline'] ? { baselineOff: false } : {}),
  ...(values['no-memory'] ? { inMemory: false } : {}),
  log: (line) => process.stderr.write(`  ${line}\n`),
};

const result = await runSuite(options);
// 3. AWS requests and cost per event, on the local cloud (needs the emulators: npm run cloud:install).
const aws = values['no-aws'] ? undefined : await runAwsCost({ ...DEFAULT_AWS_COST, events: Number(values['aws-events'] ?? (values.quick ? 300 : DEFAULT_AWS_COST.events)), log: options.log });
const displayed = process.argv.length > 2 ? `npm run bench -- ${process.argv.slice(2).join(' ')}` : 'npm run bench';
process.stdout.write(`\n${formatReport(result, displayed)}\n`);
if (aws) process.stdout.write(`\n${formatAwsCost(aws)}\n`);

const resultsDir = join(dirname(fileURLToPath(import.meta.url)), 'results');
mkdirSync(resultsDir, { recursive: true });
const json = `${JSON.stringify({ command: displayed, ...result, ...(aws ? { aws } : {}) }, null, 2)}\n`;
writeFileSync(join(resultsDir, 'latest.json'), json);
if (values.out) writeFileSync(values.out, json);
process.stdout.write(`results: ${join('bench', 'results', 'latest.json')}${values.out ? ` and ${values.out}` : ''}\n`);
