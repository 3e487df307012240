/**
 * The controller's watchdog: on every sweep it fails active builds whose heartbeats stopped
 * (`heartbeat_timeout`) and marks silent workers `offline`, failing what they held
 * (`worker_lost`). A build still `assigned` — its worker never said it started — is put back in
 * the queue instead, without spending an attempt. A failed build frees its worker's slot, so the worker reads `idle` again.
 * A worker inside a long poll or heartbeat wait is alive, however old its last contact. This
 * controller sees only its own waits (`isWaiting`); with several controllers the watchdog runs on
 * the leader alone, and a worker waiting on another controller is kept alive in the store by
 * that controller, which renews its `lastSeenAt` every quarter heartbeat timeout (see worker-waits.ts).
 * Backstops for an agent alive but stuck: a build past its `timeoutS` (steps) or the prepare
 * timeout by more than `backstopGraceMs` is failed `timed_out` / `prepare_timeout`.
 * States: stopped → running (`start`) → stopped (`stop`); a sweep in progress is awaited by `stop`.
 */
import { backstopGraceMs, deathCutoff, sweepIntervalMs, type WatchdogPolicy } from '../monitor/watchdog-policy.ts';
import type { Settled } from './attempt-endings.ts';
import type { BuildService } from './build-service.ts';
import type { Store } from './store/store.ts';

/** The queries a sweep makes; every change goes through the build service. */
export type WatchdogStore = Pick<Store, 'findStaleBuilds' | 'findSilentWorkers' | 'markWorkerOffline' | 'activeBuildsOfWorker' | 'findOverdueBuilds'>;

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
}

/** Failed sweeps in a row after which `onFailing` is called. */
export const FAILED_SWEEPS_TO_RESIGN = 3;

export class Watchdog {
  private readonly o: WatchdogOptions;
  private timer: NodeJS.Timeout | null = null;
  private sweeping: Promise<void> | null = null;
  private failedInARow = 0;

  constructor(options: WatchdogOptions) {
    this.o = options;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      if (this.sweeping) return;
      this.sweeping = this.sweep(this.o.now())
        .then(
          () => {
            this.failedInARow = 0;
          },
          (err: unknown) => {
            this.o.onError(err);
            if (++this.failedInARow < FAILED_SWEEPS_TO_RESIGN) return;
            this.failedInARow = 0;
            this.o.onFailing?.();
          },
        )
        .finally(() => {
          this.sweeping = null;
        });
    }, sweepIntervalMs(this.o.policy.heartbeatTimeoutMs));
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.sweeping;
  }

  /** One pass at time `now`; returns how many builds it failed and workers it marked offline. */
  async sweep(now: number): Promise<{ builds: number; workers: number }> {
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
    for (const b of await this.o.store.findStaleBuilds(cutoff)) {
      if (failed(await this.o.service.giveUp(b, 'heartbeat_timeout', `no heartbeat for ${timeoutS}s`))) builds++;
    }
    let workers = 0;
    for (const w of await this.o.store.findSilentWorkers(cutoff)) {
      if (this.o.service.waits.isWaiting(w.id)) continue;
      await this.o.store.markWorkerOffline(w.id);
      workers++;
      for (const b of await this.o.store.activeBuildsOfWorker(w.id)) {
        if (failed(await this.o.service.giveUp(b, 'worker_lost', `worker ${w.id} silent for ${timeoutS}s`))) builds++;
      }
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
    let builds = 0;
    // The prepare timeout the controller states to its workers: one value for both.
    const { prepareTimeoutMs } = this.o.service.liveness;
    for (const b of await this.o.store.findOverdueBuilds({ now, prepareTimeoutMs, graceMs })) {
      const settled =
        b.status === 'running'
          ? await this.o.service.giveUp(b, 'timed_out', `the steps ran past the build's timeout of ${b.timeoutS} s and its worker did not report it within ${graceMs / 1000} s more`)
          : await this.o.service.giveUp(b, 'prepare_timeout', `the VM was not ready to run the steps within the prepare timeout of ${prepareTimeoutMs / 1000} s`);
      if (failed(settled)) builds++;
    }
    return builds;
  }
}

/** A sweep counts the attempts it ended (requeued ones included), not the assignments it took back. */
const failed = (s: Settled): boolean => s.build !== null && (s.settlement.kind === 'requeue' || s.settlement.kind === 'end');
