import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The embedded runtime's storage: named tables of JSON values in memory, made durable by an
 * append-only journal in the state directory. One `write` is one journal line, so a batch of
 * writes across tables is atomic: a process killed mid-write leaves a torn last line, which
 * the next open discards. Survives SIGKILL (the OS keeps written pages); pass `fsync` to
 * survive power loss too.
 *
 * Values are stored as JSON (a copy), as DynamoDB would: no aliasing with the caller.
 */

export type WriteOp = readonly [table: string, key: string, value: unknown];

const JOURNAL = 'journal.jsonl';
const SNAPSHOT = 'snapshot.json';

/** A write to a database opened with {@link EmbeddedDb.readOnly}. */
export class ReadOnlyDbError extends Error {
  override readonly name = 'ReadOnlyDbError';
  constructor(readonly dir: string) {
    super(`${dir} is open read-only (a running job owns it)`);
  }
}

export class EmbeddedDb {
  private readonly tables = new Map<string, Map<string, unknown>>();
  private fd: number | undefined;
  private readOnlyDir: string | undefined;
  /** Bytes appended to the journal since open (the "bytes written" of the benchmarks). */
  bytesWritten = 0;
  writes = 0;

  private constructor(
    readonly dir: string | undefined,
    private readonly fsync: boolean,
  ) {}

  /** In-memory only (tests, benchmarks of the engine alone). */
  static memory(): EmbeddedDb {
    return new EmbeddedDb(undefined, false);
  }

  static open(dir: string, options: { fsync?: boolean } = {}): EmbeddedDb {
    mkdirSync(dir, { recursive: true });
    const db = new EmbeddedDb(dir, options.fsync ?? false);
    db.load();
    return db;
  }

  /**
   * A read-only view of a state directory another process may be writing (`cairn checkpoints`
   * while a run holds the lock): the snapshot and the journal replayed, never compacted, never
   * written. A torn last journal line (a write in progress) is ignored, as on open. A compaction
   * racing with the read (only done when a run opens the directory) is detected by the snapshot
   * file changing under us, and the read is retried.
   */
  static readOnly(dir: string): EmbeddedDb {
    for (let attempt = 0; ; attempt++) {
      const before = fingerprint(join(dir, SNAPSHOT));
      const db = new EmbeddedDb(dir, false);
      db.readOnlyDir = dir;
      db.load();
      if (fingerprint(join(dir, SNAPSHOT)) === before || attempt >= 3) return db;
    }
  }

  /** Whether a state directory holds a database. */
  static exists(dir: string): boolean {
    return existsSync(join(dir, SNAPSHOT)) || existsSync(join(dir, JOURNAL));
  }

  tableNames(): string[] {
    return [...this.tables.keys()];
  }

  table<V = unknown>(name: string): ReadonlyMap<string, V> {
    let table = this.tables.get(name);
    if (!table) {
      table = new Map();
      this.tables.set(name, table);
    }
    return table as ReadonlyMap<string, V>;
  }

  get<V>(table: string, key: string): V | undefined {
    return this.tables.get(table)?.get(key) as V | undefined;
  }

  *scan<V>(table: string, prefix: string): Generator<[string, V]> {
    for (const [key, value] of this.table<V>(table)) if (key.startsWith(prefix)) yield [key, value];
  }

  /** Atomic: all ops or none. A value of `undefined` deletes the key. */
  write(ops: readonly WriteOp[]): void {
    if (this.readOnlyDir !== undefined) throw new ReadOnlyDbError(this.readOnlyDir);
    if (ops.length === 0) return;
    const line = JSON.stringify(ops.map(([t, k, v]) => (v === undefined ? [t, k] : [t, k, v])));
    if (this.fd !== undefined) {
      const bytes = writeSync(this.fd, line + '\n');
      if (this.fsync) fsyncSync(this.fd);
      this.bytesWritten += bytes;
    } else {
      this.bytesWritten += Buffer.byteLength(line) + 1;
    }
    this.writes++;
    this.applyLine(JSON.parse(line) as unknown[][]);
  }

  /** Rewrites the journal as one snapshot (O(total state): done at open, never on the hot path). */
  compact(): void {
    if (this.readOnlyDir !== undefined) throw new ReadOnlyDbError(this.readOnlyDir);
    if (!this.dir) return;
    const tmp = join(this.dir, `${SNAPSHOT}.tmp`);
    const data: Record<string, [string, unknown][]> = {};
    for (const [name, table] of this.tables) data[name] = [...table];
    writeFileSync(tmp, JSON.stringify(data));
    renameSync(tmp, join(this.dir, SNAPSHOT));
    if (this.fd !== undefined) closeSync(this.fd);
    writeFileSync(join(this.dir, JOURNAL), '');
    this.fd = openSync(join(this.dir, JOURNAL), 'a');
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private load(): void {
    const dir = this.dir as string;
    const snapshotPath = join(dir, SNAPSHOT);
    const snapshot = readIfExists(snapshotPath);
    if (snapshot !== undefined && snapshot.length > 0) {
      const data = JSON.parse(snapshot) as Record<string, [string, unknown][]>;
      for (const [name, entries] of Object.entries(data)) this.tables.set(name, new Map(entries));
    }
    const journalPath = join(dir, JOURNAL);
    let replayed = 0;
    let torn = false;
    const text = readIfExists(journalPath);
    if (text !== undefined) {
      for (const line of text.split('\n')) {
        if (line.length === 0) continue;
        let ops: unknown[][];
        try {
          ops = JSON.parse(line) as unknown[][];
        } catch {
          torn = true;
          break; // torn last line of a killed process: that write never happened
        }
        this.applyLine(ops);
        replayed++;
      }
    }
    if (this.readOnlyDir !== undefined) return;
    this.fd = openSync(journalPath, 'a');
    // A torn line must go before anything is appended: a new line would be glued to it and lost with it.
    if (replayed > 0 || torn) this.compact();
  }

  private applyLine(ops: unknown[][]): void {
    for (const op of ops) {
      const [tableName, key, value] = op as [string, string, unknown];
      const table = this.table(tableName) as Map<string, unknown>;
      if (op.length === 2) table.delete(key);
      else table.set(key, value);
    }
  }
}

function readIfExists(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

function fingerprint(path: string): string {
  try {
    const s = statSync(path);
    return `${s.ino}:${s.size}:${s.mtimeMs}`;
  } catch {
    return 'none';
  }
}
