/** The clock of the source-log descriptors (implementations.ts, aws-implementations.ts). */

/** The dedup window the source-log descriptors configure (short, so that tests can pass it). */
export const CONTRACT_DEDUP_WINDOW_MS = 60_000;

/** A clock the test moves; one per created resource, kept across reopen(). */
export class ManualClock {
  constructor(private current = 1_700_000_000_000) {}
  now(): number {
    return this.current;
  }
  advance(ms: number): void {
    this.current += ms;
  }
}
