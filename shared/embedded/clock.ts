import type { Clock } from '../core/ports.js';

export interface RunClock extends Clock {
  /** Waits until `at` (virtual: jumps there at once) or until something else may have happened. */
  waitUntil(at: number | undefined): Promise<void>;
  readonly virtual: boolean;
}

/** Wall-clock time; waits are real sleeps, capped so that new input is noticed quickly. */
export class RealClock implements RunClock {
  readonly virtual = false;
  constructor(private readonly maxWaitMs = 20) {}

  now(): number {
    return Date.now();
  }

  waitUntil(at: number | undefined): Promise<void> {
    const ms = at === undefined ? this.maxWaitMs : Math.max(0, Math.min(this.maxWaitMs, at - Date.now()));
    return new Promise((resolve) => setTimeout(resolve, ms));
  }
}

/**
 * Simulated time for tests: nothing takes time, and when nothing can happen the clock jumps to
 * the next moment something can (a visibility timeout, a checkpoint timeout, the next trigger).
 * Seeded fault schedules replay exactly.
 */
export class VirtualClock implements RunClock {
  readonly virtual = true;
  constructor(private current = 1_700_000_000_000) {}

  now(): number {
    return this.current;
  }

  advance(ms: number): void {
    this.current += ms;
  }

  waitUntil(at: number | undefined): Promise<void> {
    this.current = Math.max(this.current + 1, at ?? this.current + 1);
    return new Promise((resolve) => setImmediate(resolve));
  }
}
