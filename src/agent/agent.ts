/**
 * The agent daemon: turns the controller's queue into builds on this host.
 *
 * States: `starting` (reap orphaned clones, host preflight) → `polling` (a long poll open
 * whenever a slot is free and the preflight passes; paused with a logged reason when it fails)
 * → `draining` (first SIGTERM/SIGINT: no new polls, running builds finish) → `stopped`.
 * `abortAll` (second signal) aborts running builds cleanly: reported, VMs deleted.
 *
 * Alongside: a worker heartbeat listing the running builds (the controller fails builds it
 * thinks run here but that are not listed, and answers which of ours to abort or cancel). Each
 * heartbeat waits at the controller up to one interval for news, so a cancel reaches a running
 * step at once; the next one leaves when the answer comes, or at once when a build starts or
 * ends. And a schedule (node-cron) that reaps orphans and re-runs the preflight.
 *
 * Every interval follows the controller's heartbeat timeout, which it states in each answer:
 * see `agentIntervals` (src/monitor/watchdog-policy.ts). The config's values are upper bounds.
 */
import cron, { type ScheduledTask } from 'node-cron';
import type { Logger } from 'pino';
import type { CheckResult } from '../health/check.ts';
import { isExpoError } from '../protocol/errors.ts';
import type { PollResponse } from '../protocol/schemas.ts';
import type { Liveness } from '../protocol/liveness.ts';
import { agentIntervals, type AgentIntervalBounds, type AgentIntervals } from '../monitor/watchdog-policy.ts';
import type { ControllerClient } from './controller-client.ts';
import type { Outcome } from './build-runner.ts';
import type { ReapReport } from '../vm/reaper.ts';
import { buildResultOf, type AgentMetrics } from './metrics.ts';

export type AgentState = 'starting' | 'polling' | 'draining' | 'stopped';

/** The least time between two worker heartbeats, ms. */
const MIN_HEARTBEAT_GAP_MS = 250;
/** The longest wait a heartbeat may ask for (the API's bound), s. */
const MAX_WAIT_S = 25;

/** What the daemon needs of a build runner. */
export interface Runner {
  readonly buildId: string;
  run(): Promise<Outcome>;
  /** Ends the attempt early; true when this call changed anything (false when already ending). */
  abort(reason: 'attempt_over' | 'shutdown', detail?: string): boolean;
  cancel(): boolean;
}

export interface AgentDeps {
  client: Pick<ControllerClient, 'poll' | 'workerHeartbeat'>;
  /** Builds the runner of a claim, with the intervals (and the controller's clocks) in force when it was claimed. */
  makeRunner: (claim: PollResponse, intervals: AgentIntervals, liveness: Liveness | null) => Runner;
  /** Deletes this worker's clones that belong to none of `liveBuildIds`. */
  reap: (liveBuildIds: ReadonlySet<string>) => Promise<ReapReport>;
  preflight: () => Promise<CheckResult[]>;
  log: Logger;
  settings: AgentSettings;
  /** Build results, reaped orphans and preflight checks are counted here. */
  metrics?: Pick<AgentMetrics, 'buildFinished' | 'orphansReaped' | 'healthCheck'>;
  /** The standby VM (standby.ts), when the config asks for one: told when slots free and when the agent stops. */
  standby?: { start(freeSlots: () => number): void; fill(): void; close(): Promise<void> };
}

export interface AgentSettings extends AgentIntervalBounds {
  slots: 1 | 2;
  /** How long to wait before polling again after the controller could not be reached, s (grows ×2 to 8×). Default 2. */
  reconnectDelayS: number;
  /** How often to re-run the preflight while it fails, s. Default 30. */
  preflightRetryS: number;
  /** cron expression for reaping and the preflight. Default every 10 minutes. */
  maintenanceCron: string;
}

export interface AgentStatus {
  state: AgentState;
  slotsTotal: number;
  slotsBusy: number;
  runningBuilds: string[];
  lastPollAt: number | null;
  lastError: string | null;
  preflight: CheckResult[];
}

