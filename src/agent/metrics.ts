/**
 * The agent's metrics. Unit code sees only the {@link AgentMetrics} port — a handful of "this
 * happened" calls — and the composition root builds {@link PromAgentMetrics}, the prom-client
 * adapter on a registry of its own, served by the status server. Names follow Prometheus
 * conventions: one `expo_worker_agent_` prefix, base units, `_total` counters, no build ids.
 * `docs/metrics.md` lists every metric; keep it in step.
 */
import { Counter, Gauge, Histogram, Registry } from '../sys/prom-lite.ts';
import type { FailureReason } from '../protocol/domain.ts';
import { collectProcessMetrics } from '../sys/process-metrics.ts';
import type { VmPreparePhase } from '../vm/ephemeral-vm.ts';
import type { Outcome } from './build-runner.ts';
import type { RunnerMetrics } from './runner-ports.ts';

/** How one attempt ended, as the agent saw it. `abandoned`: the controller had already ended it; `error`: the runner itself failed. */
export type BuildResult = 'succeeded' | 'failed' | 'cancelled' | 'abandoned' | 'error';

/** What a controller call that failed ran into: no answer (network, 5xx) or an error status (4xx). */
export type ControllerErrorKind = 'unreachable' | 'status';

/** The agent's metrics port: events only; the adapter decides what to count. */
export interface AgentMetrics extends RunnerMetrics {
  vmPreparePhase(phase: VmPreparePhase, seconds: number): void;
  /** One VM acquisition ended: ready, failed (a check, a crash, a tart error) or aborted (cancel, shutdown). */
  vmPrepared(result: 'ok' | 'failed' | 'aborted'): void;
  healthCheck(check: string, ok: boolean): void;
  buildFinished(result: BuildResult, reason?: FailureReason): void;
  controllerError(call: string, kind: ControllerErrorKind): void;
  /** The agent moved to the next controller of its list (the current one gave no answer, or a 502/503/504). */
  controllerSwitched(): void;
  orphansReaped(deleted: number, failed: number): void;
  /** A claim found a standby VM it could use (hit), or had to prepare a fresh VM (miss). Only with `standby` on. */
  standbyUsed(result: 'hit' | 'miss'): void;
}

/** What the gauges are read from at scrape time. */
export interface AgentGaugeSource {
  slots: () => { total: number; busy: number };
  /** Free bytes where tart keeps its VMs. */
  hostDiskFreeBytes: () => Promise<number>;
}

/** The outcome of `BuildRunner.run` as a result and reason. */
export function buildResultOf(outcome: Outcome): { result: BuildResult; reason?: FailureReason } {
  if (outcome.kind === 'abandoned') return { result: 'abandoned' };
  const { status, failureReason } = outcome.body;
  return status === 'failed' ? { result: 'failed', reason: failureReason ?? 'build_failed' } : { result: status };
}

/** The call a controller request path stands for (`poll`, `worker_heartbeat`, `phase`, `logs`, `complete`…): a bounded label. */
export function controllerCallOf(path: string): string {
  const m = /^\/api\/v1\/(workers|builds)\/[^/]+(?:\/([a-z]+))?$/.exec(path.split('?')[0]!);
  if (!m) return 'other';
  if (m[2] === undefined) return m[1] === 'workers' ? 'worker' : 'build';
  return m[2] === 'heartbeat' ? `${m[1] === 'workers' ? 'worker' : 'build'}_heartbeat` : m[2];
}

