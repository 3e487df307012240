/**
 * What the controller says of itself to anyone (no key): the health answer — up or stopping,
 * builds per status, the build slots of the workers not offline — and the Prometheus scrape,
 * whose gauges are read from the store and the disks at the moment of asking.
 */
import { ACTIVE_BUILD_STATUSES } from '../protocol/domain.ts';
import type { HealthResponse } from '../protocol/schemas.ts';
import type { ControllerMetrics, MetricsStore } from './metrics.ts';
import type { Store } from './store/store.ts';

/** What the health answer and the scrape read. */
export type StatusStore = Pick<Store, 'countBuildsByStatus' | 'listWorkers'> & MetricsStore;

export interface StatusServiceOptions {
  store: StatusStore;
  metrics: ControllerMetrics;
  /** Directories whose free space the scrape reports (the data and artifact directories); undefined ones are skipped. */
  diskDirs: readonly (string | undefined)[];
}

export class StatusService {
  private readonly o: StatusServiceOptions;

  constructor(options: StatusServiceOptions) {
    this.o = options;
  }

  async health(stopping: boolean): Promise<HealthResponse> {
    const queueStats = await this.o.store.countBuildsByStatus();
    const workers = await this.o.store.listWorkers();
    return {
      status: stopping ? 'stopping' : 'ok',
      running: !stopping,
      activeJobs: ACTIVE_BUILD_STATUSES.reduce((n, s) => n + queueStats[s], 0),
      maxConcurrent: workers.filter((w) => !w.offline).reduce((n, w) => n + (w.slotsTotal ?? 0), 0),
      queueStats,
    };
  }

  /** The metrics in Prometheus' text format, gauges refreshed at `now`. */
  async scrape(now: number): Promise<{ contentType: string; text: string }> {
    await this.o.metrics.refresh(this.o.store, now);
    await this.o.metrics.refreshDiskFree(this.o.diskDirs);
    return { contentType: this.o.metrics.registry.contentType, text: await this.o.metrics.registry.metrics() };
  }
}
