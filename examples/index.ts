import { accountBalance } from './account-balance.js';
import type { Example } from './types.js';
import { windowedCount } from './windowed-count.js';
import { wordCount } from './word-count.js';

export const examples: Readonly<Record<string, Example>> = {
  'word-count': wordCount,
  'account-balance': accountBalance,
  'windowed-count': windowedCount,
};
