/**
 * The liveness rules, as pure functions of time so that they are tested with plain numbers.
 *
 * One clock: the controller's heartbeat timeout `T`. A build (or worker) is dead when its last
 * sign of life is older than `T`. After the controller starts it grants one full timeout of
 * grace — heartbeats that could not arrive while it was down must not fail healthy builds — so
 * its deadline is `max(lastSeen, controllerStartedAt) + T`. The watchdog wakes at the earliest
 * deadline (watchdog.ts), so a death is noticed a few ms after it, not a polling interval.
 *
 * The grace applies only when no controller was watching. With several controllers on one
 * database the watchdog runs on the leader, and the grace counts from when THIS controller
 * started (`controllerStartedAt` is its start, never the moment it took the lead): a takeover by
 * a controller that has been up longer than `T` grants none, since the agents were talking to a
 * controller all along (every controller renews the contact of the workers waiting on it); a
 * takeover by one that just started grants what is left of its own.
 *
 * Nor was anyone watching while the shared database could not be reached (a restart, a
 * failover, a network cut): no heartbeat could be written and no watchdog could run. So the
 * grace also counts from the last moment this controller found the database unreachable
 * (`graceFrom`): the first sweeps after the database returns fail nothing that the agents will
 * refresh within `T/4`.
 *
 * Everything else follows from `T`, so that shrinking it (tests, demos) never starves a healthy
 * build: the controller holds a long poll at most `T/2` and a worker-heartbeat wait at most
 * `T/4`, and the agent sends every kind of sign of life — worker heartbeats, the phase updates
 * of a preparing build, vm-monitor's beats — at least every `T/4`. Its config values are upper
 * bounds under that. A worker inside a long poll or heartbeat wait is alive.
 *
 * Two backstops for an agent that is alive but stuck: a build running its steps past its
 * `timeoutS`, or preparing past the prepare timeout, is failed by the controller (`timed_out`,
 * `prepare_timeout`) one heartbeat timeout after the agent should have reported it.
 */
import type { Liveness } from '../protocol/liveness.ts';

export interface WatchdogPolicy {
  heartbeatTimeoutMs: number;
  /** When the grace starts: read at every sweep, so it may move (see `graceFrom`). */
  readonly controllerStartedAt: number;
}

/**
 * A policy whose grace starts at the later of `startedAt` and `unavailableAt()` (when the
 * database was last found unreachable), read at each sweep.
 */
export function graceFrom(heartbeatTimeoutMs: number, startedAt: number, unavailableAt?: () => number): WatchdogPolicy {
  return {
    heartbeatTimeoutMs,
    get controllerStartedAt() {
      return Math.max(startedAt, unavailableAt?.() ?? Number.NEGATIVE_INFINITY);
    },
  };
}

/** Signs of life older than the returned time are dead; null while the start-up grace lasts. */
export function deathCutoff(p: WatchdogPolicy, now: number): number | null {
  const cutoff = now - p.heartbeatTimeoutMs;
  return cutoff < p.controllerStartedAt ? null : cutoff;
}

/**
 * The largest clock skew, ms, between a controller and the database at which it may lead: 2 s,
 * or a twentieth of the timeout when that is more (skew shifts every liveness deadline by itself).
 */
export function maxClockSkewMs(heartbeatTimeoutMs: number): number {
  return Math.max(2000, Math.floor(heartbeatTimeoutMs / 20));
}

/**
 * How soon the watchdog tries again after a pass failed (the store could not be reached): a
 * quarter of the timeout, never more than 1 s and never under 10 ms — the polling pace it had
 * before it woke on deadlines.
 */
export function sweepIntervalMs(heartbeatTimeoutMs: number): number {
  return Math.max(10, Math.min(1000, Math.floor(heartbeatTimeoutMs / 4)));
}

/** The longest long-poll the controller holds open: half the heartbeat timeout, at most 25 s. */
export function pollWaitMaxMs(heartbeatTimeoutMs: number): number {
  return Math.max(0, Math.min(25_000, Math.floor(heartbeatTimeoutMs / 2)));
}

/** The longest a worker heartbeat may wait for news (a cancel): a quarter of the heartbeat timeout, at most 25 s. */
export function heartbeatWaitMaxMs(heartbeatTimeoutMs: number): number {
  return Math.max(0, Math.min(25_000, Math.floor(heartbeatTimeoutMs / 4)));
}

/**
 * How long past a build's limit (its steps' `timeoutS`, or the prepare timeout) the controller
 * waits for the agent to report it before failing the build itself: one heartbeat timeout, and
 * at least a minute — the agent needs its step-stop grace (10 s by default), the last log bytes
 * and the completion, retried with backoff.
 */
export function backstopGraceMs(heartbeatTimeoutMs: number): number {
  return Math.max(60_000, heartbeatTimeoutMs);
}

/** The controller's clocks as it states them to workers. */
export function livenessOf(heartbeatTimeoutMs: number, prepareTimeoutMs: number): Liveness {
  return { heartbeatTimeoutMs, pollWaitMaxMs: pollWaitMaxMs(heartbeatTimeoutMs), prepareTimeoutMs };
}

