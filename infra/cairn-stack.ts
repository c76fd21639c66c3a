import { Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { CairnJob, type CairnJobProps } from './cairn-job.js';
import { suppressFindings } from './nag.js';

export interface CairnStackProps extends StackProps {
  readonly job: CairnJobProps;
}

/** One deployable stack per job: the CairnJob construct plus the reviewed cdk-nag suppressions. */
export class CairnStack extends Stack {
  readonly job: CairnJob;

  constructor(scope: Construct, id: string, props: CairnStackProps) {
    super(scope, id, props);
    this.job = new CairnJob(this, 'Job', props.job);
    suppressFindings(this, this.job);
  }
}
