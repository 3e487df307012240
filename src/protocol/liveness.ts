/**
 * The controller's clocks, as it states them to workers. Every answer to a worker's poll and
 * heartbeat (and its view of itself, which `doctor` reads) carries them in headers, so an agent
 * never guesses: it derives each of its own intervals from the controller's heartbeat timeout
 * (see `agentIntervals` in src/monitor/watchdog-policy.ts). Headers, not body fields, because a
 * poll that found nothing is a bodiless 204.
 */

export interface Liveness {
  /** Silence after which the controller fails a build or marks a worker offline, ms. */
  heartbeatTimeoutMs: number;
  /** The longest long-poll (and worker-heartbeat wait) the controller will hold open, ms. */
  pollWaitMaxMs: number;
  /** How long a claimed build may take to become ready to run its steps (VM clone, boot, checks), ms. */
  prepareTimeoutMs: number;
}

/** The controller's prepare timeout when none is configured (and what an agent assumes of a controller that states none), ms. */
export const DEFAULT_PREPARE_TIMEOUT_MS = 600_000;

export const LIVENESS_HEADERS = {
  heartbeatTimeoutMs: 'x-expo-heartbeat-timeout-ms',
  pollWaitMaxMs: 'x-expo-poll-wait-max-ms',
  prepareTimeoutMs: 'x-expo-prepare-timeout-ms',
} as const satisfies Record<keyof Liveness, string>;

export function livenessHeaders(l: Liveness): Record<string, string> {
  return {
    [LIVENESS_HEADERS.heartbeatTimeoutMs]: String(Math.round(l.heartbeatTimeoutMs)),
    [LIVENESS_HEADERS.pollWaitMaxMs]: String(Math.round(l.pollWaitMaxMs)),
    [LIVENESS_HEADERS.prepareTimeoutMs]: String(Math.round(l.prepareTimeoutMs)),
  };
}

/** The longest timer Node can set, ms (2^31 − 1: longer ones fire at once). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Reads the liveness headers of an answer; null when any is missing or not a whole number (an
 * older controller, or something else answering). Values are clamped to what a controller can
 * be configured with, so a hostile or broken answer cannot make the agent spin or overflow a timer.
 */
export function parseLiveness(headers: Record<string, string | string[] | undefined>): Liveness | null {
  const read = (name: string, min: number, max: number): number | null => {
    const raw = headers[name];
    const v = Array.isArray(raw) ? raw[0] : raw;
    if (v === undefined || !/^[0-9]{1,16}$/.test(v)) return null;
    return Math.min(max, Math.max(min, Number(v)));
  };
  const heartbeatTimeoutMs = read(LIVENESS_HEADERS.heartbeatTimeoutMs, 100, 86_400_000);
  const pollWaitMaxMs = read(LIVENESS_HEADERS.pollWaitMaxMs, 0, 25_000);
  const prepareTimeoutMs = read(LIVENESS_HEADERS.prepareTimeoutMs, 100, MAX_TIMER_MS);
  if (heartbeatTimeoutMs === null || pollWaitMaxMs === null || prepareTimeoutMs === null) return null;
  return { heartbeatTimeoutMs, pollWaitMaxMs, prepareTimeoutMs };
}
