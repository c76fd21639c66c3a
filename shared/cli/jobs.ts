import { existsSync } from 'node:fs';
import { basename, extname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { examples } from '../../examples/index.js';
import type { Example } from '../../examples/types.js';

/** A CLI usage problem (unknown job, bad option): printed without a stack, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** `<job>` is an example name (examples/index.ts) or a path to a module whose default export is an Example. */
export async function resolveJob(job: string): Promise<Example> {
  const example = examples[job];
  if (example) return example;
  if (!looksLikePath(job)) {
    throw new UsageError(`unknown job '${job}': use one of ${Object.keys(examples).join(', ')} or a path to a .ts module exporting an Example as default`);
  }
  const path = resolve(job);
  if (!existsSync(path)) throw new UsageError(`job module ${path} does not exist`);
  const module = (await import(pathToFileURL(path).href)) as { default?: unknown };
  const candidate = module.default;
  if (!isExample(candidate)) {
    throw new UsageError(`${job} must export an Example as default (name, sink, build(), generate(), oracle(), canonical())`);
  }
  return candidate;
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

function isExample(value: unknown): value is Example {
  if (typeof value !== 'object' || value === null) return false;
  const e = value as Record<string, unknown>;
  return typeof e.name === 'string' && typeof e.sink === 'string' && ['build', 'generate', 'oracle', 'canonical'].every((k) => typeof e[k] === 'function');
}
