import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EmbeddedDb, ReadOnlyDbError } from '../../shared/embedded/db.js';

/**
 * Not a port contract: the crash behaviour of the journal under every embedded store (what a
 * SIGKILL mid-write leaves behind). The port suites prove write -> close -> reopen -> read back
 * through the `reopen` capability; these tests tear the last write as a killed process would.
 */
describe('EmbeddedDb journal (backing store of the embedded implementations)', () => {
  const dirs: string[] = [];
  const dir = (): string => {
    const d = mkdtempSync(join(tmpdir(), 'cairn-journal-'));
    dirs.push(d);
    return d;
  };
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  /** Appends the first `fraction` of the journal line a write of `ops` would produce: a write killed midway. */
  function tearWrite(path: string, ops: unknown[][]): void {
    const line = JSON.stringify(ops);
    appendFileSync(join(path, 'journal.jsonl'), line.slice(0, Math.floor(line.length / 2)));
  }

  it('a read-only open sees the journal of a live writer (torn last line ignored) and never writes', () => {
    const path = dir();
    const writer = EmbeddedDb.open(path);
    writer.write([['a', 'k1', { v: 1 }]]);
    writer.write([['a', 'k2', { v: 2 }]]);
    tearWrite(path, [['a', 'k3', { v: 3 }]]);
    const journal = readFileSync(join(path, 'journal.jsonl'), 'utf8');

    const reader = EmbeddedDb.readOnly(path);
    expect([...reader.table('a')]).toEqual([
      ['k1', { v: 1 }],
      ['k2', { v: 2 }],
    ]);
    expect(() => reader.write([['a', 'k9', 9]])).toThrow(new ReadOnlyDbError(path));
    expect(() => reader.compact()).toThrow(ReadOnlyDbError);
    reader.close();
    // Neither compacted nor appended: the writer's journal (and its torn line) is exactly as it was.
    expect(readFileSync(join(path, 'journal.jsonl'), 'utf8')).toBe(journal);
    writer.close();
  });

  it('a multi-table write is atomic across a torn last line: earlier writes survive, the torn one never happened', () => {
    const path = dir();
    const db = EmbeddedDb.open(path);
    db.write([
      ['a', 'k1', { v: 1 }],
      ['b', 'k1', 1],
    ]);
    db.write([['a', 'k2', { v: 2 }]]);
    db.close();
    tearWrite(path, [
      ['a', 'k3', { v: 3 }],
      ['b', 'k3', 3],
    ]);

    const reopened = EmbeddedDb.open(path);
    expect([...reopened.table('a')]).toEqual([
      ['k1', { v: 1 }],
      ['k2', { v: 2 }],
    ]);
    expect([...reopened.table('b')]).toEqual([['k1', 1]]);
    reopened.write([['a', 'k4', { v: 4 }]]);
    reopened.close();
    const again = EmbeddedDb.open(path);
    expect(again.get('a', 'k4')).toEqual({ v: 4 });
    expect(again.get('a', 'k3')).toBeUndefined();
    again.close();
  });

  it('writes after a torn FIRST line (killed during its first write after open) survive the next reopen', () => {
    const path = dir();
    const db = EmbeddedDb.open(path);
    db.write([['a', 'k1', { v: 1 }]]);
    db.close();
    // The next process opens (compacting the journal into the snapshot), then dies mid-write.
    EmbeddedDb.open(path).close();
    expect(readFileSync(join(path, 'journal.jsonl'), 'utf8')).toBe('');
    tearWrite(path, [['a', 'k2', { v: 2 }]]);

    const reopened = EmbeddedDb.open(path);
    expect(reopened.get('a', 'k1')).toEqual({ v: 1 });
    expect(reopened.get('a', 'k2')).toBeUndefined();
    reopened.write([['a', 'k3', { v: 3 }]]);
    reopened.close();

    const again = EmbeddedDb.open(path);
    expect(again.get('a', 'k1')).toEqual({ v: 1 });
    expect(again.get('a', 'k3')).toEqual({ v: 3 });
    again.close();
  });

  it('a deletion survives a reopen (the journal replays deletes, the snapshot does not resurrect them)', () => {
    const path = dir();
    const db = EmbeddedDb.open(path);
    db.write([
      ['a', 'k1', 1],
      ['a', 'k2', 2],
    ]);
    db.close();
    const second = EmbeddedDb.open(path);
    second.write([['a', 'k1', undefined]]);
    second.close();
    const third = EmbeddedDb.open(path);
    expect([...third.table('a')]).toEqual([['k2', 2]]);
    third.close();
  });

  it('an empty journal file next to no snapshot opens as an empty store', () => {
    const path = dir();
    writeFileSync(join(path, 'journal.jsonl'), '');
    const db = EmbeddedDb.open(path);
    expect([...db.table('a')]).toEqual([]);
    db.close();
  });
});
