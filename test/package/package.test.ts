import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * Cairn as a package, tried as a user would: `npm pack` the repo, install the tarball (from the
 * file; its dependencies from the npm cache or registry) into a project in a temporary directory
 * outside the repo, and use it there with nothing of the repo's devDependencies: the `cairn` bin
 * runs the user's TypeScript job over a JSONL file, `cairn/testing` runs it in a script, and the
 * user's code type-checks against the published `.d.ts` through the package's subpath exports.
 */

const ROOT = resolve(import.meta.dirname, '../..');
const run = (cmd: string, args: readonly string[], cwd: string, input?: string): string =>
  execFileSync(cmd, args, {
    cwd,
    encoding: 'utf8',
    stdio: ['pipe', 'pipe', 'pipe'],
    ...(input === undefined ? {} : { input }),
    env: { ...process.env, npm_config_fund: 'false', npm_config_audit: 'false' },
  });

const JOB = `import { defineJob } from 'cairn';
import { z } from 'zod';

/** Alerts when a card has spent more than 100 in total. */
export default defineJob({
  name: 'fraud',
  checkpoint: { intervalMs: 20 },
  build(j) {
    j.source('payments', { schema: z.object({ card: z.string(), amount: z.number() }), partitions: 2, partitionKey: (p) => p.card })
      .keyBy((p) => p.card)
      .process<{ card: string; total: number }>('spent', (p, ctx) => {
        const spent = ctx.state.value<number>('spent');
        const total = (spent.get() ?? 0) + p.amount;
        spent.set(total);
        if (total > 100) ctx.emit({ card: p.card, total });
      })
      .sink('alerts');
  },
});
`;

const TEST = `import { runJob } from 'cairn/testing';
import job from './src/job.js';

const run = await runJob(job, [{ card: 'x', amount: 60 }, { card: 'x', amount: 41 }, 'not json', { card: 'y', amount: 'ten' }]);
console.log(JSON.stringify({ status: run.status, output: run.output, deadLetters: run.deadLetters.map((d) => [d.id, d.reason]) }));
`;

describe('the package, installed in a project outside the repo', () => {
  let work: string;
  let project: string;
  let tarball: string;

  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'cairn-package-'));
    const packed = JSON.parse(run('npm', ['pack', '--pack-destination', work, '--json'], ROOT)) as Array<{ filename: string; files: Array<{ path: string }> }>;
    const entry = packed[0];
    if (!entry) throw new Error('npm pack printed nothing');
    tarball = join(work, entry.filename);
    project = join(work, 'my-job');
    mkdirSync(join(project, 'src'), { recursive: true });
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'my-job', private: true, type: 'module', dependencies: { cairn: `file:${tarball}`, zod: '4.6.7' } }, null, 2));
    writeFileSync(join(project, 'src/job.ts'), JOB);
    writeFileSync(join(project, 'test.ts'), TEST);
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, lib: ['ES2023', 'DOM'], types: [] },
        include: ['src', 'test.ts'],
      }),
    );
    run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund'], project);
  }, 300_000);

  afterAll(() => {
    rmSync(work, { recursive: true, force: true });
  });

  it('the tarball holds compiled ESM with types and the bin, and no sources or tests', () => {
    const files = run('tar', ['-tzf', tarball], work).trim().split('\n');
    for (const f of ['dist/shared/index.js', 'dist/shared/index.d.ts', 'dist/shared/embedded/index.js', 'dist/shared/testing/index.d.ts', 'dist/shared/cli/main.js', 'bin/cairn.mjs', 'package.json']) {
      expect(files, f).toContain(`package/${f}`);
    }
    expect(files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([]);
    expect(files.filter((f) => f.includes('/test/') || f.endsWith('.map'))).toEqual([]);
    const manifest = JSON.parse(readFileSync(join(project, 'node_modules/cairn/package.json'), 'utf8')) as { peerDependenciesMeta: Record<string, { optional: boolean }> };
    // An embedded-only user does not pay for the CDK.
    expect(manifest.peerDependenciesMeta['aws-cdk-lib']).toEqual({ optional: true });
    expect(() => run('node', ['-e', "import('aws-cdk-lib')"], project)).toThrow();
  });

  it("`cairn run ./src/job.ts --input events.jsonl` runs the user's job with the installed bin: exact output, the bad line as a dead letter", () => {
    writeFileSync(join(project, 'events.jsonl'), ['{"card":"c1","amount":60}', '{"card":"c2","amount":10}', '{"card":"c1","amount":50}', 'broken', '{"card":"c2","amount":95}', ''].join('\n'));
    const out = run(join(project, 'node_modules/.bin/cairn'), ['run', './src/job.ts', '--input', 'events.jsonl', '--output', 'out.jsonl', '--memory'], project);
    expect(out).toMatch(/cairn run fraud: 5 events from events\.jsonl/);
    expect(out).toContain('dead letters: 1 (malformed-json 1)');
    expect(out).toMatch(/malformed-json at input line 4: malformed JSON/);
    expect(readFileSync(join(project, 'out.jsonl'), 'utf8').trim().split('\n').sort()).toEqual(['{"card":"c1","total":110}', '{"card":"c2","total":105}']);
  });

  it("cairn/testing runs the job in the user's own script, and the user's code type-checks against the published types", () => {
    const line = run('node', ['--import', 'tsx', 'test.ts'], project).trim();
    expect(JSON.parse(line)).toEqual({
      status: 'FINISHED',
      output: { alerts: [{ card: 'x', total: 101 }] },
      deadLetters: [
        ['ingress:event:2', 'malformed-json'],
        ['ingress:event:3', 'schema-violation'],
      ],
    });
    expect(run('node', [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', '.'], project)).toBe('');
  });

  it("cairn/lambda makes the handlers of the user's job (what a function entry file bundles)", () => {
    const entry = "import job from './src/job.ts'; import { createHandlers } from 'cairn/lambda'; const h = createHandlers(job, {}); console.log(Object.keys(h).sort().join(','));";
    writeFileSync(join(project, 'entry.ts'), entry);
    expect(run('node', ['--import', 'tsx', 'entry.ts'], project).trim()).toBe('ackListener,coordinator,ingest,operator');
  });
});
