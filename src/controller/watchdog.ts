/**
 * The controller's watchdog: it fails active builds whose heartbeats stopped
 * (`heartbeat_timeout`) and marks silent workers `offline`, failing what they held
 * (`worker_lost`). A build still `assigned` — its worker never said it started — is put back in
 * the queue instead, without spending an attempt. A failed build frees its worker's slot, so the worker reads `idle` again.
 * A worker inside a long poll or heartbeat wait is alive, however old its last contact. This
 * controller sees only its own waits (`isWaiting`); with several controllers the watchdog runs on
 * the leader alone, and a worker waiting on another controller is kept alive in the store by
 * that controller, which renews its `lastSeenAt` every quarter heartbeat timeout (see worker-waits.ts).
 * Backstops for an agent alive but stuck: a build past its `timeoutS` (steps) or the prepare
 * timeout by more than `backstopGraceMs` is failed `timed_out` / `prepare_timeout`.
 *
 * When: on the deadline, not by polling. After each pass the store tells the earliest deadline
 * still ahead (`nextLivenessDeadline`) and one timer is armed just past it. Signs of life only
 * move deadlines later, so a timer armed at the earliest one is never late; a deadline that
 * appears later (a claim, a new contact, a build starting its steps) lies at least one timeout
 * after its event, and the sleep is capped at half a timeout and at a timeout less the clock skew
 * a leader may have (`maxClockSkewMs`) — so nothing is missed, even with another controller's
 * clock that much behind ours, or a deadline written by another controller. Below a timeout of
 * 4 s the timeout less that skew (2 s) is the tighter cap; at 2.1 s or less it leaves under
 * `SHORT_TIMEOUT_CAP_MS`, and the cap is that instead (half the timeout if less). `start` makes a pass at once: after a restart or
 * a takeover everything is read again from the store (the restart grace still applies: nothing
 * fails before it ends, and the first timer is armed no earlier).
 *
 * Failing many builds at once does not hold the event loop: the pass lets other work in
 * (`setImmediate`) whenever it has run `SLICE_MS` without a break, and gives up on `GIVE_UP_BATCH`
 * builds at a time (on PostgreSQL their round trips overlap).
 * States: stopped → running (`start`) → stopped (`stop`); a pass in progress is awaited by `stop`.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { backstopGraceMs, deathCutoff, maxClockSkewMs, sweepIntervalMs, type WatchdogPolicy } from '../monitor/watchdog-policy.ts';
import type { Settled } from './attempt-endings.ts';
import type { BuildService } from './build-service.ts';
import type { BuildRecord, Store } from './store/store.ts';

/** The queries a sweep makes; every change goes through the build service. */
export type WatchdogStore = Pick<Store, 'findStaleBuilds' | 'findSilentWorkers' | 'markWorkerOffline' | 'activeBuildsOfWorker' | 'findOverdueBuilds' | 'nextLivenessDeadline'>;

/** What one timed pass did, told to `onPass` when it failed a build or marked a worker offline. */
export interface WatchdogPass {
  builds: number;
  workers: number;
  /** How long the pass took, ms. */
  durationMs: number;
  /** The largest event-loop delay seen during the pass, ms (1 ms resolution; 0 for a pass too short to sample). */
  loopDelayMaxMs: number;
}

export interface WatchdogOptions {
  store: WatchdogStore;
  service: Pick<BuildService, 'giveUp' | 'waits' | 'liveness'>;
  policy: WatchdogPolicy;
  now: () => number;
  onError: (err: unknown) => void;
  /**
   * Called after `FAILED_SWEEPS_TO_RESIGN` sweeps in a row failed (the count then starts again):
   * a leader whose pool is broken while its lock connection is fine would otherwise hold the
   * lead and watch nothing. The app gives up the lead for one check.
   */
  onFailing?: () => void;
  /** Told of each timed pass that ended something (metrics). */
  onPass?: (pass: WatchdogPass) => void;
}

/** Failed sweeps in a row after which `onFailing` is called. */
export const FAILED_SWEEPS_TO_RESIGN = 3;

/**
 * How far past a deadline the timer is armed, ms: the rules are strict (dead when older than the
 * timeout), the clock reads whole ms, and a timer may fire a ms early by the wall clock.
 */
