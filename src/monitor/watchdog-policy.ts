/**
 * The watchdog's policy, as pure functions of time so that it is tested with plain numbers.
 *
 * A build (or worker) is dead when its last sign of life is older than the heartbeat timeout.
 * After the controller starts it grants one full timeout of grace — heartbeats that could not
 * arrive while it was down must not fail healthy builds — so its deadline is
 * `max(lastSeen, controllerStartedAt) + timeout`. The sweep runs often enough that a death is
 * noticed at most `sweepIntervalMs` (≤ 1 s) late.
 */

export interface WatchdogPolicy {
  heartbeatTimeoutMs: number;
  controllerStartedAt: number;
}

/** Signs of life older than the returned time are dead; null while the start-up grace lasts. */
export function deathCutoff(p: WatchdogPolicy, now: number): number | null {
  const cutoff = now - p.heartbeatTimeoutMs;
  return cutoff < p.controllerStartedAt ? null : cutoff;
}

/** How often to sweep: a quarter of the timeout, never more than 1 s and never under 10 ms. */
export function sweepIntervalMs(heartbeatTimeoutMs: number): number {
  return Math.max(10, Math.min(1000, Math.floor(heartbeatTimeoutMs / 4)));
}
