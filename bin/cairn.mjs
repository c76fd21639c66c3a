#!/usr/bin/env node
// `npx cairn ...`: the compiled CLI of the installed package (dist/); in a source checkout, the
// TypeScript CLI through tsx. Either way in this process (no child process, so `cairn trigger`
// can signal the pid that holds a state directory's lock).
import { existsSync } from 'node:fs';
import process from 'node:process';
import { URL } from 'node:url';

// The AWS SDK warns on every command under Node 20 that its support ends; Cairn's CLI supports
// Node 20 and 22 (the Lambdas run 22), so the notice is noise here. Set the variable to see it.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const source = new URL('../shared/cli/main.ts', import.meta.url);
if (existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  // The checkout's tsconfig (its paths map 'cairn' to the sources), whatever the working directory.
  register({ tsconfig: new URL('../tsconfig.json', import.meta.url).pathname });
  await import(source.href);
} else {
  await import(new URL('../dist/shared/cli/main.js', import.meta.url).href);
}