export const DEADLINE_SLACK_MS = 2;
/** The longest a pass runs before it lets other work in, ms: a thousand builds failed at once must not stall requests. */
export const SLICE_MS = 5;
/**
 * The sleep cap when a timeout less the allowed clock skew leaves under this (timeouts of
 * 2.1 s or less: tests, not production): a deadline written by a controller whose clock is behind may then
 * be due at once, and this bounds how late it is seen without polling every 10 ms.
 */
export const SHORT_TIMEOUT_CAP_MS = 100;
/** How many builds a pass gives up on at once: on PostgreSQL their round trips overlap (leaving most of the pool of 10 to requests); on SQLite it changes nothing. */
export const GIVE_UP_BATCH = 4;

export class Watchdog {
  private readonly o: WatchdogOptions;
  private timer: NodeJS.Timeout | null = null;
  private sweeping: Promise<void> | null = null;
  private failedInARow = 0;
  private running = false;
  /** Bumped by each start and stop: a pass of an earlier run arms no timer. */
  private generation = 0;
  /** When the pass last let other work in (`performance.now()`). */
  private sliceStart = 0;

  constructor(options: WatchdogOptions) {
    this.o = options;
  }

  /** Starts the passes with one at once (re-reading everything from the store). */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.arm(0, ++this.generation);
  }

  async stop(): Promise<void> {
    this.running = false;
    this.generation++;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.sweeping;
  }

  private arm(delayMs: number, generation: number): void {
    this.timer = setTimeout(() => {
      this.timer = null;
      // A pass of the run before a quick stop and start may still be going: this one follows it.
      const pass = (this.sweeping ?? Promise.resolve()).then(() => this.timedPass(generation));
      this.sweeping = pass;
      void pass.finally(() => {
        if (this.sweeping === pass) this.sweeping = null;
      });
    }, delayMs);
    this.timer.unref();
  }

  /** One pass, then the timer for the next deadline; never rejects. */
  private async timedPass(generation: number): Promise<void> {
    if (generation !== this.generation) return;
    const started = performance.now();
    const delay = monitorEventLoopDelay({ resolution: 1 });
    delay.enable();
    let next: number;
    try {
      const now = this.o.now();
      const done = await this.sweep(now);
      this.failedInARow = 0;
      next = await this.untilNextDeadline(now);
      delay.disable();
      if (done.builds + done.workers > 0) {
        const loopDelayMaxMs = delay.count > 0 ? delay.max / 1e6 : 0;
        this.o.onPass?.({ ...done, durationMs: performance.now() - started, loopDelayMaxMs });
      }
    } catch (err) {
      delay.disable();
      this.o.onError(err);
      // Retried at the polling pace of old: the store may be back in a moment.
      next = sweepIntervalMs(this.o.policy.heartbeatTimeoutMs);
      if (++this.failedInARow >= FAILED_SWEEPS_TO_RESIGN) {
        this.failedInARow = 0;
        this.o.onFailing?.();
      }
    }
    if (this.running && generation === this.generation) this.arm(next, generation);
  }

  /**
   * How long to sleep after the pass at `sweptAt`: until just past the earliest deadline still
   * ahead, not before the restart grace ends, at most half a timeout (see the module's comment).
   */
  private async untilNextDeadline(sweptAt: number): Promise<number> {
    const { heartbeatTimeoutMs, controllerStartedAt } = this.o.policy;
    const next = await this.o.store.nextLivenessDeadline({
      from: sweptAt,
      heartbeatTimeoutMs,
      prepareTimeoutMs: this.o.service.liveness.prepareTimeoutMs,
      graceMs: backstopGraceMs(heartbeatTimeoutMs),
    });
    // Deadlines before `sweptAt` were that pass's; in the grace it failed nothing, and the pass
    // at the grace's end takes them all.
    const at = Math.max(next === null ? Number.POSITIVE_INFINITY : next + 1 + DEADLINE_SLACK_MS, controllerStartedAt + heartbeatTimeoutMs);
    const half = Math.floor(heartbeatTimeoutMs / 2);
    const cap = Math.max(10, Math.min(half, Math.max(SHORT_TIMEOUT_CAP_MS, heartbeatTimeoutMs - maxClockSkewMs(heartbeatTimeoutMs))));
    return Math.min(cap, Math.max(0, at - this.o.now()));
  }

  /** Lets other work in when the pass has held the event loop for `SLICE_MS`. */
  private async breathe(): Promise<void> {
    if (performance.now() - this.sliceStart < SLICE_MS) return;
    await yieldToLoop();
    this.sliceStart = performance.now();
  }

  /** One pass at time `now`; returns how many builds it failed and workers it marked offline. */
  async sweep(now: number): Promise<{ builds: number; workers: number }> {
    this.sliceStart = performance.now();
    const stale = await this.sweepSilence(now);
    return { builds: stale.builds + (await this.sweepOverdue(now)), workers: stale.workers };
  }

  private async sweepSilence(now: number): Promise<{ builds: number; workers: number }> {
    const cutoff = deathCutoff(this.o.policy, now);
    if (cutoff === null) return { builds: 0, workers: 0 };
    const timeoutS = this.o.policy.heartbeatTimeoutMs / 1000;
    let builds = 0;
    // One still `assigned` was never acknowledged by its worker: the settlement takes it back
    // rather than failing it (not counted here).
    // The pass lets requests in between its writes (`breathe`), so each write carries the
    // staleness it acts on: a heartbeat or a worker's contact that lands mid-pass keeps its build
    // or worker, though the list was read before it.
    builds += await this.giveUpAll(await this.o.store.findStaleBuilds(cutoff), (b) => this.o.service.giveUp(b, 'heartbeat_timeout', `no heartbeat for ${timeoutS}s`, cutoff));
    let workers = 0;
    for (const w of await this.o.store.findSilentWorkers(cutoff)) {
      if (this.o.service.waits.isWaiting(w.id)) continue;
      if (!(await this.o.store.markWorkerOffline(w.id, cutoff))) continue;
      workers++;
      builds += await this.giveUpAll(await this.o.store.activeBuildsOfWorker(w.id), (b) => this.o.service.giveUp(b, 'worker_lost', `worker ${w.id} silent for ${timeoutS}s`));
      await this.breathe();
    }
    return { builds, workers };
  }

  /**
   * Fails builds whose agent should long since have ended them: the grace (one heartbeat
   * timeout, at least a minute) is time for a live agent to stop the steps and report on its own.
   */
  private async sweepOverdue(now: number): Promise<number> {
    if (deathCutoff(this.o.policy, now) === null) return 0;
    const graceMs = backstopGraceMs(this.o.policy.heartbeatTimeoutMs);
    // The prepare timeout the controller states to its workers: one value for both.
    const { prepareTimeoutMs } = this.o.service.liveness;
    return this.giveUpAll(await this.o.store.findOverdueBuilds({ now, prepareTimeoutMs, graceMs }), (b) =>
      b.status === 'running'
        ? this.o.service.giveUp(b, 'timed_out', `the steps ran past the build's timeout of ${b.timeoutS} s and its worker did not report it within ${graceMs / 1000} s more`)
        : this.o.service.giveUp(b, 'prepare_timeout', `the VM was not ready to run the steps within the prepare timeout of ${prepareTimeoutMs / 1000} s`),
    );
  }

  /**
   * Gives up on each build, `GIVE_UP_BATCH` at a time (each is a compare-and-set of its own, so
   * they may overlap: on PostgreSQL their round trips do), letting other work in between;
   * returns how many attempts ended.
   */
  private async giveUpAll(list: BuildRecord[], giveUp: (b: BuildRecord) => Promise<Settled>): Promise<number> {
    let ended = 0;
    for (let i = 0; i < list.length; i += GIVE_UP_BATCH) {
      for (const settled of await Promise.all(list.slice(i, i + GIVE_UP_BATCH).map(giveUp))) if (failed(settled)) ended++;
      await this.breathe();
    }
    return ended;
  }
}

/** A sweep counts the attempts it ended (requeued ones included), not the assignments it took back. */
const failed = (s: Settled): boolean => s.build !== null && (s.settlement.kind === 'requeue' || s.settlement.kind === 'end');
