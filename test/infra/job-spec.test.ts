import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { handlerEntryFor } from '../../infra/job-spec.js';
import { REPO_ROOT } from './helpers.js';

describe('handlerEntryFor: the generated Lambda entry of a job module', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it("imports this project's job and this cairn even when node_modules is a symlink into another checkout (esbuild resolves from the real path)", () => {
    const tmp = realpathSync(mkdtempSync(path.join(os.tmpdir(), 'cairn-entry-')));
    dirs.push(tmp);
    const other = path.join(tmp, 'other-checkout');
    const project = path.join(tmp, 'project');
    mkdirSync(path.join(other, 'node_modules'), { recursive: true });
    mkdirSync(path.join(project, 'src'), { recursive: true });
    symlinkSync(path.join(other, 'node_modules'), path.join(project, 'node_modules'));
    const job = path.join(project, 'src', 'job.ts');
    writeFileSync(job, 'export default {};\n');

    const entry = handlerEntryFor(job, project, 'spend');
    const realDir = realpathSync(path.dirname(entry));
    expect(realDir.startsWith(path.join(other, 'node_modules'))).toBe(true);
    const imports = [...readFileSync(entry, 'utf8').matchAll(/from "([^"]+)"/g)].map((m) => path.resolve(realDir, m[1] ?? ''));
    expect(imports).toEqual([job, path.join(REPO_ROOT, 'shared/lambda/index.ts')]);
    expect(readFileSync(entry, 'utf8')).toContain('export const { operator, ingest, coordinator, deadLetter } = createHandlers(job);');
  });
});
