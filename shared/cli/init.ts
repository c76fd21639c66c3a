import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { UsageError } from './jobs.js';
import { packageRoot } from '../package-root.js';

/**
 * `cairn init <dir>`: a working project around one job. Its `npm start` runs the job on the
 * sample events, `npm test` type-checks and runs a test with `cairn/testing`, and `npx cdk synth`
 * synthesizes a stack with a CairnJob of the job (cdk-nag checked). The tool versions are the
 * ones this cairn release was built and tested with.
 */

export interface InitOptions {
  /** The job's name (default: the directory's name, made a valid job name). */
  readonly name?: string;
  /** The dependency spec of cairn in package.json (default: ^ this version; a tarball: file:...). */
  readonly cairn?: string;
}

export function initCommand(dirArg: string, options: InitOptions, print: (line?: string) => void = (line = '') => void process.stdout.write(`${line}\n`)): number {
  const dir = resolve(dirArg);
  if (existsSync(dir) && readdirSync(dir).length > 0) throw new UsageError(`${dir} is not empty: cairn init writes a new project into an empty or new directory`);
  const name = options.name ?? jobNameFrom(basename(dir));
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(name)) throw new UsageError(`job name '${name}' must be 1-63 lowercase letters, digits and dashes (--name <name>)`);
  const manifest = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as Manifest;
  for (const [file, text] of Object.entries(projectFiles(name, manifest, options.cairn ?? `^${manifest.version}`))) {
    const path = join(dir, file);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text);
  }
  print(`created the Cairn project '${name}' in ${dir}`);
  print();
  print(`  cd ${dirArg}`);
  print('  npm install');
  print('  npm start        # the job on events.jsonl, on this machine');
  print('  npm test         # type-check and the job test (cairn/testing)');
  print('  npx cdk synth    # the AWS stack; npx cdk deploy to ship it');
  return 0;
}

interface Manifest {
  readonly version: string;
  readonly dependencies: Record<string, string>;
  readonly devDependencies?: Record<string, string>;
}

function jobNameFrom(dir: string): string {
  const name = dir
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63);
  return name || 'my-job';
}

function version(manifest: Manifest, pkg: string): string {
  const v = manifest.dependencies[pkg] ?? manifest.devDependencies?.[pkg];
  if (v === undefined) throw new Error(`cairn's package.json pins no version of ${pkg}`);
  return v;
}