export class Agent {
  private d: AgentDeps;
  /**
   * Running attempts, keyed `<buildId>#<attempt>`: a retried build can be claimed again by this
   * worker while its previous attempt is still deleting its VM.
   */
  private readonly runners = new Map<string, { buildId: string; runner: Runner; done: Promise<void> }>();
  private stateValue: AgentState = 'starting';
  private pollAbort: AbortController | null = null;
  /** Ends the heartbeat in flight (or the pause before the next), so that a fresh one leaves at once. */
  private heartbeatRefresh: (() => void) | null = null;
  private heartbeats: Promise<void> | null = null;
  private liveness: Liveness | null = null;
  private cronTask: ScheduledTask | null = null;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private preflightChecks: CheckResult[] = [];
  private lastPollAt: number | null = null;
  private lastError: string | null = null;

  constructor(deps: AgentDeps) {
    this.d = deps;
  }

  /**
   * Replaces how builds are run and the host is checked, and the interval bounds; running builds
   * keep what they started with. The caller keeps what identifies the worker unchanged.
   */
  reconfigure(parts: Pick<AgentDeps, 'makeRunner' | 'reap' | 'preflight' | 'settings'>): void {
    this.d = { ...this.d, ...parts };
  }

  get state(): AgentState {
    return this.stateValue;
  }

  /** The intervals in force: the config's, capped by what the controller last stated. */
  intervals(): AgentIntervals {
    return agentIntervals(this.d.settings, this.liveness);
  }

  private learn(liveness: Liveness | null): void {
    if (liveness === null) return;
    const before = this.liveness;
    this.liveness = liveness;
    if (before?.heartbeatTimeoutMs !== liveness.heartbeatTimeoutMs) {
      this.d.log.info({ controllerHeartbeatTimeoutS: liveness.heartbeatTimeoutMs / 1000, ...this.intervals() }, 'intervals follow the controller’s heartbeat timeout');
    }
  }

  status(): AgentStatus {
    return {
      state: this.stateValue,
      slotsTotal: this.d.settings.slots,
      slotsBusy: this.runners.size,
      runningBuilds: this.buildIds(),
      lastPollAt: this.lastPollAt,
      lastError: this.lastError,
      preflight: this.preflightChecks,
    };
  }

  async start(): Promise<void> {
    await this.maintenance('start');
    if (this.stateValue !== 'starting') return; // told to stop while starting
    this.stateValue = 'polling';
    this.heartbeats = this.heartbeatLoop();
    this.cronTask = cron.schedule(this.d.settings.maintenanceCron, () => void this.maintenance('schedule'), { noOverlap: true });
    this.loop = this.pollLoop();
    this.d.standby?.start(() => (this.stateValue === 'polling' ? this.d.settings.slots - this.runners.size : 0));
    this.d.log.info({ slots: this.d.settings.slots }, 'agent ready: polling for builds');
  }

  /** Reaps orphaned clones and runs the host preflight; a failing preflight pauses polling. */
  private async maintenance(when: string): Promise<void> {
    try {
      const report = await this.d.reap(new Set(this.buildIds()));
      this.d.metrics?.orphansReaped(report.deleted.length, report.failed.length);
      if (report.deleted.length > 0 || report.failed.length > 0) {
        this.d.log.warn({ when, deleted: report.deleted, failed: report.failed.map((f) => `${f.name}: ${f.error.message}`) }, 'reaped orphaned clones');
      }
    } catch (err) {
      this.d.log.error({ when, err: (err as Error).message }, 'reaping orphaned clones failed');
    }
    await this.runPreflight();
  }

