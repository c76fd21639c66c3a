import type { Stack } from 'aws-cdk-lib';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import { NagSuppressions, type NagPackSuppression } from 'cdk-nag';
import type { CairnJob } from './cairn-job.js';

/**
 * The reviewed cdk-nag (AwsSolutions) findings of a Cairn stack. Each suppression names the
 * exact wildcard it accepts (`appliesTo`) where the rule supports it, and why it is needed.
 */

/**
 * Region and account inside a finding's ARN: `<AWS::Region>` / `<AWS::AccountId>` tokens when
 * the stack is environment-agnostic, literals when it has an env (infra/app.ts passes one when
 * CDK_DEFAULT_ACCOUNT is set). A suppression naming one must accept either form, and only those.
 */
const REGION = '(?:<AWS::Region>|[a-z]{2}(?:-[a-z]+)+-\\d)';
const ACCOUNT = '(?:<AWS::AccountId>|\\d{12})';

/** Node.js 22 is the runtime the job code is developed and tested against (TESTING.md); moving to a newer one is a deliberate upgrade. */
const RUNTIME: NagPackSuppression = {
  id: 'AwsSolutions-L1',
  reason: 'Pinned to Node.js 22 on purpose: the engine and its tests target Node 20/22 (TESTING.md); a runtime upgrade is a deliberate, tested change, not an automatic one.',
};

/** Spilled state values live under `spill/<table>/<content-derived key>`; the keys are not known in advance. */
const SPILL_OBJECTS: NagPackSuppression = {
  id: 'AwsSolutions-IAM5',
  reason: "State values above the DynamoDB item limit spill to S3 under content-derived keys; access is scoped to the spill/ prefix of this job's own bucket and to Get/Put/DeleteObject.",
  appliesTo: [{ regex: '/^Resource::<JobStateBucket[A-Za-z0-9]*\\.Arn>\\/spill\\/\\*$/' }],
};

function fnSuppressions(fn: lambda.Function, extra: NagPackSuppression[] = []): void {
  NagSuppressions.addResourceSuppressions(fn, [RUNTIME], false);
  if (fn.role) NagSuppressions.addResourceSuppressions(fn.role, [SPILL_OBJECTS, ...extra], true);
}

export function suppressFindings(_stack: Stack, job: CairnJob): void {
  for (const vertex of job.vertices.values()) fnSuppressions(vertex.fn);
  fnSuppressions(job.ingestFunction);
  fnSuppressions(job.coordinatorFunction);
  fnSuppressions(job.deadLetterFunction);

  const workflowRoleFindings: NagPackSuppression[] = [
    {
      id: 'AwsSolutions-IAM5',
      reason: 'lambda:InvokeFunction on the coordinator function and its versions (<arn>:*), the only function the workflow invokes.',
      appliesTo: [{ regex: '/^Resource::<JobCoordinator[A-Za-z0-9]*\\.Arn>:\\*$/' }],
    },
    {
      id: 'AwsSolutions-IAM5',
      reason: 'CloudWatch Logs delivery (execution logging, AwsSolutions-SF1) and X-Ray tracing (AwsSolutions-SF2) actions do not support resource-level permissions.',
      appliesTo: ['Resource::*'],
    },
  ];
  NagSuppressions.addResourceSuppressions(job.coordinator.recoveryStateMachine.role, workflowRoleFindings, true);
  NagSuppressions.addResourceSuppressions(
    job.coordinator.checkpointStateMachine.role,
    [
      ...workflowRoleFindings,
      {
        id: 'AwsSolutions-IAM5',
        reason: 'The .sync start of the recovery workflow must describe/stop its executions, whose ARNs (execution:<recovery state machine name>:*) are only known at run time.',
        appliesTo: [{ regex: `/^Resource::arn:<AWS::Partition>:states:${REGION}:${ACCOUNT}:execution:.*\\*$/` }],
      },
    ],
    true,
  );
}
