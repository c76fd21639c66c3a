import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cloudEndpoint, credentials, region } from '../local-cloud/helpers.js';

/**
 * Cairn as a package, tried as a user would, in a project OUTSIDE the repo: `npm pack` the repo,
 * `cairn init` a project in a temporary directory, install the tarball there (from the file;
 * every other dependency from the npm cache, or the registry), then use the project as its
 * README says: its `npm test`, its job over a JSONL file, `npx cdk synth` with a real account
 * and region, and its job on the local cloud. Nothing of the repo's node_modules is used.
 */

const ROOT = resolve(import.meta.dirname, '../..');
const quiet = { npm_config_fund: 'false', npm_config_audit: 'false', npm_config_update_notifier: 'false' };
const run = (cmd: string, args: readonly string[], cwd: string, env: Record<string, string> = {}): string =>
  execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...quiet, ...env } });

/** A command whose failure is part of what is checked: exit code and all output. */
const attempt = (cmd: string, args: readonly string[], cwd: string, env: Record<string, string> = {}): { code: number | null; output: string } => {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env: { ...process.env, ...quiet, ...env } });
  return { code: r.status, output: `${r.stdout}${r.stderr}` };
};

describe('a project made by `cairn init`, outside the repo, with the packed tarball installed', () => {
  let work: string;
  let project: string;
  let tarball: string;
  let packedFiles: string[];

  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'cairn-package-'));
    const packed = JSON.parse(run('npm', ['pack', '--pack-destination', work, '--json'], ROOT)) as Array<{ filename: string; files: Array<{ path: string }> }>;
    const entry = packed[0];
    if (!entry) throw new Error('npm pack printed nothing');
    tarball = join(work, entry.filename);
    packedFiles = entry.files.map((f) => f.path);
    project = join(work, 'spend-alerts');
    run(process.execPath, [join(ROOT, 'bin/cairn.mjs'), 'init', project, '--cairn', `file:${tarball}`], work);
    run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund'], project);
  }, 600_000);

  afterAll(() => {
    rmSync(work, { recursive: true, force: true });
  });

  it('the tarball holds compiled ESM with types, the bin and the construct, and no sources or tests', () => {
    for (const f of [
      'dist/shared/index.js',
      'dist/shared/index.d.ts',
      'dist/shared/embedded/index.js',
      'dist/shared/testing/index.d.ts',
      'dist/shared/cli/main.js',
      'dist/infra/index.js',
      'dist/infra/index.d.ts',
      'bin/cairn.mjs',
      'package.json',
    ]) {
      expect(packedFiles, f).toContain(f);
    }
    expect(packedFiles.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([]);
    expect(packedFiles.filter((f) => f.startsWith('test/') || f.endsWith('.map'))).toEqual([]);
    const manifest = JSON.parse(readFileSync(join(project, 'node_modules/cairn/package.json'), 'utf8')) as { peerDependenciesMeta: Record<string, { optional: boolean }> };
    // An embedded-only user does not pay for the CDK.
    for (const peer of ['aws-cdk-lib', 'constructs', 'cdk-nag']) expect(manifest.peerDependenciesMeta[peer], peer).toEqual({ optional: true });
  });

  it('init wrote the project: the job, a test with cairn/testing, a CDK app with a CairnJob, sample events, README', () => {
    for (const f of ['package.json', 'tsconfig.json', 'cdk.json', 'src/job.ts', 'test/job.test.ts', 'infra/app.ts', 'events.jsonl', 'README.md', '.gitignore'])
      expect(existsSync(join(project, f)), f).toBe(true);
    const pkg = JSON.parse(readFileSync(join(project, 'package.json'), 'utf8')) as { scripts: Record<string, string>; dependencies: Record<string, string> };
    expect(pkg.scripts.start).toBe('cairn run src/job.ts --input events.jsonl --output out.jsonl');
    expect(pkg.scripts.test).toBe('tsc --noEmit && vitest run');
    expect(pkg.dependencies.cairn).toBe(`file:${tarball}`);
    // A second init into the same directory is refused, not merged.
    const again = attempt(process.execPath, [join(ROOT, 'bin/cairn.mjs'), 'init', project], work);
    expect(again.code).toBe(2);
    expect(again.output).toContain(`error: ${project} is not empty`);
  });

  it('its `npm test` passes right after `npm install`: tsc against the published types, then the job test', () => {
    const out = run('npm', ['test'], project, { NO_COLOR: '1', FORCE_COLOR: '0' });
    expect(out).toMatch(/Tests\s+2 passed \(2\)/);
  });

  it('`npm start` runs its job over events.jsonl with the installed bin: exactly the expected output, the bad line a dead letter with its line number', () => {
    writeFileSync(join(project, 'expected.jsonl'), '{"card":"c1","total":110}\n{"card":"c2","total":105}\n');
    const out = run('npm', ['start'], project);
    expect(out).toMatch(/cairn run spend-alerts: 5 events from events\.jsonl/);
    expect(out).toContain('dead letters: 1 (malformed-json 1)');
    expect(out).toMatch(/malformed-json at input line 4: malformed JSON/);
    const sorted = (file: string): string[] => readFileSync(join(project, file), 'utf8').trim().split('\n').sort();
    expect(sorted('out.jsonl')).toEqual(sorted('expected.jsonl'));
    // The state directory is the job's name, so the inspecting commands find it by module path or by name.
    const { deadLetters } = JSON.parse(run(join(project, 'node_modules/.bin/cairn'), ['dead-letters', 'src/job.ts', '--json'], project)) as {
      deadLetters: Array<{ reason: string; line?: number; payload: string }>;
    };
    expect(deadLetters.map((l) => [l.reason, l.line, l.payload])).toEqual([['malformed-json', 4, 'not json']]);
    expect(run(join(project, 'node_modules/.bin/cairn'), ['output', 'spend-alerts', '--sink', 'alerts'], project).trim().split('\n').sort()).toEqual(sorted('expected.jsonl'));
  });

  it("the package's own examples run from the installed bin (they import the API by package name: the package's exports)", () => {
    const out = run(join(project, 'node_modules/.bin/cairn'), ['run', 'windowed-count', '--memory', '--events', '300'], project);
    expect(out).toMatch(/results: exactly-once ✔ \(\d+ records match the oracle\)/);
  });

  it('`npx cdk synth` with a real account and region: cdk-nag clean, one FIFO queue and one function per vertex of this job, ARNs in eu-west-1 / 123456789012', () => {
    // The CDK CLI sets CDK_DEFAULT_REGION for the app from the AWS SDK's region (AWS_REGION, the
    // profile, else us-east-1), over the caller's: a user's configured region is AWS_REGION.
    const synth = attempt('npx', ['cdk', 'synth', '--quiet'], project, { CDK_DEFAULT_ACCOUNT: '123456789012', CDK_DEFAULT_REGION: 'eu-west-1', AWS_REGION: 'eu-west-1' });
    expect(synth.code, synth.output).toBe(0);
    const template = JSON.parse(readFileSync(join(project, 'cdk.out/SpendAlerts.template.json'), 'utf8')) as { Resources: Record<string, { Type: string; Properties: Record<string, unknown> }> };
    const resources = Object.values(template.Resources);
    const queues = resources.filter((r) => r.Type === 'AWS::SQS::Queue');
    // payments -> spent: a FIFO queue + FIFO DLQ each; the standard ingress queue + its DLQ.
    expect(queues.filter((q) => q.Properties.FifoQueue === true && q.Properties.RedrivePolicy !== undefined)).toHaveLength(2);
    expect(queues).toHaveLength(6);
    const functions = resources.filter((r) => r.Type === 'AWS::Lambda::Function' && typeof r.Properties.Handler === 'string' && r.Properties.Handler.startsWith('index.'));
    expect(functions.map((f) => f.Properties.Handler).sort()).toEqual(['index.coordinator', 'index.deadLetter', 'index.ingest', 'index.operator', 'index.operator']);
    expect(
      functions
        .map((f) => (f.Properties.Environment as { Variables: Record<string, unknown> }).Variables.CAIRN_VERTEX)
        .filter(Boolean)
        .sort(),
    ).toEqual(['payments', 'spent']);
    const text = JSON.stringify(template);
    expect(text).toContain(':states:eu-west-1:123456789012:stateMachine:SpendAlerts-checkpoints');
    expect(text).toContain('"aws:SourceAccount":"123456789012"');
    // No ARN is left to tokens (the dashboard's widgets name their region with one, as CloudWatch renders it).
    const withoutDashboard = JSON.stringify(Object.values(template.Resources).filter((r) => r.Type !== 'AWS::CloudWatch::Dashboard'));
    expect(withoutDashboard).not.toMatch(/"Ref":"AWS::(Region|AccountId)"/);
    // The functions bundle the project's own job.
    const asset = JSON.parse(readFileSync(join(project, 'cdk.out/SpendAlerts.assets.json'), 'utf8')) as { files: Record<string, { source: { path: string } }> };
    const bundles = Object.values(asset.files).filter((f) => existsSync(join(project, 'cdk.out', f.source.path, 'index.mjs')));
    expect(bundles).toHaveLength(1);
    expect(readFileSync(join(project, 'cdk.out', bundles[0]?.source.path ?? '', 'index.mjs'), 'utf8')).toContain('spend-alerts');
  });

  it('installs the local cloud from the installed package (`cairn cloud install`, the pinned script shipped in the tarball)', () => {
    // This run's emulators are installed already: the shipped script finds every pinned version in place.
    const cache = process.env.CAIRN_CLOUD_CACHE ?? join(ROOT, '.cache', 'cloud');
    const result = attempt(join(project, 'node_modules/.bin/cairn'), ['cloud', 'install'], project, { CAIRN_CLOUD_CACHE: cache });
    expect(result.output).toContain(`[cloud] installing into ${cache}`);
    expect(result.output).toMatch(/\[cloud:install\] dynamodb-local [\d.]+ already installed/);
    expect(result.code, result.output).toBe(0);
    expect(existsSync(join(project, 'node_modules/cairn/scripts/cloud/install.sh'))).toBe(true);
  });

  it('runs its job on the local cloud with --input', () => {
    const env = { AWS_ENDPOINT_URL: cloudEndpoint(), AWS_REGION: region, AWS_ACCESS_KEY_ID: credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey };
    const out = run(
      join(project, 'node_modules/.bin/cairn'),
      ['run', 'src/job.ts', '--input', 'events.jsonl', '--target', 'local-cloud', '--output', 'cloud.jsonl', '--interval', '200'],
      project,
      env,
    );
    expect(out).toMatch(/spend-alerts: FINISHED after/);
    expect(out).toContain('dead letters: 1 (malformed-json 1)');
    expect(readFileSync(join(project, 'cloud.jsonl'), 'utf8').trim().split('\n').sort()).toEqual(['{"card":"c1","total":110}', '{"card":"c2","total":105}']);
  });
});