function projectFiles(name: string, manifest: Manifest, cairn: string): Record<string, string> {
  const dev = ['aws-cdk', 'aws-cdk-lib', 'cdk-nag', 'constructs', 'typescript', 'vitest', '@types/node'];
  const packageJson = {
    name,
    version: '0.1.0',
    private: true,
    type: 'module',
    scripts: {
      start: 'cairn run src/job.ts --input events.jsonl --output out.jsonl',
      test: 'tsc --noEmit && vitest run',
      synth: 'cdk synth',
    },
    dependencies: { cairn, zod: version(manifest, 'zod') },
    devDependencies: Object.fromEntries(dev.map((pkg) => [pkg, version(manifest, pkg)])),
  };
  const stackName = name
    .split('-')
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join('');
  return {
    'package.json': `${JSON.stringify(packageJson, null, 2)}\n`,
    'tsconfig.json': `${JSON.stringify(
      {
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          noEmit: true,
          skipLibCheck: true,
          allowImportingTsExtensions: true,
          lib: ['ES2023'],
          types: ['node'],
        },
        include: ['src', 'test', 'infra'],
      },
      null,
      2,
    )}\n`,
    'cdk.json': `${JSON.stringify({ app: 'npx tsx infra/app.ts', watch: { include: ['src/**', 'infra/**'] } }, null, 2)}\n`,
    '.gitignore': ['node_modules/', 'cdk.out/', '.cairn/', 'out.jsonl', ''].join('\n'),
    'src/job.ts': `import { defineJob } from 'cairn';
import { z } from 'zod';

/** A payment. Lines of the input that are not one become dead letters, with the reason. */
export const Payment = z.object({ card: z.string().min(1), amount: z.number().positive() });

export interface Alert {
  readonly card: string;
  readonly total: number;
}

/** Alerts when a card's running total passes 100: keyed state, exactly-once across failures. */
export default defineJob({
  name: '${name}',
  checkpoint: { intervalMs: 1000 },
  build(j) {
    j.source('payments', { schema: Payment, partitions: 2, partitionKey: (p) => p.card })
      .keyBy((p) => p.card)
      .process<Alert>('spent', (p, ctx) => {
        const spent = ctx.state.value<number>('spent');
        const total = (spent.get() ?? 0) + p.amount;
        spent.set(total);
        if (total > 100) ctx.emit({ card: p.card, total });
      })
      .sink('alerts');
  },
});
`,
    'test/job.test.ts': `import { runJob } from 'cairn/testing';
import { describe, expect, it } from 'vitest';
import job from '../src/job.ts';

describe('${name}', () => {
  it('alerts once a card has spent more than 100', async () => {
    const run = await runJob(job, [
      { card: 'c1', amount: 60 },
      { card: 'c2', amount: 10 },
      { card: 'c1', amount: 50 },
      { card: 'c2', amount: 95 },
      { card: 'c2', amount: 1 },
    ]);
    expect(run.status).toBe('FINISHED');
    const byCard = (a: unknown, b: unknown): number => JSON.stringify(a).localeCompare(JSON.stringify(b));
    expect([...(run.output.alerts ?? [])].sort(byCard)).toEqual([
      { card: 'c1', total: 110 },
      { card: 'c2', total: 105 },
      { card: 'c2', total: 106 },
    ]);
  });

  it('keeps bad input as dead letters with the reason, and processes the rest', async () => {
    const run = await runJob(job, [{ card: 'c1', amount: 101 }, 'not json', { card: 'c1', amount: 'ten' }]);
    expect(run.output.alerts).toEqual([{ card: 'c1', total: 101 }]);
    expect(run.deadLetters.map((d) => [d.id, d.reason])).toEqual([
      ['ingress:event:1', 'malformed-json'],
      ['ingress:event:2', 'schema-violation'],
    ]);
  });
});
`,
    'infra/app.ts': `import { App, Aspects } from 'aws-cdk-lib';
import { CairnStack } from 'cairn/cdk';
import { AwsSolutionsChecks } from 'cdk-nag';

/** \`npx cdk synth\` / \`npx cdk deploy\`: the job on AWS (SQS, Lambda, DynamoDB, Step Functions), cdk-nag checked. */
const app = new App();
const account = process.env.CDK_DEFAULT_ACCOUNT;
const region = process.env.CDK_DEFAULT_REGION;
new CairnStack(app, '${stackName}', {
  job: { job: 'src/job.ts' },
  ...(account ? { env: { account, region } } : {}),
});
Aspects.of(app).add(new AwsSolutionsChecks({ verbose: true }));
app.synth();
`,
    'events.jsonl': ['{"card":"c1","amount":60}', '{"card":"c2","amount":10}', '{"card":"c1","amount":50}', 'not json', '{"card":"c2","amount":95}', ''].join('\n'),
    'README.md': `# ${name}

A [Cairn](https://www.npmjs.com/package/cairn) stream job: exactly-once stateful processing on
SQS, Lambda and DynamoDB, with Flink-style checkpoints.

\`\`\`sh
npm install
npm start                      # src/job.ts over events.jsonl; committed output in out.jsonl
npx cairn dead-letters ${name}     # the bad line, with its line number and reason
npm test                       # tsc + the job test (cairn/testing, no AWS)
npx cairn run src/job.ts --input events.jsonl --target local-cloud   # the AWS adapters on local emulators
npx cdk synth                  # the stack (cdk-nag checked); npx cdk deploy to ship it
\`\`\`

Feed it your own events with \`--input <file.jsonl>\` (or \`--input -\` for stdin), one JSON event
per line.
`,
  };
}
