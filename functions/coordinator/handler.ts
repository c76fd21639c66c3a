/** Lambda entry point of the coordinator's task states and ack listener: the example named by CAIRN_JOB. */
import type { AckStreamEvent, CoordinatorEvent } from '../../shared/lambda/index.js';
import { exampleHandlers } from '../lib/example-job.js';

export const handler = (event: CoordinatorEvent): Promise<unknown> => exampleHandlers().coordinator(event);
export const ackListener = (event: AckStreamEvent): Promise<{ notified: number[] }> => exampleHandlers().ackListener(event);
