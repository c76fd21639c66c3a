import { App, Aspects, Tags } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { CairnStack } from './cairn-stack.js';
import { examples } from '../examples/index.js';

/**
 * `npx cdk synth` (cdk.json: `npx tsx infra/app.ts`): the repository's own deployments, one
 * stack per example, `Cairn-<job>`, or only the one named by `-c job=<name>`; each deploys its
 * example module as a user's project deploys its job (`job: 'src/job.ts'`). Synthesis is offline:
 * no lookups, functions bundled locally by esbuild. cdk-nag's AwsSolutions pack checks every
 * stack; its reviewed suppressions live in infra/nag.ts.
 */
const app = new App();
const only = app.node.tryGetContext('job') as string | undefined;
const names = only ? [only] : Object.keys(examples);
for (const name of names) {
  const stack = new CairnStack(app, `Cairn-${name}`, {
    description: `Cairn job ${name}: serverless stream processing with Flink-style checkpoints`,
    job: { job: `examples/${name}.ts` },
    ...(process.env.CDK_DEFAULT_ACCOUNT ? { env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION } } : {}),
  });
  Tags.of(stack).add('cairn:job', name);
}
Aspects.of(app).add(new AwsSolutionsChecks({ verbose: true }));
app.synth();
