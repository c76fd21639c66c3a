/** The clock of the source-log descriptors (implementations.ts, aws-implementations.ts). */

/** The dedup window the source-log descriptors configure (short, so that tests can pass it). */
export const CONTRACT_DEDUP_WINDOW_MS = 60_000;

/**
 * A clock the test moves; one per created resource, kept across reopen(). It starts at the real
 * time (whole seconds): a TTL attribute derived from it is in the real future, so an emulator
 * that deletes by TTL never deletes an item the test still expects.
 */
export class ManualClock {
  constructor(private current = Math.floor(Date.now() / 1000) * 1000) {}
  now(): number {
    return this.current;
  }
  advance(ms: number): void {
    this.current += ms;
  }
}
