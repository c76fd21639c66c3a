/**
 * `items` in order, cut into requests of at most `maxCount` items and `maxBytes` (by `sizeOf`)
 * each: SendMessageBatch entries, BatchWriteItem requests, TransactWriteItems actions. An item
 * larger than `maxBytes` alone makes a request of its own.
 */
export function chunksOf<T>(items: readonly T[], sizeOf: (item: T) => number, maxCount: number, maxBytes: number): T[][] {
  const chunks: T[][] = [];
  let chunk: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const size = sizeOf(item);
    if (chunk.length > 0 && (chunk.length >= maxCount || bytes + size > maxBytes)) {
      chunks.push(chunk);
      chunk = [];
      bytes = 0;
    }
    chunk.push(item);
    bytes += size;
  }
  if (chunk.length > 0) chunks.push(chunk);
  return chunks;
}
