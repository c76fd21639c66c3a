import { describe, expect, it } from 'vitest';
import { implementationsOf, withResource, type BlobStoreResource } from './implementations.js';
import { itWhen } from './implementations.js';

function pattern(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 0xff;
  }
  return bytes;
}

/** Exact bytes, as a plain array comparison would fail slowly on 1 MiB: compare as Buffers. */
function expectBytes(actual: Uint8Array | undefined, expected: Uint8Array): void {
  expect(actual).toBeInstanceOf(Uint8Array);
  expect(actual?.byteLength).toBe(expected.byteLength);
  expect(Buffer.compare(Buffer.from(actual as Uint8Array), Buffer.from(expected))).toBe(0);
}

describe.each(implementationsOf('blob-store'))('BlobStore contract: $name', (impl) => {
  const run = (body: (resource: BlobStoreResource, reopen: () => Promise<BlobStoreResource>) => Promise<void>) => () => withResource(impl, body);

  it(
    'bytes round-trip exactly: every byte value, 1 MiB, and zero length',
    run(async ({ blobs }) => {
      const everyByte = Uint8Array.from({ length: 512 }, (_, i) => i % 256);
      const mebibyte = pattern(1024 * 1024, 7);
      await blobs.put('state/op/every-byte', everyByte);
      await blobs.put('state/op/1mib', mebibyte);
      await blobs.put('state/op/empty', new Uint8Array(0));
      expectBytes(await blobs.get('state/op/every-byte'), everyByte);
      expectBytes(await blobs.get('state/op/1mib'), mebibyte);
      const empty = await blobs.get('state/op/empty');
      expect(empty).toBeDefined();
      expectBytes(empty, new Uint8Array(0));
    }),
  );

  it(
    "a view into a larger buffer stores only the view; later changes to the caller's bytes do not reach the store",
    run(async ({ blobs }) => {
      const backing = pattern(100, 3);
      const view = backing.subarray(10, 30);
      const expected = Uint8Array.from(view);
      await blobs.put('view', view);
      view.fill(0);
      expectBytes(await blobs.get('view'), expected);
    }),
  );

  it(
    'a missing key is undefined; put overwrites; delete removes and is idempotent',
    run(async ({ blobs }) => {
      expect(await blobs.get('nope')).toBeUndefined();
      await blobs.put('k', pattern(10, 1));
      await blobs.put('k', pattern(3, 2));
      expectBytes(await blobs.get('k'), pattern(3, 2));
      await blobs.put('k2', pattern(5, 5));
      await blobs.delete('k');
      expect(await blobs.get('k')).toBeUndefined();
      expectBytes(await blobs.get('k2'), pattern(5, 5));
      await blobs.delete('k');
      await blobs.delete('never-existed');
      expect(await blobs.get('k')).toBeUndefined();
    }),
  );

  it(
    'keys are exact: prefixes and look-alikes are different blobs',
    run(async ({ blobs }) => {
      const names = ['a', 'a/', 'a/b', 'A', 'a b', 'op#0/key|1/ü'];
      for (const [i, name] of names.entries()) await blobs.put(name, pattern(16, i + 1));
      for (const [i, name] of names.entries()) expectBytes(await blobs.get(name), pattern(16, i + 1));
    }),
  );

  itWhen(impl.capabilities.reopen)(
    'blobs and deletions survive a reopen',
    run(async (first, reopen) => {
      await first.blobs.put('kept', pattern(200_000, 9));
      await first.blobs.put('empty', new Uint8Array(0));
      await first.blobs.put('gone', pattern(8, 1));
      await first.blobs.delete('gone');
      const { blobs } = await reopen();
      expectBytes(await blobs.get('kept'), pattern(200_000, 9));
      expectBytes(await blobs.get('empty'), new Uint8Array(0));
      expect(await blobs.get('gone')).toBeUndefined();
    }),
  );
});
