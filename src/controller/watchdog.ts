/**
 * The controller's watchdog: on every sweep it fails active builds whose heartbeats stopped
 * (`heartbeat_timeout`) and marks silent workers `offline`, failing what they held
 * (`worker_lost`). A build still `assigned` — its worker never said it started — is put back in
 * the queue instead, without spending an attempt. A failed build frees its worker's slot, so the worker reads `idle` again.
 * States: stopped → running (`start`) → stopped (`stop`); a sweep in progress is awaited by `stop`.
 */
import { deathCutoff, sweepIntervalMs, type WatchdogPolicy } from '../monitor/watchdog-policy.ts';
import type { BuildService } from './build-service.ts';
import type { Store } from './store/store.ts';

export interface WatchdogOptions {
  store: Store;
  service: BuildService;
  policy: WatchdogPolicy;
  now: () => number;
  onError: (err: unknown) => void;
}

export class Watchdog {
  private readonly o: WatchdogOptions;
  private timer: NodeJS.Timeout | null = null;
  private sweeping: Promise<void> | null = null;

  constructor(options: WatchdogOptions) {
    this.o = options;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      if (this.sweeping) return;
      this.sweeping = this.sweep(this.o.now())
        .then(() => undefined, this.o.onError)
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
    const cutoff = deathCutoff(this.o.policy, now);
    if (cutoff === null) return { builds: 0, workers: 0 };
    const timeoutS = this.o.policy.heartbeatTimeoutMs / 1000;
    let builds = 0;
    for (const b of await this.o.store.findStaleBuilds(cutoff)) {
      // Never acknowledged by its worker: nothing ran, so it is taken back rather than failed.
      if (b.status === 'assigned') await this.o.service.takeBack(b);
      else if (await this.o.service.failActive(b, 'heartbeat_timeout', `no heartbeat for ${timeoutS}s`)) builds++;
    }
    let workers = 0;
    for (const w of await this.o.store.findSilentWorkers(cutoff)) {
      await this.o.store.markWorkerOffline(w.id);
      workers++;
      for (const b of await this.o.store.activeBuildsOfWorker(w.id)) {
        if (b.status === 'assigned') await this.o.service.takeBack(b);
        else if (await this.o.service.failActive(b, 'worker_lost', `worker ${w.id} silent for ${timeoutS}s`)) builds++;
      }
    }
    return { builds, workers };
  }
}
