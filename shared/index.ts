/**
 * `cairn`: define a job (defineJob, the job builder), its checkpoint config and restart
 * strategy, and the errors the engine throws. Runtimes are subpaths: `cairn/embedded`,
 * `cairn/testing`, `cairn/aws`.
 */
export { defineJob, describeJob, isJobDefinition, sinksOf, type Example, type JobDefinition, type JobDescription, type VertexDescription } from './core/definition.js';
export { job, type DataStream, type JobBuilder, type JobGraph, type KeyedContext, type KeyedStream, type SinkOptions, type SourceOptions, type WindowSpec } from './core/job.js';
export { parseCheckpointConfig, parseRuntimeLimits, type CheckpointConfig, type CheckpointConfigInput, type RuntimeLimits, type RuntimeLimitsInput } from './core/config.js';
export { DEFAULT_RESTART_STRATEGY, validateRestartStrategy, type RestartStrategy } from './core/protocol/restart-strategy.js';
export * from './core/errors.js';
export { keyGroupOf, murmur3 } from './core/hashing.js';
export type { CheckpointRecord, DeadLetter, JobRecord, JobStatus } from './core/ports.js';
