/**
 * Time bounds for real-time tests that must hold on a busy machine: 2 cores both burnt by other
 * work, other test files running beside ours. A timed assertion in a test tells a fast path from
 * the slow path of the bug it is about; it is never a speed target (those live in bench/).
 *
 * So a bound sits halfway between the two paths ({@link midway}), or is the configured timeout
 * plus {@link BUSY_SLACK_MS} when the slow path is "never" — and where the product records its own
 * times (a check's `durationMs`, a build's `finishedAt`), tests measure on those instead.
 */

/**
 * How late one step may come on such a machine, ms. Measured there: starting a Node process (each
 * tart-simulator call is one) took up to ~2 s, and a `tart ip --wait 2` 4.3 s instead of 2 s.
 */
export const BUSY_SLACK_MS = 5000;

/** The bound halfway between a fast path and the slow path it is told apart from, ms. */
export function midway(fastMs: number, slowMs: number): number {
  return fastMs + (slowMs - fastMs) / 2;
}
