/**
 * The controller's Prometheus metrics (prom-client), on a registry of its own so that several
 * controllers in one process (tests) never share counters. Names follow Prometheus conventions:
 * one `expo_worker_` prefix, base units, `_total` counters, no build ids in labels (worker ids
 * appear only in the per-worker state set: a farm has tens of hosts, not thousands).
 * `docs/metrics.md` lists every metric; keep it in step.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { collectProcessMetrics } from '../sys/process-metrics.ts';
import { BUILD_STATUSES, FAILURE_REASONS, WORKER_STATUSES, type WorkerStatus } from '../protocol/domain.ts';
import type { BuildEvent } from './attempt-endings.ts';
import { GITHUB_REPORT_RESULTS, type GithubReportResult } from './github-reporter.ts';
import type { Store } from './store/store.ts';
import { workerStatus } from './views.ts';
import { freeBytes } from './storage-full.ts';

/** What the gauges read at scrape time. */
export type MetricsStore = Pick<Store, 'countBuildsByStatus' | 'activeBuildsByWorker' | 'listWorkers'>;

export interface ControllerMetricsOptions {
  /** The heartbeat timeout, exported so alerts and dashboards can compare ages with it, in ms. */
  heartbeatTimeoutMs: number;
  /** This controller's clock minus the database's, ms, read at scrape time; null when not measured (SQLite: one clock), exported as 0. */
  clockSkewMs?: () => number | null;
}

export class ControllerMetrics {
  readonly registry = new Registry();
  readonly builds = new Gauge({ name: 'expo_worker_builds', help: 'Builds by status.', labelNames: ['status'], registers: [this.registry] });
  readonly queueLength = new Gauge({ name: 'expo_worker_queue_length', help: 'Builds waiting for a worker.', registers: [this.registry] });
  readonly workers = new Gauge({ name: 'expo_worker_workers', help: 'Workers by status.', labelNames: ['status'], registers: [this.registry] });
  readonly workerState = new Gauge({
    name: 'expo_worker_worker_state',
    help: 'One series per worker and status: 1 for the status the worker is in, 0 for the others.',
    labelNames: ['worker', 'status'],
    registers: [this.registry],
  });
  readonly workerSlots = new Gauge({ name: 'expo_worker_worker_slots', help: 'Build slots of the workers not offline.', registers: [this.registry] });
  readonly heartbeatAge = new Gauge({
    name: 'expo_worker_build_heartbeat_age_max_seconds',
    help: 'Age of the oldest last heartbeat among active builds (0 when none is active), by status.',
    labelNames: ['status'],
    registers: [this.registry],
  });
  readonly heartbeatTimeout = new Gauge({
    name: 'expo_worker_heartbeat_timeout_seconds',
    help: 'The configured heartbeat timeout: a build or worker silent this long is failed or offline.',
    registers: [this.registry],
  });
  readonly submitted = new Counter({ name: 'expo_worker_builds_submitted_total', help: 'Builds submitted.', registers: [this.registry] });
  readonly finished = new Counter({
    name: 'expo_worker_builds_finished_total',
    help: 'Builds that reached a final status, by status.',
    labelNames: ['status'],
    registers: [this.registry],
  });
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
  readonly httpDuration = new Histogram({
    name: 'expo_worker_http_request_duration_seconds',
    help: 'HTTP request duration by method, route pattern and status code (long-polls last up to 25 s).',
    labelNames: ['method', 'route', 'code'],
    buckets: [0.001, 0.005, 0.025, 0.1, 0.5, 1, 5, 15, 30],
    registers: [this.registry],
  });

  readonly githubReports = new Counter({
    name: 'expo_worker_github_reports_total',
    help: 'Build reports to GitHub (commit statuses, check runs) by result: reported, refused (not retried), unreachable or failed (retried after a back-off).',
    labelNames: ['result'],
    registers: [this.registry],
  });

  readonly diskFree = new Gauge({
    name: 'expo_worker_controller_disk_free_bytes',
    help: "Free bytes (for the controller's user) on the filesystem of the controller's data directory and of its artifact directory, by path.",
    labelNames: ['path'],
    registers: [this.registry],
  });

  readonly leader = new Gauge({
    name: 'expo_worker_controller_leader',
    help: 'Whether this controller leads (1) or not (0): the leader runs the watchdog and the scheduled jobs; exactly one of the controllers on a database should.',
    registers: [this.registry],
  });

  readonly watchdogLoopDelay = new Histogram({
    name: 'expo_worker_watchdog_event_loop_delay_seconds',
    help: 'The largest event-loop delay (1 ms resolution) during each watchdog pass that failed builds or marked workers offline: how long a request could wait behind the pass.',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });

