/**
 * The controller's Prometheus metrics (prom-client), on a registry of its own so that several
 * controllers in one process (tests) never share counters. Names follow Prometheus conventions:
 * one `expo_worker_` prefix, base units, `_total` counters, no build ids in labels.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { BUILD_STATUSES, WORKER_STATUSES } from '../protocol/domain.ts';
import type { BuildEvent } from './build-service.ts';
import type { Store } from './store/store.ts';
import { workerStatus } from './views.ts';

export class ControllerMetrics {
  readonly registry = new Registry();
  readonly builds = new Gauge({ name: 'expo_worker_builds', help: 'Builds by status.', labelNames: ['status'], registers: [this.registry] });
  readonly queueLength = new Gauge({ name: 'expo_worker_queue_length', help: 'Builds waiting for a worker.', registers: [this.registry] });
  readonly workers = new Gauge({ name: 'expo_worker_workers', help: 'Workers by status.', labelNames: ['status'], registers: [this.registry] });
  readonly queueWait = new Histogram({
    name: 'expo_worker_queue_wait_seconds',
    help: 'Time from submission (or requeue) to claim.',
    buckets: [0.05, 0.25, 1, 5, 15, 60, 300, 900, 3600],
    registers: [this.registry],
  });
  readonly buildDuration = new Histogram({
    name: 'expo_worker_build_duration_seconds',
    help: 'Time from first claim to the end of the build, by final status.',
    labelNames: ['status'],
    buckets: [30, 60, 120, 300, 600, 1200, 1800, 3600, 7200],
    registers: [this.registry],
  });
  readonly buildsFailed = new Counter({
    name: 'expo_worker_build_failures_total',
    help: 'Attempts that failed, by reason (requeued ones included).',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly buildHeartbeats = new Counter({ name: 'expo_worker_build_heartbeats_total', help: 'Build heartbeats accepted.', registers: [this.registry] });
  readonly workerHeartbeats = new Counter({
    name: 'expo_worker_worker_heartbeats_total',
    help: 'Worker heartbeats and polls received.',
    labelNames: ['kind'],
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'expo_worker_controller_' });
  }

  onBuildEvent(e: BuildEvent, now: number): void {
    switch (e.kind) {
      case 'submitted':
        break;
      case 'claimed':
        this.queueWait.observe(Math.max(0, (now - e.build.createdAt) / 1000));
        break;
      case 'requeued':
        this.buildsFailed.inc({ reason: e.reason });
        break;
      case 'finished':
        if (e.build.failureReason) this.buildsFailed.inc({ reason: e.build.failureReason });
        if (e.build.assignedAt !== null) this.buildDuration.observe({ status: e.build.status }, Math.max(0, (now - e.build.assignedAt) / 1000));
        break;
      default: {
        const never: never = e;
        throw new Error(`unknown build event ${JSON.stringify(never)}`);
      }
    }
  }

  /** Gauges read from the store at scrape time. */
  async refresh(store: Store, _now: number): Promise<void> {
    const counts = await store.countBuildsByStatus();
    for (const s of BUILD_STATUSES) this.builds.set({ status: s }, counts[s]);
    this.queueLength.set(counts.queued);
    const byStatus = Object.fromEntries(WORKER_STATUSES.map((s) => [s, 0])) as Record<string, number>;
    for (const w of await store.listWorkers()) {
      const held = await store.activeBuildsOfWorker(w.id);
      byStatus[workerStatus(w, held.map((b) => b.id))]! += 1;
    }
    for (const [s, n] of Object.entries(byStatus)) this.workers.set({ status: s }, n);
  }
}
