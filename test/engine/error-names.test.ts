import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';
import * as errors from '../../shared/core/errors.js';

/**
 * The Lambda bundles are minified (infra/cairn-job.ts: esbuild `minify`), which renames
 * classes; the Step Functions catchers and retriers match errors by `name`. Every error class
 * keeps its name in a minified bundle, as in the sources.
 */
describe('error names', () => {
  const entry = resolve(import.meta.dirname, '../../shared/core/errors.ts');
  const classes: Array<[string, unknown]> = Object.entries(errors).filter(([, value]) => typeof value === 'function');

  it('every exported error class names itself, in the sources', () => {
    expect(classes.length).toBeGreaterThan(10);
    for (const [name, Class] of classes) {
      const error = new (Class as new () => Error)();
      expect(error instanceof errors.CairnError, name).toBe(true);
      expect(error.name, name).toBe(name);
    }
  });

  it('and in a minified bundle, where the classes themselves are renamed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cairn-errors-'));
    try {
      const outfile = join(dir, 'errors.mjs');
      await build({ entryPoints: [entry], bundle: true, minify: true, format: 'esm', platform: 'node', outfile, logLevel: 'silent' });
      const bundled = (await import(pathToFileURL(outfile).href)) as Record<string, new () => Error>;
      const renamed = Object.entries(bundled).filter(([name, Class]) => Class.name !== name);
      expect(renamed.length).toBeGreaterThan(0); // minification really renamed them
      for (const [name] of classes) expect(new (bundled[name] as new () => Error)().name, name).toBe(name);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
