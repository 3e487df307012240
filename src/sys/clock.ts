/**
 * Time, behind a port so that tests can drive timers instead of sleeping.
 */

/** Stops a timer from {@link Clock.after} or {@link Clock.every}; calling it again does nothing. */
export type CancelTimer = () => void;

/** The clock port: wall time, cancellable waits and timers. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /**
   * Resolves after `ms` milliseconds; rejects with the signal's reason as soon as `signal` aborts.
   */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  /** Calls `fn` once, `ms` milliseconds from now, unless cancelled first. */
  after(ms: number, fn: () => void): CancelTimer;
  /** Calls `fn` every `ms` milliseconds (first call `ms` from now) until cancelled. */
  every(ms: number, fn: () => void): CancelTimer;
}

/**
 * A cancellable wait made of a clock's `after`: resolves when the timer fires, rejects with the
 * signal's reason (and cancels the timer) as soon as `signal` aborts. Every Clock's `sleep`, real
 * or fake, is this, so they cannot differ in how an abort is honoured.
 */
export function sleepOn(clock: Pick<Clock, 'after'>, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      cancel();
      reject(signal?.reason);
    };
    const cancel = clock.after(ms, () => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    });
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** The real clock: `Date.now`, `setTimeout` and `setInterval`. */
export class SystemClock implements Clock {
  now(): number {
    return Date.now();
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return sleepOn(this, ms, signal);
  }

  after(ms: number, fn: () => void): CancelTimer {
    const timer = setTimeout(fn, Math.max(0, ms));
    return () => clearTimeout(timer);
  }

  every(ms: number, fn: () => void): CancelTimer {
    const timer = setInterval(fn, Math.max(1, ms));
    return () => clearInterval(timer);
  }
}
