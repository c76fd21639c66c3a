import { describe, expect, it } from 'vitest';
import { initialInstanceRecord } from '../../shared/core/instance/step.js';
import { initialJob } from '../../shared/core/protocol/coordinator.js';
import { freshStores } from './helpers.js';

describe('aws stores smoke', () => {
  it('commits a step and reads it back', async () => {
    const s = await freshStores();
    try {
      await s.checkpoints.putJob(initialJob(1), undefined);
      const rec = initialInstanceRecord('op#0', 1);
      await s.stateStore.putInstance(rec);
      await s.stateStore.commitStep({
        instance: 'op#0',
        operator: 'op',
        generation: 1,
        expectedVersion: 0,
        record: { ...rec, version: 1 },
        stateWrites: [{ keyGroup: 3, key: 'a', value: { n: 1 }, epoch: 1, previous: undefined }],
        channelState: [],
        acks: [],
        staged: [],
        upserts: [],
        deadLetters: [],
      });
      expect((await s.stateStore.loadInstance('op#0'))?.version).toBe(1);
      const items = await s.stateStore.getItems('op', [{ keyGroup: 3, key: 'a' }]);
      expect(items.get('3|a')).toEqual({ value: { n: 1 }, epoch: 1 });
      expect(await s.stateStore.countKeys('op')).toBe(1);
      const r = await s.sourceLog.append(0, [{ id: 'x', event: 1 }, { id: 'y', event: 2 }, { id: 'x', event: 1 }]);
      expect(r).toEqual({ appended: 2, duplicates: 1 });
      expect(await s.sourceLog.read(0, 0, 10)).toEqual([{ offset: 0, event: 1 }, { offset: 1, event: 2 }]);
    } finally {
      await s.done();
    }
  });
});
