import fs from 'node:fs';
import path from 'node:path';
import { App, Aspects, type Environment } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { CairnStack } from '../../infra/cairn-stack.js';
import { examples } from '../../examples/index.js';
import type { CairnJobProps } from '../../infra/cairn-job.js';

export const REPO_ROOT = path.resolve(import.meta.dirname, '../..');

/** The feature flags of cdk.json, so tests synthesize what `npx cdk synth` does. */
export function cdkContext(): Record<string, unknown> {
  const cdkJson = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'cdk.json'), 'utf8')) as { context?: Record<string, unknown> };
  return cdkJson.context ?? {};
}

/**
 * A Cairn stack with cdk-nag applied. Bundling is skipped (`aws:cdk:bundling-stacks: []`):
 * the entries must exist, esbuild does not run; `npx cdk synth` bundles for real. `env` as
 * infra/app.ts passes it when CDK_DEFAULT_ACCOUNT is set; without it region and account
 * stay tokens (`AWS::Region`, `AWS::AccountId`).
 */
export function synthStack(props: ExampleJobProps = {}, id = `Cairn-${props.job ?? 'word-count'}`, env?: Environment): { stack: CairnStack; template: Template } {
  const app = new App({ context: { ...cdkContext(), 'aws:cdk:bundling-stacks': [] } });
  const stack = new CairnStack(app, id, { job: exampleJob(props), ...(env ? { env } : {}) });
  Aspects.of(app).add(new AwsSolutionsChecks({ verbose: true }));
  app.synth();
  return { stack, template: Template.fromStack(stack) };
}

/** CairnJob props with the job named by one of the repository's examples. */
export type ExampleJobProps = Omit<CairnJobProps, 'job'> & { readonly job?: string };

/** The example's definition with its module as the entry (no `cairn describe` child process). */
export function exampleJob(props: ExampleJobProps): CairnJobProps {
  const name = props.job ?? 'word-count';
  const example = examples[name];
  if (!example) throw new Error(`no example ${name}`);
  return { ...props, job: example, entry: `examples/${name}.ts`, projectRoot: REPO_ROOT };
}

type Json = Record<string, unknown>;

export function resourcesOf(template: Template, type: string): Array<[string, Json]> {
  return Object.entries(template.findResources(type)).map(([id, r]) => [id, (r as { Properties: Json }).Properties]);
}

/**
 * The state machine's ASL: DefinitionString is an Fn::Join of strings and references;
 * references become placeholders `${Ref}` / `${LogicalId.Attr}` so the JSON parses.
 */
export function definitionOf(properties: Json): { States: Record<string, Json>; StartAt: string; TimeoutSeconds?: number; QueryLanguage?: string } {
  const def = properties.DefinitionString as string | { 'Fn::Join': [string, unknown[]] };
  if (typeof def === 'string') return JSON.parse(def) as ReturnType<typeof definitionOf>;
  const text = def['Fn::Join'][1]
    .map((part) => {
      if (typeof part === 'string') return part;
      const p = part as Json;
      if ('Ref' in p) return `\${${String(p.Ref)}}`;
      if ('Fn::GetAtt' in p) return `\${${(p['Fn::GetAtt'] as string[]).join('.')}}`;
      return '${?}';
    })
    .join('');
  return JSON.parse(text) as ReturnType<typeof definitionOf>;
}

export interface PolicyStatement {
  readonly Effect: string;
  readonly Action: string | string[];
  readonly Resource: unknown;
}

export function statementsOf(template: Template): Array<{ policy: string; roles: string[]; statement: PolicyStatement }> {
  return resourcesOf(template, 'AWS::IAM::Policy').flatMap(([id, props]) =>
    ((props.PolicyDocument as { Statement: PolicyStatement[] }).Statement ?? []).map((statement) => ({
      policy: id,
      roles: ((props.Roles as Array<{ Ref: string }>) ?? []).map((r) => r.Ref),
      statement,
    })),
  );
}

export const actionsOf = (s: PolicyStatement): string[] => (Array.isArray(s.Action) ? s.Action : [s.Action]);
export const resourcesOfStatement = (s: PolicyStatement): unknown[] => (Array.isArray(s.Resource) ? (s.Resource as unknown[]) : [s.Resource]);