  readonly clockSkew: Gauge;

  constructor(options: ControllerMetricsOptions) {
    const skewOf = options.clockSkewMs;
    this.clockSkew = new Gauge({
      name: 'expo_worker_controller_clock_skew_seconds',
      help: "This controller's clock minus the database's, measured every minute: liveness compares times written by every controller, so past 2 s (or a twentieth of the heartbeat timeout) the controller will not lead.",
      registers: [this.registry],
      collect() {
        // Unmeasured (SQLite: one clock; or before the first measure) reads 0.
        this.set((skewOf?.() ?? 0) / 1000);
      },
    });
    collectProcessMetrics(this.registry, 'expo_worker_controller_');
    this.heartbeatTimeout.set(options.heartbeatTimeoutMs / 1000);
    this.leader.set(0);
    // Every series exists from the start, so rates and alerts see a 0 before the first event.
    for (const s of BUILD_STATUSES) this.builds.set({ status: s }, 0);
    for (const s of ['succeeded', 'failed', 'cancelled']) this.finished.inc({ status: s }, 0);
    for (const r of FAILURE_REASONS) this.buildsFailed.inc({ reason: r }, 0);
    for (const k of ['poll', 'heartbeat']) this.workerHeartbeats.inc({ kind: k }, 0);
    for (const r of GITHUB_REPORT_RESULTS) this.githubReports.inc({ result: r }, 0);
  }

  onBuildEvent(e: BuildEvent, now: number): void {
    switch (e.kind) {
      case 'submitted':
        this.submitted.inc();
        break;
      case 'claimed':
        this.queueWait.observe(Math.max(0, (now - e.build.createdAt) / 1000));
        break;
      case 'started':
        // Nothing to count: the builds gauge reads the running builds from the store at each scrape.
        break;
      case 'requeued':
        this.buildsFailed.inc({ reason: e.reason });
        break;
      case 'finished':
        this.finished.inc({ status: e.build.status });
        if (e.build.failureReason) this.buildsFailed.inc({ reason: e.build.failureReason });
        if (e.build.assignedAt !== null) this.buildDuration.observe({ status: e.build.status }, Math.max(0, (now - e.build.assignedAt) / 1000));
        break;
      default: {
        const never: never = e;
        throw new Error(`unknown build event ${JSON.stringify(never)}`);
      }
    }
  }

  /** One report to GitHub made or tried (the GitHub reporter's `onReport`). */
  onGithubReport(result: GithubReportResult): void {
    this.githubReports.inc({ result });
  }

  /** One request done: `route` is the route pattern (`/api/v1/builds/:id`), never the URL. */
  onRequest(method: string, route: string, statusCode: number, seconds: number): void {
    this.httpDuration.observe({ method, route, code: String(statusCode) }, seconds);
  }

  /** Free space of each directory (statfs), read at scrape time; a directory not there (yet) has no series. */
  async refreshDiskFree(dirs: readonly (string | undefined)[]): Promise<void> {
    this.diskFree.reset();
    for (const dir of new Set(dirs)) {
      if (dir === undefined) continue;
      const free = await freeBytes(dir);
      if (free !== null) this.diskFree.set({ path: dir }, free);
    }
  }

  /** Gauges read from the store at scrape time. */
  async refresh(store: MetricsStore, now: number): Promise<void> {
    const counts = await store.countBuildsByStatus();
    for (const s of BUILD_STATUSES) this.builds.set({ status: s }, counts[s]);
    this.queueLength.set(counts.queued);
    const byStatus = Object.fromEntries(WORKER_STATUSES.map((s) => [s, 0])) as Record<WorkerStatus, number>;
    const oldest: Record<string, number> = { assigned: 0, preparing: 0, running: 0 };
    let slots = 0;
    this.workerState.reset();
    const heldByWorker = await store.activeBuildsByWorker();
    for (const w of await store.listWorkers()) {
      const held = heldByWorker.get(w.id) ?? [];
      const status = workerStatus(w, held.map((b) => b.id));
      byStatus[status] += 1;
      for (const s of WORKER_STATUSES) this.workerState.set({ worker: w.id, status: s }, s === status ? 1 : 0);
      if (!w.offline) slots += w.slotsTotal ?? 0;
      for (const b of held) {
        const last = b.lastHeartbeatAt ?? b.assignedAt ?? now;
        oldest[b.status] = Math.max(oldest[b.status] ?? 0, (now - last) / 1000);
      }
    }
    for (const [s, n] of Object.entries(byStatus)) this.workers.set({ status: s }, n);
    for (const [s, age] of Object.entries(oldest)) this.heartbeatAge.set({ status: s }, Math.max(0, age));
    this.workerSlots.set(slots);
  }
}
