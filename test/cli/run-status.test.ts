import { describe, expect, it } from 'vitest';
import { InjectedCrash, multisetDiff, printVerdict } from '../../shared/cli/run-status.js';
import { InjectedFault } from '../../shared/core/errors.js';

describe('multisetDiff', () => {
  it('counts repeats: a record emitted twice is unexpected once, a record never emitted is missing', () => {
    const expected = [
      { k: 'a', n: 1 },
      { k: 'b', n: 2 },
      { k: 'b', n: 2 },
    ];
    const actual = [
      { k: 'b', n: 2 },
      { k: 'a', n: 1 },
      { k: 'a', n: 1 },
    ];
    expect(multisetDiff(expected, actual)).toEqual({ missing: [{ k: 'b', n: 2 }], unexpected: [{ k: 'a', n: 1 }] });
  });
});

describe('printVerdict', () => {
  it('prints exactly-once when the outputs match in any order, a mismatch with the differences otherwise', () => {
    const lines: string[] = [];
    expect(printVerdict([1, 2], [2, 1], (l = '') => lines.push(l), ' over 2 events')).toBe(true);
    expect(printVerdict([1, 2], [2, 2], (l = '') => lines.push(l))).toBe(false);
    expect(lines).toEqual([
      'results: exactly-once ✔ (2 records match the oracle over 2 events)',
      'results: MISMATCH ✘ expected 2 records, got 2: 1 missing, 1 unexpected (duplicates or wrong values)',
      '  missing     1',
      '  unexpected  2',
    ]);
  });
});

describe('InjectedCrash', () => {
  it('throws once, at the N-th record, and says so; afterwards records pass', () => {
    const crash = new InjectedCrash(3);
    crash.hooks.onRecord('map#0');
    crash.hooks.onRecord('map#1');
    expect(crash.neverFiredNote()).toBe('note: --crash-at 3 never fired: only 2 records passed the operators');
    expect(() => crash.hooks.onRecord('map#1')).toThrow(new InjectedFault('injected crash in map#1 at record 3'));
    expect(crash.reason).toBe('injected crash in map#1 at record 3');
    expect(() => crash.hooks.onRecord('map#0')).not.toThrow();
    expect(crash.neverFiredNote()).toBeUndefined();
  });
});