  private async runPreflight(): Promise<boolean> {
    try {
      this.preflightChecks = await this.d.preflight();
    } catch (err) {
      this.preflightChecks = [{ name: 'preflight', ok: false, detail: (err as Error).message, durationMs: 0 }];
    }
    for (const c of this.preflightChecks) this.d.metrics?.healthCheck(c.name, c.ok);
    const failed = this.preflightChecks.filter((c) => !c.ok);
    if (failed.length > 0) {
      this.d.log.error({ failed: failed.map((c) => `${c.name}: ${c.detail}`) }, 'host preflight failed: not taking builds until it passes');
    }
    return failed.length === 0;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wake = done;
    });
  }

  private async pollLoop(): Promise<void> {
    let failures = 0;
    while (this.stateValue === 'polling') {
      if (!this.preflightChecks.every((c) => c.ok)) {
        await this.sleep(this.d.settings.preflightRetryS * 1000);
        if (this.stateValue === 'polling') await this.runPreflight();
        continue;
      }
      const free = this.d.settings.slots - this.runners.size;
      if (free <= 0) {
        await this.sleep(60_000); // woken when a slot frees
        continue;
      }
      this.pollAbort = new AbortController();
      try {
        const { claim, liveness } = await this.d.client.poll(
          { slotsFree: free, slotsTotal: this.d.settings.slots, runningBuilds: this.buildIds(), waitS: this.intervals().pollWaitS },
          this.pollAbort.signal,
        );
        this.learn(liveness);
        this.lastPollAt = Date.now();
        // A claim first: maintenance can take long, and the controller expects the claim to
        // show up in our heartbeats within its grace.
        if (claim) this.startBuild(claim);
        if (failures > 0) {
          this.d.log.info('controller reachable again');
          failures = 0;
          await this.maintenance('reconnect');
        }
      } catch (err) {
        if (this.stateValue !== 'polling') break;
        failures++;
        this.lastError = (err as Error).message;
        const delayS = this.d.settings.reconnectDelayS * 2 ** Math.min(3, failures - 1) * (0.5 + Math.random() / 2);
        this.d.log.warn({ err: this.lastError, retryInS: Math.round(delayS * 10) / 10 }, isExpoError(err, 'HTTP_STATUS') ? 'poll refused' : 'controller unreachable');
        await this.sleep(delayS * 1000);
      } finally {
        this.pollAbort = null;
      }
    }
  }

  /** The builds this worker runs (an attempt still deleting its VM counts until it is done). */
  private buildIds(): string[] {
    return [...new Set([...this.runners.values()].map((r) => r.buildId))];
  }

  private runnersOf(buildId: string): Runner[] {
    return [...this.runners.values()].filter((r) => r.buildId === buildId).map((r) => r.runner);
  }

  private startBuild(claim: PollResponse): void {
    const runner = this.d.makeRunner(claim, this.intervals(), this.liveness);
    const key = `${claim.build.id}#${claim.build.attempt}`;
    this.d.log.info({ buildId: claim.build.id, attempt: claim.build.attempt }, 'build claimed');
    const done = runner
      .run()
      .then((outcome) => {
        const { result, reason } = buildResultOf(outcome);
        this.d.metrics?.buildFinished(result, reason);
        this.d.log.info({ buildId: claim.build.id, outcome }, 'build done');
      })
      .catch((err: unknown) => {
        this.d.metrics?.buildFinished('error');
        this.lastError = (err as Error).message;
        this.d.log.error({ buildId: claim.build.id, err: this.lastError }, 'build runner failed');
      })
      .finally(() => {
        if (this.runners.get(key)?.runner === runner) this.runners.delete(key);
        this.d.standby?.fill();
        this.wake?.();
        this.heartbeatRefresh?.();
      });
    this.runners.set(key, { buildId: claim.build.id, runner, done });
    this.heartbeatRefresh?.();
  }

  /**
   * Worker heartbeats until the agent stops. Each one waits at the controller up to one
   * interval for news; the next leaves as soon as the answer is in (or after the rest of the
   * interval when the answer came early with nothing to do, or the call failed). A build
   * starting or ending cuts the wait short, so the controller always has the current list.
   */
  private async heartbeatLoop(): Promise<void> {
    let failures = 0;
    let last = 0;
    const alive = () => this.stateValue === 'polling' || this.stateValue === 'draining';
    while (alive()) {
      // Never more than a few a second, whatever the answers (a cancel being carried out is
      // answered at once until its build ends). A refresh meanwhile is not lost: the heartbeat
      // that follows carries the current list.
      const gap = last + MIN_HEARTBEAT_GAP_MS - Date.now();
      if (gap > 0) await new Promise((r) => setTimeout(r, gap));
      if (!alive()) break;
      const { workerHeartbeatMs } = this.intervals();
      const started = (last = Date.now());
      const ac = new AbortController();
      this.heartbeatRefresh = () => ac.abort();
      // Wait for news only at a controller that said it can (one that states its clocks): an
      // older one refuses the field.
      const waitS = this.liveness === null ? undefined : Math.min(MAX_WAIT_S, workerHeartbeatMs / 1000);
      let again = false;
      try {
        // Not retried: a retry would carry a list of builds that may be stale by then, and the
        // next heartbeat is never far off.
        const { abort, cancel, liveness } = await this.d.client.workerHeartbeat(
          { runningBuilds: this.buildIds(), slotsTotal: this.d.settings.slots, draining: this.stateValue === 'draining', ...(waitS === undefined ? {} : { waitS }) },
          { retries: 0, signal: ac.signal },
        );
        this.learn(liveness);
        if (failures > 0) this.d.log.info('worker heartbeats delivered again');
        failures = 0;
        let acted = false;
        for (const id of abort) for (const r of this.runnersOf(id)) acted = r.abort('attempt_over', 'the controller no longer assigns this build here') || acted;
        for (const id of cancel) for (const r of this.runnersOf(id)) acted = r.cancel() || acted;
        // Go again at once after news acted on, or after an early answer with nothing in it (the
        // controller woke us for another reason): a cancel must find a heartbeat waiting. An
        // answer about what is already being done (a build still deleting its VM) waits its turn.
        again = acted || (waitS !== undefined && abort.length === 0 && cancel.length === 0);
      } catch (err) {
        if (!ac.signal.aborted) {
          this.lastError = (err as Error).message;
          // Once per outage at warn: the interval can be short, and the poll loop says the rest.
          this.d.log[failures === 0 ? 'warn' : 'debug']({ err: this.lastError }, 'worker heartbeat failed');
          failures++;
        }
      }
      if (ac.signal.aborted || again || !alive()) continue;
      // The interval as it stands now: the answer may have just told us the controller's clock.
      const rest = this.intervals().workerHeartbeatMs - (Date.now() - started);
      if (rest > 0) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, rest);
          this.heartbeatRefresh = () => {
            clearTimeout(t);
            resolve();
          };
        });
      }
    }
    this.heartbeatRefresh = null;
  }

  /** Stops taking builds and waits for the running ones to finish. */
  async drain(): Promise<void> {
    if (this.stateValue === 'stopped') return;
    if (this.stateValue !== 'draining') {
      this.stateValue = 'draining';
      this.d.log.info({ running: this.buildIds() }, 'draining: no new builds; waiting for the running ones');
      this.pollAbort?.abort();
      this.wake?.();
      this.heartbeatRefresh?.();
    }
    // The standby goes first: no build will take it, and it must not outlive the agent.
    const standbyClosed = this.d.standby?.close();
    await this.loop;
    await Promise.all([...this.runners.values()].map((r) => r.done));
    await standbyClosed;
    await this.stop();
  }

  /** Aborts every running build (reported, VMs deleted) and waits for them. */
  async abortAll(): Promise<void> {
    for (const { runner } of this.runners.values()) runner.abort('shutdown', 'the agent is stopping');
    await this.drain();
  }

  private async stop(): Promise<void> {
    if (this.stateValue === 'stopped') return;
    this.stateValue = 'stopped';
    this.heartbeatRefresh?.();
    await this.heartbeats;
    void this.cronTask?.stop();
    this.cronTask = null;
    this.d.log.info('agent stopped');
  }
}
