/** Lambda entry point of an operator vertex: the example named by CAIRN_JOB (functions/lib/example-job.ts). */
import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { exampleHandlers } from './lib/example-job.js';

export const handler = (event: SQSEvent, context: Context): Promise<SQSBatchResponse> => exampleHandlers().operator(event, context);
