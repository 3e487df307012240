/**
 * "Take the build back or fail it": the one decision on how a build's current attempt ends,
 * whoever ends it. Pure — the build service applies it (`BuildService.settle`, `giveUp`).
 *
 * The outcomes, in the order they are decided:
 * - `none`: the build has no current attempt (queued, or already final): nothing to end.
 * - `take-back`: the controller saw silence (`heartbeat_timeout`, `worker_lost`) about a build
 *   still `assigned` — its worker never said it started it, so nothing ran: it goes back to the
 *   queue and the attempt is not counted.
 * - `cancel-unstarted`: the same, with a cancel pending: it ends `cancelled` instead.
 * - `end` with `cancelled`: an infrastructure failure of a build whose cancel was asked for — the
 *   user wanted it stopped, and it has stopped; no new attempt.
 * - `requeue`: an infrastructure failure with attempts left: the attempt ends and the build is
 *   queued for another.
 * - `end`: everything else ends the build with the status and reason given.
 */
import { isActiveStatus, isInfraFailure, type FailureReason, type FinalBuildStatus } from '../protocol/domain.ts';
import type { BuildRecord } from './store/store.ts';

/** How an attempt is ended: by whom, with what status, and why. */
export interface AttemptEnding {
  /** `worker`: its own completion; `controller`: the watchdog, a reconcile, or a rule of the controller. */
  by: 'worker' | 'controller';
  status: FinalBuildStatus;
  reason: FailureReason | null;
}

export type Settlement =
  | { kind: 'none' }
  | { kind: 'take-back' }
  | { kind: 'cancel-unstarted' }
  | { kind: 'requeue'; reason: FailureReason }
  | { kind: 'end'; status: FinalBuildStatus; reason: FailureReason | null };

/** What the decision reads of a build. */
export type SettlementInput = Pick<BuildRecord, 'status' | 'lease' | 'attempt' | 'maxAttempts' | 'cancelRequested'>;

/** The reasons that say the controller lost sight of a build rather than that it failed. */
const SILENCE: readonly FailureReason[] = ['heartbeat_timeout', 'worker_lost'];

/** What becomes of `build`'s current attempt when it ends this way. */
export function settlement(build: SettlementInput, ending: AttemptEnding): Settlement {
  if (build.lease === null || !isActiveStatus(build.status)) return { kind: 'none' };
  const { by, status, reason } = ending;
  if (by === 'controller' && build.status === 'assigned' && reason !== null && SILENCE.includes(reason)) {
    return build.cancelRequested ? { kind: 'cancel-unstarted' } : { kind: 'take-back' };
  }
  if (status === 'failed' && reason !== null && isInfraFailure(reason)) {
    if (build.cancelRequested) return { kind: 'end', status: 'cancelled', reason };
    if (build.attempt < build.maxAttempts) return { kind: 'requeue', reason };
  }
  return { kind: 'end', status, reason };
}
