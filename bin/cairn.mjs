#!/usr/bin/env node
// `npx cairn ...`: runs the TypeScript CLI through tsx in this process (no child process,
// so `cairn trigger` can signal the pid that holds a state directory's lock).
import { register } from 'tsx/esm/api';

register();
await import('../shared/cli/main.ts');
