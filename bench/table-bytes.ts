import type { EmbeddedDb, WriteOp } from '../shared/embedded/db.js';

/**
 * Attributes the journal bytes of an EmbeddedDb to its tables. The db only counts a total
 * (`bytesWritten`); the runtime has no per-table hook, so the benchmark wraps the instance's
 * `write` and re-serializes each op the way the db does (one JSON array per write, one line).
 * The sum over tables plus the framing bucket equals the db's own `bytesWritten` delta.
 */

/** Tables whose bytes exist only because of checkpointing. */
export const CHECKPOINT_TABLES: ReadonlySet<string> = new Set(['ver', 'chg', 'snap', 'chst', 'ack', 'cp', 'job']);
/** Plain keyed state. */
export const STATE_TABLES: ReadonlySet<string> = new Set(['item']);

export type TableBytes = Record<string, number>;

export class TableByteMeter {
  private readonly totals = new Map<string, number>();
  private readonly original: EmbeddedDb['write'];

  constructor(private readonly db: EmbeddedDb) {
    this.original = db.write.bind(db);
    db.write = (ops: readonly WriteOp[]): void => {
      if (ops.length > 0) {
        // Line = '[' + ops joined by ',' + ']' + '\n': each op carries its comma/bracket.
        for (const [table, key, value] of ops) {
          const op = value === undefined ? [table, key] : [table, key, value];
          this.add(table, Buffer.byteLength(JSON.stringify(op)) + 1);
        }
        this.add('(framing)', 2);
      }
      this.original(ops);
    };
  }

  snapshot(): TableBytes {
    return Object.fromEntries(this.totals);
  }

  detach(): void {
    this.db.write = this.original;
  }

  private add(table: string, bytes: number): void {
    this.totals.set(table, (this.totals.get(table) ?? 0) + bytes);
  }
}

export function diffBytes(after: TableBytes, before: TableBytes): TableBytes {
  const out: TableBytes = {};
  for (const [table, bytes] of Object.entries(after)) {
    const delta = bytes - (before[table] ?? 0);
    if (delta !== 0) out[table] = delta;
  }
  return out;
}

export function sumTables(bytes: TableBytes, tables: ReadonlySet<string>): number {
  let sum = 0;
  for (const [table, n] of Object.entries(bytes)) if (tables.has(table)) sum += n;
  return sum;
}
