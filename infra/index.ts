/**
 * `cairn/cdk`: the CairnJob construct (one job on SQS, Lambda, DynamoDB and Step Functions),
 * CairnStack (a stack of one CairnJob with the reviewed cdk-nag suppressions) and those
 * suppressions for a stack of your own. Peer dependencies: aws-cdk-lib, constructs, cdk-nag.
 *
 *   new CairnStack(app, 'Fraud', { job: { job: 'src/job.ts' } });
 */
export { CairnJob, type CairnJobProps } from './cairn-job.js';
export { CairnStack, type CairnStackProps } from './cairn-stack.js';
export { CheckpointCoordinator } from './coordinator.js';
export { suppressFindings } from './nag.js';
export type { JobSpec, VertexSpec } from './job-spec.js';
