import { existsSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { isJobDefinition, type Example, type JobDefinition } from '../core/definition.js';
import { packageRoot } from '../package-root.js';

/** A CLI usage problem (unknown job, bad option): printed without a stack, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/**
 * `<job>` is a path to a module whose default export is a job definition (`defineJob`,
 * shared/core/definition.ts), or the name of one of the package's examples (its
 * `examples/<name>` module, found by file: the library does not import them).
 */
export async function resolveJob(job: string): Promise<JobDefinition | Example> {
  return loadJobModule(jobModulePath(job), job);
}

/** The file of `<job>`: the module the path names, or the example's module. */
export function jobModulePath(job: string): string {
  if (!looksLikePath(job)) {
    const module = exampleModule(job);
    if (!module) throw new UsageError(`unknown job '${job}': use one of ${exampleNames().join(', ')} or a path to a module whose default export is a job definition (defineJob)`);
    return module;
  }
  const path = resolve(job);
  if (!existsSync(path)) throw new UsageError(`job module ${path} does not exist`);
  return path;
}

async function loadJobModule(path: string, shown: string): Promise<JobDefinition> {
  let module: { default?: unknown };
  try {
    if (/\.(c|m)?ts$/.test(path)) await loadTypeScript();
    module = (await import(pathToFileURL(path).href)) as { default?: unknown };
  } catch (error) {
    throw new UsageError(`job module ${shown} failed to load: ${(error as Error).message}`);
  }
  const candidate = module.default;
  if (candidate === undefined) throw new UsageError(`job module ${shown} has no default export: \`export default defineJob({ name, build })\``);
  if (!isJobDefinition(candidate)) throw new UsageError(`the default export of ${shown} is not a job definition (defineJob({ name, build }))`);
  return candidate;
}

let typeScript: Promise<void> | undefined;
/** A job module in TypeScript: the installed (compiled) CLI loads it through tsx, as a source checkout runs. */
function loadTypeScript(): Promise<void> {
  typeScript ??= import('tsx/esm/api').then(({ register }) => void register());
  return typeScript;
}

/** The examples shipped with the package: `examples/*.ts` in a checkout, `dist/examples/*.js` installed. */
export function exampleNames(): string[] {
  const names = new Set<string>();
  for (const [dir, ext] of exampleDirs()) {
    if (!existsSync(dir)) continue;
    for (const file of readdirSync(dir)) if (file.endsWith(ext) && !file.endsWith(`.d${ext}`) && !NOT_JOBS.has(file.slice(0, -ext.length))) names.add(file.slice(0, -ext.length));
  }
  return [...names].sort();
}

const NOT_JOBS = new Set(['index', 'types']);

function exampleModule(name: string): string | undefined {
  if (NOT_JOBS.has(name) || !/^[a-z0-9-]+$/.test(name)) return undefined;
  for (const [dir, ext] of exampleDirs()) {
    const file = join(dir, `${name}${ext}`);
    if (existsSync(file)) return file;
  }
  return undefined;
}

function exampleDirs(): Array<[string, string]> {
  const root = packageRoot();
  return [
    [join(root, 'examples'), '.ts'],
    [join(root, 'dist', 'examples'), '.js'],
  ];
}

/** An Example also carries a demo generator and an oracle for its output. */
export function isExample(value: JobDefinition | Example): value is Example {
  const e = value as Partial<Record<keyof Example, unknown>>;
  return typeof e.sink === 'string' && ['generate', 'oracle', 'canonical'].every((k) => typeof e[k as keyof Example] === 'function');
}

/** The job's one name (state directory, local-cloud records, `cairn status`): the name its definition gives. */
export async function jobNameOf(job: string): Promise<string> {
  if (!looksLikePath(job)) return job;
  return (await resolveJob(job)).name;
}

/** The state directory of a job by its name. */
export function defaultStateDir(name: string): string {
  return join('.cairn', name);
}

export function looksLikePath(job: string): boolean {
  return /[/\\]/.test(job) || /\.(c|m)?(t|j)s$/.test(job);
}
