import { existsSync } from 'node:fs';
import { basename, extname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { examples } from '../../examples/index.js';
import type { Example } from '../../examples/types.js';
import { isJobDefinition, type JobDefinition } from '../core/definition.js';

/** A CLI usage problem (unknown job, bad option): printed without a stack, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/**
 * `<job>` is an example name (examples/index.ts) or a path to a module whose default export is a
 * job definition (`defineJob`, shared/core/definition.ts) or an Example (a definition with a demo
 * generator and an oracle).
 */
export async function resolveJob(job: string): Promise<JobDefinition | Example> {
  const example = examples[job];
  if (example) return example;
  if (!looksLikePath(job)) {
    throw new UsageError(`unknown job '${job}': use one of ${Object.keys(examples).join(', ')} or a path to a module whose default export is a job definition (defineJob)`);
  }
  const path = resolve(job);
  if (!existsSync(path)) throw new UsageError(`job module ${path} does not exist`);
  let module: { default?: unknown };
  try {
    if (/\.(c|m)?ts$/.test(path)) await loadTypeScript();
    module = (await import(pathToFileURL(path).href)) as { default?: unknown };
  } catch (error) {
    throw new UsageError(`job module ${job} failed to load: ${(error as Error).message}`);
  }
  const candidate = module.default;
  if (candidate === undefined) throw new UsageError(`job module ${job} has no default export: \`export default defineJob({ name, build })\``);
  if (!isJobDefinition(candidate)) throw new UsageError(`the default export of ${job} is not a job definition (defineJob({ name, build }))`);
  return candidate;
}

let typeScript: Promise<void> | undefined;
/** A job module in TypeScript: the installed (compiled) CLI loads it through tsx, as a source checkout runs. */
function loadTypeScript(): Promise<void> {
  typeScript ??= import('tsx/esm/api').then(({ register }) => void register());
  return typeScript;
}

/** An Example also carries a demo generator and an oracle for its output. */
export function isExample(value: JobDefinition | Example): value is Example {
  const e = value as Partial<Record<keyof Example, unknown>>;
  return typeof e.sink === 'string' && ['generate', 'oracle', 'canonical'].every((k) => typeof e[k as keyof Example] === 'function');
}

/** The job's name for state directories: the example name, or the module's file name. */
export function jobName(job: string): string {
  if (examples[job]) return job;
  return looksLikePath(job) ? basename(job, extname(job)) : job;
}

export function defaultStateDir(job: string): string {
  return join('.cairn', jobName(job));
}

function looksLikePath(job: string): boolean {
  return /[/\\]/.test(job) || /\.(c|m)?(t|j)s$/.test(job);
}
