/**
 * A Clock whose time moves only when the test says so. Timers fire in time order (ties in the
 * order they were set); between two timers the fake lets every promise chain that is ready run,
 * so code awaiting fakes (which answer at once) reaches its next wait before time moves on.
 * No real time passes: `settle` yields to the event loop with `setImmediate`, never a timer.
 */
import { sleepOn, type CancelTimer, type Clock } from '../../src/sys/clock.ts';

interface Timer {
  id: number;
  at: number;
  fn: () => void;
  /** Set for `every`. */
  intervalMs?: number;
}

export class FakeClock implements Clock {
  private t: number;
  private seq = 0;
  private readonly timers = new Map<number, Timer>();

  constructor(startMs = Date.UTC(2026, 0, 1)) {
    this.t = startMs;
  }

  now(): number {
    return this.t;
  }

  after(ms: number, fn: () => void): CancelTimer {
    const id = ++this.seq;
    this.timers.set(id, { id, at: this.t + Math.max(0, ms), fn });
    return () => this.timers.delete(id);
  }

  every(ms: number, fn: () => void): CancelTimer {
    const id = ++this.seq;
    const intervalMs = Math.max(1, ms);
    this.timers.set(id, { id, at: this.t + intervalMs, fn, intervalMs });
    return () => this.timers.delete(id);
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return sleepOn(this, ms, signal);
  }

  /** How many timers are set. */
  get pending(): number {
    return this.timers.size;
  }

  /** The delays (from now) of the timers that are set, soonest first. */
  pendingDelays(): number[] {
    return [...this.timers.values()].map((x) => x.at - this.t).sort((a, b) => a - b);
  }

  /** Lets every promise chain that is ready run (a few turns of the event loop, no time). */
  async settle(): Promise<void> {
    for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
  }

  /** Moves time forward by `ms`, firing the timers that fall due on the way, in order. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    await this.settle();
    for (let next = this.nextTimer(); next !== undefined && next.at <= end; next = this.nextTimer()) {
      this.fire(next);
      await this.settle();
    }
    this.t = end;
    await this.settle();
  }

  /**
   * Fires timers one after another (time jumping to each) until `promise` settles; returns its
   * result. Throws when it cannot settle — no timer is left — or when more than `maxMs` would
   * pass: the code under test is stuck.
   */
  async run<T>(promise: Promise<T>, maxMs = 24 * 3600_000): Promise<T> {
    let done = false;
    const watched = promise.finally(() => (done = true));
    watched.catch(() => undefined);
    const limit = this.t + maxMs;
    await this.settle();
    while (!done) {
      const next = this.nextTimer();
      if (next === undefined) throw new Error('FakeClock.run: stuck — the promise has not settled and no timer is set');
      if (next.at > limit) throw new Error(`FakeClock.run: not settled within ${maxMs} ms of fake time`);
      this.fire(next);
      await this.settle();
    }
    return watched;
  }

  private nextTimer(): Timer | undefined {
    let best: Timer | undefined;
    for (const x of this.timers.values()) if (best === undefined || x.at < best.at || (x.at === best.at && x.id < best.id)) best = x;
    return best;
  }

  private fire(x: Timer): void {
    this.t = Math.max(this.t, x.at);
    if (x.intervalMs === undefined) this.timers.delete(x.id);
    else x.at += x.intervalMs;
    x.fn();
  }
}