export class PromAgentMetrics implements AgentMetrics {
  readonly registry = new Registry();
  private readonly slotsTotal = new Gauge({ name: 'expo_worker_agent_slots', help: 'Build slots of this agent (VMs it may run at once).', registers: [this.registry] });
  private readonly slotsBusy = new Gauge({ name: 'expo_worker_agent_slots_busy', help: 'Slots running a build.', registers: [this.registry] });
  private readonly diskFree = new Gauge({
    name: 'expo_worker_agent_host_disk_free_bytes',
    help: 'Free bytes on the filesystem where tart keeps its VMs.',
    registers: [this.registry],
  });
  private readonly prepareDuration = new Histogram({
    name: 'expo_worker_agent_vm_prepare_duration_seconds',
    help: 'Time each phase of preparing a fresh VM took: clone, boot_to_ip, ssh_ready, checks.',
    labelNames: ['phase'],
    buckets: [0.1, 0.5, 1, 2.5, 5, 10, 20, 40, 60, 120, 300],
    registers: [this.registry],
  });
  private readonly prepares = new Counter({
    name: 'expo_worker_agent_vm_prepares_total',
    help: 'VM acquisitions by result: ok, failed, aborted.',
    labelNames: ['result'],
    registers: [this.registry],
  });
  private readonly checks = new Counter({
    name: 'expo_worker_agent_health_checks_total',
    help: 'Health-check results (VM checks and host preflight) by check and result.',
    labelNames: ['check', 'result'],
    registers: [this.registry],
  });
  private readonly builds = new Counter({
    name: 'expo_worker_agent_builds_total',
    help: 'Attempts this agent ran, by result and failure reason (none unless failed).',
    labelNames: ['result', 'reason'],
    registers: [this.registry],
  });
  private readonly controllerErrors = new Counter({
    name: 'expo_worker_agent_controller_errors_total',
    help: 'Controller requests that failed, by call and kind (unreachable: no answer or 5xx; status: a 4xx answer).',
    labelNames: ['call', 'kind'],
    registers: [this.registry],
  });
  private readonly switches = new Counter({
    name: 'expo_worker_agent_controller_switches_total',
    help: 'Times the agent moved to the next controller of its controllerUrl list (no answer, or a 502/503/504).',
    registers: [this.registry],
  });
  private readonly reaped = new Counter({ name: 'expo_worker_agent_orphans_reaped_total', help: 'Orphaned clones deleted.', registers: [this.registry] });
  private readonly reapFailures = new Counter({
    name: 'expo_worker_agent_orphan_reap_failures_total',
    help: 'Orphaned clones that could not be deleted.',
    registers: [this.registry],
  });
  private readonly monitorFailures = new Counter({
    name: 'expo_worker_agent_monitor_start_failures_total',
    help: 'Times vm-monitor.sh could not be started in a fresh VM.',
    registers: [this.registry],
  });
  private readonly checkoutDuration = new Histogram({
    name: 'expo_worker_agent_checkout_duration_seconds',
    help: "Time checking a GitHub build's commit out in its VM took (token, clone, submodules, LFS), by result: ok, failed.",
    labelNames: ['result'],
    buckets: [1, 2.5, 5, 10, 20, 40, 60, 120, 300, 600],
    registers: [this.registry],
  });
  private readonly standbys = new Counter({
    name: 'expo_worker_agent_standby_total',
    help: 'Claims that used a pre-booted standby VM (hit) or prepared a fresh one (miss); only with standby on.',
    labelNames: ['result'],
    registers: [this.registry],
  });
  private readonly firstStep = new Histogram({
    name: 'expo_worker_agent_claim_to_first_step_seconds',
    help: "Time from an attempt's start (its claim) to its first step starting: VM preparation (or a standby's re-check), the monitor, the checkout.",
    buckets: [0.25, 0.5, 1, 2, 5, 10, 20, 40, 60, 120, 300],
    registers: [this.registry],
  });
  private readonly source: AgentGaugeSource;

  constructor(source: AgentGaugeSource) {
    this.source = source;
    collectProcessMetrics(this.registry, 'expo_worker_agent_');
    // Series that alerts use exist from the start, so `increase()` sees the first event.
    for (const r of ['ok', 'failed', 'aborted']) this.prepares.inc({ result: r }, 0);
    for (const r of ['succeeded', 'cancelled', 'abandoned', 'error']) this.builds.inc({ result: r, reason: 'none' }, 0);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The Prometheus text, gauges read fresh. A failed disk read shows NaN rather than failing the scrape (or faking a 0). */
  async render(): Promise<string> {
    const { total, busy } = this.source.slots();
    this.slotsTotal.set(total);
    this.slotsBusy.set(busy);
    try {
      this.diskFree.set(await this.source.hostDiskFreeBytes());
    } catch {
      this.diskFree.set(Number.NaN);
    }
    return this.registry.metrics();
  }

  vmPreparePhase(phase: VmPreparePhase, seconds: number): void {
    this.prepareDuration.observe({ phase }, seconds);
  }

  vmPrepared(result: 'ok' | 'failed' | 'aborted'): void {
    this.prepares.inc({ result });
  }

  healthCheck(check: string, ok: boolean): void {
    this.checks.inc({ check, result: ok ? 'ok' : 'failed' });
  }

  buildFinished(result: BuildResult, reason?: FailureReason): void {
    this.builds.inc({ result, reason: reason ?? 'none' });
  }

  controllerError(call: string, kind: ControllerErrorKind): void {
    this.controllerErrors.inc({ call, kind });
  }

  controllerSwitched(): void {
    this.switches.inc();
  }

  orphansReaped(deleted: number, failed: number): void {
    this.reaped.inc(deleted);
    this.reapFailures.inc(failed);
  }

  monitorStartFailed(): void {
    this.monitorFailures.inc();
  }

  standbyUsed(result: 'hit' | 'miss'): void {
    this.standbys.inc({ result });
  }

  firstStepStarted(seconds: number): void {
    this.firstStep.observe(seconds);
  }

  checkoutFinished(seconds: number, ok: boolean): void {
    this.checkoutDuration.observe({ result: ok ? 'ok' : 'failed' }, seconds);
  }
}
