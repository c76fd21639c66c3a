import { describe, expect, it } from 'vitest';
import type { DeadLetterReason } from '../../shared/core/errors.js';
import type { DeadLetter } from '../../shared/core/ports.js';
import { InstanceDriver, letterOf, startJob } from './fixtures.js';
import { implementationsOf, withResource, type StoreFamily } from './implementations.js';
import { itWhen } from './implementations.js';

const byId = (letters: DeadLetter[]): DeadLetter[] => [...letters].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

const REASONS: readonly DeadLetterReason[] = ['malformed-json', 'schema-violation', 'oversize-record', 'unknown-operator', 'operator-error', 'max-receive-count'];

describe.each(implementationsOf('store-family'))('DeadLetterStore contract: $name', (impl) => {
  const run = (body: (family: StoreFamily, reopen: () => Promise<StoreFamily>) => Promise<void>) => () => withResource(impl, body);

  it(
    'list is empty at first, then returns every letter with reason, message, vertex, payload and time intact',
    run(async ({ deadLetters }) => {
      expect(await deadLetters.list()).toEqual([]);
      const letters = REASONS.map((reason, i) => letterOf(`ingress:m-${i}`, { reason, message: `${reason}: line ${i} ✗ "quoted"`, vertex: i % 2 ? 'src' : 'op', at: 10_000 - i }));
      const big = letterOf('op:0:99', { payload: `${'{"text":"zoë 🚀'.repeat(300)}…`, message: 'x'.repeat(5_000) });
      const raw = letterOf('ingress:raw', { reason: 'malformed-json', payload: '{"unterminated": ', message: 'malformed JSON: Unexpected end of JSON input' });
      await deadLetters.put(letters);
      await deadLetters.put([big, raw]);
      expect(byId(await deadLetters.list())).toEqual(byId([...letters, big, raw]));
    }),
  );

  it(
    'put is idempotent by id: the same letter put again (replay, retry), in one call or across calls, is one letter',
    run(async ({ deadLetters }) => {
      await deadLetters.put([letterOf('a'), letterOf('b')]);
      await deadLetters.put([letterOf('a')]);
      await deadLetters.put([letterOf('c'), letterOf('c')]);
      await deadLetters.put([]);
      expect(byId(await deadLetters.list())).toEqual([letterOf('a'), letterOf('b'), letterOf('c')]);
    }),
  );

  it(
    'letters from StateStore.commitStep and from put land in the same list; the same id from both is one letter',
    run(async (family) => {
      await startJob(family.checkpoints);
      const d = await new InstanceDriver(family.stateStore, 'op').init();
      await family.deadLetters.put([letterOf('ingress:1', { reason: 'schema-violation' })]);
      await d.commit({ deadLetters: [letterOf('op:0:5'), letterOf('op:0:6', { reason: 'oversize-record' })] });
      // The same poison record dead-lettered again after a rollback-replay.
      await d.commit({ deadLetters: [letterOf('op:0:5')] });
      await family.deadLetters.put([letterOf('op:0:6', { reason: 'oversize-record' })]);
      expect(byId(await family.deadLetters.list())).toEqual([letterOf('ingress:1', { reason: 'schema-violation' }), letterOf('op:0:5'), letterOf('op:0:6', { reason: 'oversize-record' })]);
    }),
  );

  it(
    'remove deletes exactly the letters named (absent ids are fine), and a removed id can be put again',
    run(async ({ deadLetters }) => {
      await deadLetters.put([letterOf('a'), letterOf('b'), letterOf('c', { payload: 'z'.repeat(300_000) })]);
      await deadLetters.remove(['a', 'c', 'never']);
      expect(byId(await deadLetters.list())).toEqual([letterOf('b')]);
      await deadLetters.remove([]);
      await deadLetters.put([letterOf('a')]);
      expect(byId(await deadLetters.list())).toEqual([letterOf('a'), letterOf('b')]);
    }),
  );

  itWhen(impl.capabilities.reopen)(
    'letters survive a reopen and stay deduplicated by id',
    run(async (first, reopen) => {
      await first.deadLetters.put([letterOf('a'), letterOf('b', { reason: 'malformed-json' })]);
      const { deadLetters } = await reopen();
      await deadLetters.put([letterOf('a')]);
      expect(byId(await deadLetters.list())).toEqual([letterOf('a'), letterOf('b', { reason: 'malformed-json' })]);
    }),
  );
});
