import { App, Aspects, Duration, Tags } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { CairnStack } from './cairn-stack.js';
import { examples } from '../examples/index.js';

/**
 * `npx cdk synth` (cdk.json: `npx tsx infra/app.ts`): the repository's own deployments, one
 * stack per example, `Cairn-<job>`, or only the one named by `-c job=<name>`; each deploys its
 * example module as a user's project deploys its job (`job: 'src/job.ts'`). Synthesis is offline:
 * no lookups, functions bundled locally by esbuild. cdk-nag's AwsSolutions pack checks every
 * stack; its reviewed suppressions live in infra/nag.ts.
 *
 * `-c testSized=true` (npm run test:localstack) deploys test-sized stacks: operator, ingest and
 * dead-letter functions time out after 5 s, so a failed batch is redelivered after a 30 s
 * visibility timeout (6 x the function timeout) instead of 3 min, and the fault run's
 * redeliveries fit in CI. Everything else (maxReceiveCount, which must stay above the engine's
 * isolatePoisonAfterReceives, the checkpoint config) is the default a user gets.
 */
const app = new App();
const only = app.node.tryGetContext('job') as string | undefined;
const testSized = String(app.node.tryGetContext('testSized') ?? 'false') === 'true';
const names = only ? [only] : Object.keys(examples);
for (const name of names) {
  const stack = new CairnStack(app, `Cairn-${name}`, {
    description: `Cairn job ${name}: serverless stream processing with Flink-style checkpoints`,
    job: { job: `examples/${name}.ts`, ...(testSized ? { functionTimeout: Duration.seconds(5) } : {}) },
    ...(process.env.CDK_DEFAULT_ACCOUNT ? { env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION } } : {}),
  });
  Tags.of(stack).add('cairn:job', name);
}
Aspects.of(app).add(new AwsSolutionsChecks({ verbose: true }));
app.synth();
