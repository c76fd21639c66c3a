export {
  createLocalCloudJob,
  LocalCloudJob,
  type ClientRole,
  type LocalCloudCounters,
  type LocalCloudFaults,
  type LocalCloudJobOptions,
  type RequestCounters,
  type TransportFaults,
} from './local-cloud-job.js';
export { SqsEventSource, type EventSourceOptions, type SqsHandler } from './event-source.js';
export { createJobQueues, deleteJobQueues, queueName, type JobQueues, type QueuePair } from './queues.js';