/** The agent's configured intervals: upper bounds, in seconds. */
export interface AgentIntervalBounds {
  workerHeartbeatS: number;
  preparingKeepaliveS: number;
  /** vm-monitor's beat (whole seconds in the VM). */
  heartbeatIntervalS: number;
  pollWaitS: number;
}

/** The intervals an agent uses against a controller. */
export interface AgentIntervals {
  workerHeartbeatMs: number;
  preparingKeepaliveMs: number;
  /** Whole seconds, at least 1: vm-monitor.sh sleeps in whole seconds. */
  monitorIntervalS: number;
  /** How long one of vm-monitor's requests may take, whole seconds: half the timeout, 1–10, so a hung one leaves room for a retry. */
  monitorRequestTimeoutS: number;
  pollWaitS: number;
}

/** The vm-monitor's floor: bash's `sleep` on macOS takes whole seconds. */
const MONITOR_MIN_S = 1;
/** The agent's own floor for its intervals, ms: a controller stating an absurdly short timeout must not make it spin. */
const AGENT_MIN_INTERVAL_MS = 250;

/**
 * Each configured interval, capped at a quarter of the controller's heartbeat timeout (a long
 * poll at half of it). Before the agent has heard from the controller (`liveness` null) the
 * configured values stand; the controller caps the first long poll itself.
 */
export function agentIntervals(bounds: AgentIntervalBounds, liveness: Liveness | null): AgentIntervals {
  const quarterS = liveness ? liveness.heartbeatTimeoutMs / 4000 : Number.POSITIVE_INFINITY;
  const pollMaxS = liveness ? liveness.pollWaitMaxMs / 1000 : Number.POSITIVE_INFINITY;
  return {
    workerHeartbeatMs: Math.max(AGENT_MIN_INTERVAL_MS, Math.round(Math.min(bounds.workerHeartbeatS, quarterS) * 1000)),
    preparingKeepaliveMs: Math.max(AGENT_MIN_INTERVAL_MS, Math.round(Math.min(bounds.preparingKeepaliveS, quarterS) * 1000)),
    monitorIntervalS: Math.max(MONITOR_MIN_S, Math.floor(Math.min(bounds.heartbeatIntervalS, quarterS))),
    monitorRequestTimeoutS: Math.max(1, Math.min(10, Math.floor(quarterS * 2))),
    pollWaitS: Math.min(bounds.pollWaitS, pollMaxS),
  };
}

/**
 * What `doctor` tells about an agent config against a controller: each interval it will use, and
 * warnings for the settings that would starve the controller of signs of life.
 */
export function livenessReport(bounds: AgentIntervalBounds, liveness: Liveness): { lines: string[]; warnings: string[] } {
  const used = agentIntervals(bounds, liveness);
  const s = (ms: number) => `${Math.round(ms) / 1000} s`;
  const quarter = liveness.heartbeatTimeoutMs / 4;
  const line = (name: string, configuredS: number, usedMs: number) =>
    `${name} ${s(usedMs)}${configuredS * 1000 > usedMs + 1 ? ` (configured ${configuredS} s; capped at a quarter of the timeout)` : ''}`;
  const lines = [
    `controller heartbeat timeout ${s(liveness.heartbeatTimeoutMs)}, long poll at most ${s(liveness.pollWaitMaxMs)}, prepare timeout ${s(liveness.prepareTimeoutMs)}`,
    line('worker heartbeat every', bounds.workerHeartbeatS, used.workerHeartbeatMs),
    line('preparing keepalive every', bounds.preparingKeepaliveS, used.preparingKeepaliveMs),
    line('vm-monitor beat every', bounds.heartbeatIntervalS, used.monitorIntervalS * 1000),
    `long poll ${used.pollWaitS} s`,
  ];
  const warnings: string[] = [];
  if (used.workerHeartbeatMs > quarter || used.monitorIntervalS * 1000 > quarter) {
    warnings.push(
      `the controller's heartbeat timeout (${s(liveness.heartbeatTimeoutMs)}) is too short for vm-monitor.sh, which beats every ${MONITOR_MIN_S} s at the fastest: ` +
        `a build could fail heartbeat_timeout after one late beat; use a timeout of at least ${4 * MONITOR_MIN_S} s`,
    );
  }
  for (const [name, v] of [['workerHeartbeatS', bounds.workerHeartbeatS], ['preparingKeepaliveS', bounds.preparingKeepaliveS], ['heartbeatIntervalS', bounds.heartbeatIntervalS]] as const) {
    if (v * 1000 >= liveness.heartbeatTimeoutMs) {
      warnings.push(
        `${name} (${v} s) is not shorter than the controller's heartbeat timeout (${s(liveness.heartbeatTimeoutMs)}) and would starve it; ` +
          `the agent uses a quarter of the timeout instead — lower it in the config so the file says what happens`,
      );
    }
  }
  return { lines, warnings };
}
