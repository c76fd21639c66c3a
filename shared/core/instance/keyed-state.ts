import type { KeyedStateAccess, MapState, ValueState } from '../job.js';
import type { StateKeyRef, StateWrite, StoredItem } from '../ports.js';

type ItemValue = Record<string, unknown>;

interface Entry {
  readonly ref: StateKeyRef;
  /** What the store holds (or what this step sealed at a snapshot). */
  base: StoredItem | undefined;
  current: ItemValue | null;
  dirty: boolean;
}

/**
 * Keyed state seen by one step: items are prefetched in one batch read, user code reads and
 * writes them synchronously (like Flink's heap state backend), and the dirty ones become
 * StateWrites of the step's commit. A record runs in an overlay so that a record that throws
 * leaves no trace (poison isolation).
 */
export class StepKeyedState {
  private readonly entries = new Map<string, Entry>();
  private readonly sealed: StateWrite[] = [];
  private overlay: Map<string, ItemValue | null> | undefined;

  constructor(private epoch: number) {}

  static id(ref: StateKeyRef): string {
    return `${ref.keyGroup}|${ref.key}`;
  }

  missing(refs: readonly StateKeyRef[]): StateKeyRef[] {
    const seen = new Set<string>();
    return refs.filter((ref) => {
      const id = StepKeyedState.id(ref);
      if (this.entries.has(id) || seen.has(id)) return false;
      seen.add(id);
      return true;
    });
  }

  load(refs: readonly StateKeyRef[], items: ReadonlyMap<string, StoredItem>): void {
    for (const ref of refs) {
      const id = StepKeyedState.id(ref);
      if (this.entries.has(id)) continue;
      const base = items.get(id);
      this.entries.set(id, { ref, base, current: base?.value ?? null, dirty: false });
    }
  }

  beginRecord(): void {
    this.overlay = new Map();
  }

  commitRecord(): void {
    const overlay = this.overlay;
    this.overlay = undefined;
    if (!overlay) return;
    for (const [id, value] of overlay) {
      const entry = this.entries.get(id);
      if (!entry) continue;
      entry.current = value;
      entry.dirty = true;
    }
  }

  abortRecord(): void {
    this.overlay = undefined;
  }

  read(ref: StateKeyRef): ItemValue | null {
    const id = StepKeyedState.id(ref);
    if (this.overlay?.has(id)) return this.overlay.get(id) ?? null;
    const entry = this.entries.get(id);
    if (!entry) throw new Error(`state of key '${ref.key}' was not prefetched`);
    return entry.current;
  }

  write(ref: StateKeyRef, value: ItemValue | null): void {
    const id = StepKeyedState.id(ref);
    if (!this.entries.has(id)) throw new Error(`state of key '${ref.key}' was not prefetched`);
    if (this.overlay) this.overlay.set(id, value);
    else {
      const entry = this.entries.get(id);
      if (entry) {
        entry.current = value;
        entry.dirty = true;
      }
    }
  }

  /** At a snapshot: writes so far belong to the closing epoch; later ones to the next. */
  seal(nextEpoch: number): void {
    for (const entry of this.entries.values()) {
      if (!entry.dirty) continue;
      this.sealed.push(this.toWrite(entry));
      entry.base = { value: entry.current, epoch: this.epoch };
      entry.dirty = false;
    }
    this.epoch = nextEpoch;
  }

  writes(): StateWrite[] {
    const open = [...this.entries.values()].filter((e) => e.dirty).map((e) => this.toWrite(e));
    return [...this.sealed, ...open];
  }

  access(ref: StateKeyRef): KeyedStateAccess {
    const item = (): ItemValue => ({ ...(this.read(ref) ?? {}) });
    const put = (name: string, value: unknown): void => {
      const next = item();
      if (value === undefined) delete next[name];
      else next[name] = value;
      this.write(ref, Object.keys(next).length === 0 ? null : next);
    };
    return {
      value: <V>(name: string): ValueState<V> => ({
        get: () => (this.read(ref)?.[name] as V | undefined) ?? undefined,
        set: (value: V) => put(name, value),
        clear: () => put(name, undefined),
      }),
      map: <V>(name: string): MapState<V> => {
        const current = (): Record<string, V> => (this.read(ref)?.[name] as Record<string, V> | undefined) ?? {};
        const update = (mutate: (m: Record<string, V>) => void): void => {
          const next = { ...current() };
          mutate(next);
          put(name, Object.keys(next).length === 0 ? undefined : next);
        };
        return {
          get: (k) => current()[k],
          has: (k) => Object.hasOwn(current(), k),
          set: (k, v) => update((m) => void (m[k] = v)),
          delete: (k) => update((m) => void delete m[k]),
          keys: () => Object.keys(current()),
          entries: () => Object.entries(current()),
          clear: () => put(name, undefined),
        };
      },
    };
  }

  private toWrite(entry: Entry): StateWrite {
    return { keyGroup: entry.ref.keyGroup, key: entry.ref.key, value: entry.current, epoch: this.epoch, previous: entry.base };
  }
}
