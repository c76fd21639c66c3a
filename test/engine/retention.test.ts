import { describe, expect, it } from 'vitest';
import { checkpointDataExpired, tombstoneExpired, versionsToKeep } from '../../shared/core/retention.js';

/** The version-retention rule both state stores apply (shared/core/retention.ts). */
describe('versionsToKeep: what a prune to the oldest retained checkpoint keeps', () => {
  const v = (epoch: number): { epoch: number; tag: string } => ({ epoch, tag: `v${epoch}` });

  it('keeps nothing when the current value dates from keepFrom or before: every retained checkpoint reads it', () => {
    expect(versionsToKeep({ epoch: 5 }, [v(2), v(4), v(5)], 5)).toEqual([]);
    expect(versionsToKeep({ epoch: 3 }, [v(1), v(3)], 7)).toEqual([]);
  });

  it('keeps the newest version at or before keepFrom and every later one when the value changed since', () => {
    expect(versionsToKeep({ epoch: 9 }, [v(1), v(3), v(5), v(7), v(9)], 5)).toEqual([v(5), v(7), v(9)]);
    expect(versionsToKeep({ epoch: 9 }, [v(1), v(3), v(7), v(9)], 5)).toEqual([v(3), v(7), v(9)]);
    expect(versionsToKeep({ epoch: 9 }, [v(7), v(9)], 5)).toEqual([v(7), v(9)]);
  });

  it('keeps the later versions of a key a restore made absent; drops every version of an absent key with none later', () => {
    expect(versionsToKeep(undefined, [v(2), v(6), v(8)], 5)).toEqual([v(2), v(6), v(8)]);
    expect(versionsToKeep(undefined, [v(2), v(4)], 5)).toEqual([]);
  });

  it('expires tombstones and checkpoint data only below the oldest retained checkpoint', () => {
    expect(tombstoneExpired({ epoch: 5, value: null }, 5)).toBe(true);
    expect(tombstoneExpired({ epoch: 6, value: null }, 5)).toBe(false);
    expect(tombstoneExpired({ epoch: 2, value: { n: 1 } }, 5)).toBe(false);
    expect(tombstoneExpired(undefined, 5)).toBe(false);
    expect([4, 5, 6].map((id) => checkpointDataExpired(id, 5))).toEqual([true, false, false]);
  });
});
