import { examples } from '../../examples/index.js';
import type { JobDefinition } from '../../shared/core/definition.js';
import { createHandlers, HandlerConfigError, type JobHandlers } from '../../shared/lambda/index.js';

/**
 * The repository's own deployments (infra/app.ts) run its examples: CAIRN_JOB names one. A
 * user's project bundles its own job instead (`createHandlers(job)` from `cairn/lambda`).
 */
export function exampleJob(env: NodeJS.ProcessEnv = process.env): JobDefinition {
  const name = env.CAIRN_JOB;
  const example = name === undefined ? undefined : examples[name];
  if (!example) throw new HandlerConfigError(`CAIRN_JOB '${name ?? ''}' is not in the examples registry (${Object.keys(examples).join(', ')})`);
  return example;
}

let handlers: JobHandlers | undefined;
/** The example's handlers, made at the first invocation (the environment is read then). */
export function exampleHandlers(): JobHandlers {
  handlers ??= createHandlers(exampleJob());
  return handlers;
}
