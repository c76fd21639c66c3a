import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The root of the cairn package this code runs from: the repository in a source checkout,
 * `node_modules/cairn` when installed (the code then runs from its `dist/`).
 */
export function packageRoot(from: string = import.meta.url): string {
  let dir = dirname(fileURLToPath(from));
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === 'cairn') return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`no package.json of cairn above ${fileURLToPath(from)}`);
    dir = parent;
  }
}

/** A module of the package by its path in the sources (`shared/lambda/index.ts`): the source file in a checkout, the compiled one when installed. */
export function packageModule(sourcePath: string, root: string = packageRoot()): string {
  const source = join(root, sourcePath);
  if (existsSync(source)) return source;
  const compiled = join(root, 'dist', sourcePath.replace(/\.ts$/, '.js'));
  if (existsSync(compiled)) return compiled;
  throw new Error(`cairn package at ${root} has neither ${sourcePath} nor its compiled dist/ file`);
}
