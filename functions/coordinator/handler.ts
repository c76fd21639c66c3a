/** Lambda entry point of the coordinator's task states: the example named by CAIRN_JOB. */
import type { Context } from 'aws-lambda';
import type { CoordinatorEvent } from '../../shared/lambda/index.js';
import { exampleHandlers } from '../lib/example-job.js';

export const handler = (event: CoordinatorEvent, context?: Context): Promise<unknown> => exampleHandlers().coordinator(event, context);
