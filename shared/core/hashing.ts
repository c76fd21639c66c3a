/**
 * Key groups, as in Flink: a key hashes to one of `maxParallelism` key groups, and an
 * operator with parallelism p owns a contiguous range of key groups. State is stored per
 * key group, so a job can be rescaled without rehashing state.
 */

/** MurmurHash3 (x86, 32 bit) of a UTF-16 string's char codes; stable across runs and runtimes. */
export function murmur3(text: string, seed = 0): number {
  let h = seed >>> 0;
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  let i = 0;
  for (; i + 1 < text.length; i += 2) {
    let k = (text.charCodeAt(i) & 0xffff) | ((text.charCodeAt(i + 1) & 0xffff) << 16);
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  if (i < text.length) {
    let k = text.charCodeAt(i) & 0xffff;
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
  }
  h ^= text.length * 2;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export function keyGroupOf(key: string, maxParallelism: number): number {
  return murmur3(key) % maxParallelism;
}

/** Flink's KeyGroupRangeAssignment: operatorIndex = keyGroup * parallelism / maxParallelism. */
export function instanceForKeyGroup(keyGroup: number, parallelism: number, maxParallelism: number): number {
  return Math.floor((keyGroup * parallelism) / maxParallelism);
}

export function keyGroupRange(index: number, parallelism: number, maxParallelism: number): { start: number; end: number } {
  const start = Math.ceil((index * maxParallelism) / parallelism);
  const end = Math.ceil(((index + 1) * maxParallelism) / parallelism) - 1;
  return { start, end };
}
