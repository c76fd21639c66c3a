import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, realpathSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

/**
 * How Cairn's Lambda code is bundled, written once: the esbuild options the CairnJob
 * construct deploys every function with (NodejsFunction's `bundling`), and the same build of
 * the local runner (`cairn run --target local-cloud`), so that it runs what `cdk deploy`
 * ships: one minified ES module with the pinned AWS SDK inside, where class and function
 * names are mangled (a `new.target.name` is "t") and source maps give the stack traces back.
 */
export const LAMBDA_BUNDLE = {
  format: 'esm',
  target: 'node22',
  platform: 'node',
  minify: true,
  sourcemap: true,
  mainFields: ['module', 'main'],
  // Bundle the pinned AWS SDK instead of the runtime's: the code runs what the tests ran.
  external: [],
  // Bundled CommonJS dependencies call require() inside an ES module.
  banner: "import { createRequire as __cairnRequire } from 'node:module'; const require = __cairnRequire(import.meta.url);",
} as const;

/**
 * Writes a generated entry file under `<projectRoot>/node_modules/.cache/cairn/<kind>/`, named
 * after the job and a hash of `key`, rewritten only when its text changes. `lines` get the
 * import specifier of a module through `importOf`: relative to the directory's real path, since
 * esbuild resolves from there, so that with a symlinked node_modules (a git worktree sharing
 * another checkout's, a monorepo) they still name this project's modules.
 */
export function writeGeneratedEntry(projectRoot: string, kind: string, jobName: string, key: string, lines: (importOf: (target: string) => string) => readonly string[], extension = '.ts'): string {
  const dir = path.join(projectRoot, 'node_modules', '.cache', 'cairn', kind);
  mkdirSync(dir, { recursive: true });
  const realDir = realpathSync(dir);
  const hash = createHash('sha256').update(key).digest('hex').slice(0, 8);
  const file = path.join(dir, `${jobName}-${hash}${extension}`);
  const importOf = (target: string): string =>
    JSON.stringify(
      path
        .relative(realDir, target)
        .split(path.sep)
        .join('/')
        .replace(/^(?!\.)/, './'),
    );
  const text = [...lines(importOf), ''].join('\n');
  if (!existsSync(file) || readFileSync(file, 'utf8') !== text) writeFileSync(file, text);
  return file;
}

/** A bundling failure: the job module (or Cairn) does not build as the stack would deploy it. */
export class LambdaBundleError extends Error {
  override readonly name = 'LambdaBundleError';
  constructor(
    readonly entry: string,
    readonly errors: readonly string[],
  ) {
    super(`cannot bundle ${entry} as the stack deploys it:\n  ${errors.join('\n  ')}`);
  }
}

/**
 * Bundles `entry` with LAMBDA_BUNDLE (esbuild, from the project's node_modules) into a `.mjs`
 * beside it and imports it, source maps on as on Lambda (NODE_OPTIONS=--enable-source-maps).
 * The bundle is rebuilt only when one of its inputs (esbuild's metafile) changed since.
 */
export async function importBundled<T>(entry: string): Promise<T> {
  const outfile = entry.replace(/\.[cm]?[jt]s$/, '.bundle.mjs');
  if (!upToDate(outfile)) await bundle(entry, outfile);
  process.setSourceMapsEnabled(true);
  return (await import(`${pathToFileURL(outfile).href}?v=${statSync(outfile).mtimeMs}`)) as T;
}

async function bundle(entry: string, outfile: string): Promise<void> {
  const { build } = await import('esbuild');
  const { banner, external, ...options } = LAMBDA_BUNDLE;
  const absWorkingDir = path.dirname(entry);
  try {
    const { metafile, outputFiles } = await build({
      ...options,
      mainFields: [...options.mainFields],
      external: [...external],
      entryPoints: [entry],
      outfile,
      bundle: true,
      banner: { js: banner },
      absWorkingDir,
      metafile: true,
      write: false,
      logLevel: 'silent',
    });
    // Written by rename: another run bundling the same job at once never imports half a file.
    const inputs = Object.keys(metafile.inputs).map((input) => path.resolve(absWorkingDir, input));
    for (const file of outputFiles) writeAtomically(file.path, file.contents);
    writeAtomically(`${outfile}.inputs.json`, JSON.stringify({ options: LAMBDA_BUNDLE, inputs }));
  } catch (error) {
    const errors = (error as { errors?: Array<{ text: string; location?: { file: string; line: number } | null }> }).errors ?? [];
    throw new LambdaBundleError(entry, errors.length > 0 ? errors.map((e) => (e.location ? `${e.location.file}:${e.location.line}: ${e.text}` : e.text)) : [(error as Error).message]);
  }
}

function writeAtomically(file: string, contents: string | Uint8Array): void {
  const temp = `${file}.${process.pid}.tmp`;
  writeFileSync(temp, contents);
  renameSync(temp, file);
}

/** The bundle exists, was built with today's options, and none of its inputs is newer. */
function upToDate(outfile: string): boolean {
  const record = `${outfile}.inputs.json`;
  if (!existsSync(outfile) || !existsSync(record)) return false;
  const built = statSync(outfile).mtimeMs;
  const { options, inputs } = JSON.parse(readFileSync(record, 'utf8')) as { options: unknown; inputs: string[] };
  if (JSON.stringify(options) !== JSON.stringify(LAMBDA_BUNDLE)) return false;
  return inputs.every((input) => existsSync(input) && statSync(input).mtimeMs <= built);
}
