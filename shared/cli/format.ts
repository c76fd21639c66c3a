import { clearScreenDown, moveCursor } from 'node:readline';
import type { CheckpointRecord } from '../core/ports.js';

/** Plain-text formatting for the CLI: tables, durations, a progress bar, a live status area. */

export function table(headers: readonly string[], rows: readonly (readonly string[])[], rightAligned: ReadonlySet<number> = new Set()): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, i) => (rightAligned.has(i) ? cell.padStart(widths[i] ?? 0) : cell.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

export function ms(value: number | undefined): string {
  if (value === undefined) return '-';
  if (value < 1000) return `${Math.round(value)} ms`;
  if (value < 60_000) return `${(value / 1000).toFixed(value < 10_000 ? 2 : 1)} s`;
  return `${Math.floor(value / 60_000)} min ${Math.round((value % 60_000) / 1000)} s`;
}

export function clockTime(at: number): string {
  const d = new Date(at);
  const two = (n: number): string => String(n).padStart(2, '0');
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

export function count(n: number): string {
  return n.toLocaleString('en-US');
}

export function checkpointDuration(c: CheckpointRecord): number | undefined {
  return c.finishedAt === undefined ? undefined : c.finishedAt - c.triggeredAt;
}

export function sumOffsets(c: CheckpointRecord): number | undefined {
  if (!c.sourceOffsets) return undefined;
  return Object.values(c.sourceOffsets).reduce((a, b) => a + b, 0);
}

export function bar(done: number, total: number, width = 28): string {
  const fraction = total > 0 ? Math.min(1, done / total) : 1;
  const full = Math.round(fraction * width);
  return `[${'#'.repeat(full)}${'-'.repeat(width - full)}] ${String(Math.floor(fraction * 100)).padStart(3)}%`;
}

/** The checkpoint timeline as a table, oldest first. `state` adds a retained/pruned/discarded column. */
export function timeline(checkpoints: readonly CheckpointRecord[], state?: (c: CheckpointRecord) => string): string {
  const headers = ['id', 'trigger', 'status', ...(state ? ['restorable'] : []), 'duration', 'alignment', 'state keys', 'channel state', 'source offset', 'abort reason'];
  const rows = checkpoints.map((c) => [
    String(c.id),
    c.trigger,
    c.status,
    ...(state ? [state(c)] : []),
    ms(checkpointDuration(c)),
    ms(c.alignmentMs),
    c.stateKeys === undefined ? '-' : count(c.stateKeys),
    c.channelStateRecords === undefined ? '-' : count(c.channelStateRecords),
    sumOffsets(c) === undefined ? '-' : count(sumOffsets(c) as number),
    c.abortReason ?? '',
  ]);
  const numeric = state ? [0, 4, 5, 6, 7, 8] : [0, 3, 4, 5, 6, 7];
  return table(headers, rows, new Set(numeric));
}

/**
 * Where live output goes (stderr). On a TTY: a few status lines redrawn in place, with
 * permanent lines (events) printed above them. Otherwise: line-based, no escape codes;
 * the status is printed at most every `plainEveryMs`.
 */
export class LiveArea {
  private drawn = 0;
  private lastPlain = 0;
  private status: readonly string[] = [];

  constructor(
    private readonly stream: NodeJS.WriteStream = process.stderr,
    readonly tty = Boolean(process.stderr.isTTY),
    private readonly plainEveryMs = 2000,
  ) {}

  /** A permanent line (a restart, a resume, an aborted checkpoint). */
  log(line: string): void {
    if (this.tty) {
      this.clear();
      this.stream.write(`${line}\n`);
      this.draw();
    } else {
      this.stream.write(`${line}\n`);
    }
  }

  update(lines: readonly string[], force = false): void {
    this.status = lines;
    if (this.tty) {
      this.clear();
      this.draw();
    } else if (force || Date.now() - this.lastPlain >= this.plainEveryMs) {
      this.lastPlain = Date.now();
      for (const line of lines) this.stream.write(`${line}\n`);
    }
  }

  /**
   * Redraws the status from `read` every `everyMs` until the returned function is called. A
   * tick is skipped while the previous read is still running; a failed read keeps the last status.
   */
  follow(read: () => Promise<readonly string[]>, everyMs: number): () => void {
    let reading = false;
    const timer = setInterval(() => {
      if (reading) return;
      reading = true;
      read()
        .then((lines) => this.update(lines))
        .catch(() => undefined)
        .finally(() => {
          reading = false;
        });
    }, everyMs);
    return () => clearInterval(timer);
  }

  /** Leaves the last status on screen and stops redrawing. */
  done(): void {
    if (!this.tty) return;
    this.drawn = 0;
  }

  private clear(): void {
    if (this.drawn === 0) return;
    moveCursor(this.stream, 0, -this.drawn);
    clearScreenDown(this.stream);
    this.drawn = 0;
  }

  private draw(): void {
    const columns = this.stream.columns || 120;
    for (const line of this.status) this.stream.write(`${line.length > columns - 1 ? line.slice(0, columns - 1) : line}\n`);
    this.drawn = this.status.length;
  }
}
