/**
 * Restart strategies (Flink's fixed-delay, exponential-delay and failure-rate), as a pure
 * decision over the job's restart history (`JobRecord.restarts`, appended by the
 * `recoveryStarted` transition). Exhausted = the job goes FAILED. One implementation for every
 * runtime: `decideNext` applies it (embedded, local cloud, the Step Functions Decide task) and
 * so does the recovery workflow's PlanRestart.
 */
import type { JobRecord } from '../ports.js';

/** Restarts kept on the job record: enough for any restart strategy (they allow at most this many attempts). */
export const RESTART_HISTORY = 200;

export type RestartStrategy =
  | {
      readonly kind: 'fixed-delay';
      /** Restarts allowed in total (Flink: restart-strategy.fixed-delay.attempts). */
      readonly attempts: number;
      readonly delaySeconds: number;
    }
  | {
      readonly kind: 'exponential-backoff';
      readonly initialDelaySeconds: number;
      readonly maxDelaySeconds: number;
      readonly multiplier: number;
      /** A restart this long after the previous one starts the backoff over (Flink: reset-backoff-threshold). */
      readonly resetAfterSeconds: number;
      /** Restarts allowed since the last reset. */
      readonly attempts: number;
    }
  | {
      readonly kind: 'failure-rate';
      /** At most this many restarts within `intervalSeconds` (Flink: max-failures-per-interval). */
      readonly maxFailures: number;
      readonly intervalSeconds: number;
      readonly delaySeconds: number;
    }
  | { readonly kind: 'none' };

/** Default: exponential backoff 1 s .. 5 min, ×2, reset after 1 h quiet, 10 attempts. */
export const DEFAULT_RESTART_STRATEGY: RestartStrategy = {
  kind: 'exponential-backoff',
  initialDelaySeconds: 1,
  maxDelaySeconds: 300,
  multiplier: 2,
  resetAfterSeconds: 3600,
  attempts: 10,
};

/** Times (ms) of the restarts that count against the strategy: failures, not operator rollbacks or restores. */
export function failureRestarts(job: JobRecord): number[] {
  return job.restarts.filter((r) => r.byOperator !== true).map((r) => r.at);
}

export type RestartDecision = { readonly restart: true; readonly delaySeconds: number } | { readonly restart: false; readonly reason: string };

/**
 * May the job restart now, and after which delay? `previous` = times (ms) of the restarts
 * already done, ascending; the restart being decided is not in it.
 */
export function decideRestart(strategy: RestartStrategy, previous: readonly number[], now: number): RestartDecision {
  switch (strategy.kind) {
    case 'none':
      return { restart: false, reason: 'restart strategy none: the first failure fails the job' };
    case 'fixed-delay':
      if (previous.length >= strategy.attempts) {
        return { restart: false, reason: `fixed-delay restart strategy exhausted (${strategy.attempts} attempts)` };
      }
      return { restart: true, delaySeconds: strategy.delaySeconds };
    case 'failure-rate': {
      const windowStart = now - strategy.intervalSeconds * 1000;
      const recent = previous.filter((t) => t > windowStart).length;
      if (recent + 1 > strategy.maxFailures) {
        return { restart: false, reason: `failure-rate restart strategy exhausted (${recent + 1} failures within ${strategy.intervalSeconds} s, max ${strategy.maxFailures})` };
      }
      return { restart: true, delaySeconds: strategy.delaySeconds };
    }
    case 'exponential-backoff': {
      // Restarts since the last quiet period longer than resetAfterSeconds.
      let streak = 0;
      let later = now;
      for (let i = previous.length - 1; i >= 0; i--) {
        const t = previous[i] as number;
        if (later - t >= strategy.resetAfterSeconds * 1000) break;
        streak++;
        later = t;
      }
      if (streak >= strategy.attempts) {
        return { restart: false, reason: `exponential-backoff restart strategy exhausted (${streak} restarts without a ${strategy.resetAfterSeconds} s quiet period)` };
      }
      const delay = Math.min(strategy.maxDelaySeconds, strategy.initialDelaySeconds * strategy.multiplier ** streak);
      return { restart: true, delaySeconds: Math.round(delay) };
    }
  }
}

export function validateRestartStrategy(strategy: RestartStrategy): void {
  const positive = (name: string, n: number, allowZero = true): void => {
    if (!Number.isFinite(n) || n < 0 || (!allowZero && n === 0)) throw new Error(`restart strategy ${strategy.kind}: ${name} must be ${allowZero ? '>= 0' : '> 0'}, got ${n}`);
  };
  // The job record keeps the last RESTART_HISTORY restarts: a count beyond it could never be reached.
  const counted = (name: string, n: number, allowZero = true): void => {
    positive(name, n, allowZero);
    if (n > RESTART_HISTORY) throw new Error(`restart strategy ${strategy.kind}: ${name} must be <= ${RESTART_HISTORY}, got ${n}`);
  };
  switch (strategy.kind) {
    case 'none':
      return;
    case 'fixed-delay':
      counted('attempts', strategy.attempts);
      positive('delaySeconds', strategy.delaySeconds);
      return;
    case 'failure-rate':
      counted('maxFailures', strategy.maxFailures, false);
      positive('intervalSeconds', strategy.intervalSeconds, false);
      positive('delaySeconds', strategy.delaySeconds);
      return;
    case 'exponential-backoff':
      positive('initialDelaySeconds', strategy.initialDelaySeconds);
      positive('maxDelaySeconds', strategy.maxDelaySeconds);
      positive('resetAfterSeconds', strategy.resetAfterSeconds, false);
      counted('attempts', strategy.attempts);
      if (!(strategy.multiplier >= 1)) throw new Error(`restart strategy exponential-backoff: multiplier must be >= 1, got ${strategy.multiplier}`);
      return;
  }
}
