/**
 * The exit codes of the people's commands, chosen so that none means two things: a build's
 * result (`submit --follow`, `logs --follow`) is 0–4, and the CLI's own trouble is in the
 * sysexits range (64–78). A failing step's own exit code is printed, never returned, because
 * a step may exit with any number — 3, 64 or 77 included.
 *
 * The CLI's entry imports this before it has checked the Node version: plain code only, and
 * no imports but the domain's constants.
 */
import { isInfraFailure, type FailureReason } from '../protocol/domain.ts';
import type { BuildView } from '../protocol/schemas.ts';

export const EXIT = {
  /** The command did what was asked; with --follow, the build succeeded. */
  ok: 0,
  /** --follow: the build failed by its own doing (a step exited non-zero). */
  buildFailed: 1,
  /** --follow: the build was cancelled. */
  cancelled: 2,
  /** --follow: the build failed for the infrastructure (VM unhealthy or crashed, heartbeats lost, worker lost, prepare timeout) with no attempts left. */
  infraFailed: 3,
  /** --follow: the build ran past its timeout. */
  timedOut: 4,
  /** Bad usage or configuration (a flag, the URL, a missing key). */
  usage: 64,
  /** The controller refused the request: an unknown build id, an invalid build. */
  refused: 65,
  /** The controller cannot be reached. */
  unreachable: 69,
  /** Anything unexpected (a 5xx from the controller, a bug). */
  internal: 70,
  /** The key was refused (401/403). */
  auth: 77,
  /** `artifacts --download`: DIR cannot be created, or some artifact could not be saved (a symlink or a file in its way in DIR, a name that is not a plain relative path); the others were saved. */
  notSaved: 73,
  /** `bin/expo-worker` only: the checkout's npm dependencies are not installed (no `node_modules`): run ./script/bootstrap. */
  notBootstrapped: 72,
  /** This Node.js is too old to run expo-worker. */
  nodeTooOld: 78,
} as const;

/** The exit code for a final build: 0 succeeded, 1 its own failure, 2 cancelled, 3 infrastructure, 4 timed out. */
export function resultExitCode(b: Pick<BuildView, 'status' | 'failureReason'>): number {
  switch (b.status) {
    case 'succeeded':
      return EXIT.ok;
    case 'cancelled':
      return EXIT.cancelled;
    case 'failed':
      return failureExitCode(b.failureReason);
    default:
      return EXIT.internal;
  }
}

function failureExitCode(reason: FailureReason | null): number {
  if (reason === 'timed_out') return EXIT.timedOut;
  if (reason !== null && isInfraFailure(reason)) return EXIT.infraFailed;
  return EXIT.buildFailed;
}

/** The exit codes as `--help` and the docs list them. */
export const EXIT_CODES_HELP = `Exit codes:
  0   done (with --follow: the build succeeded)
  1   --follow: the build failed (a step exited non-zero; its exit code is printed)
  2   --follow: the build was cancelled
  3   --follow: an infrastructure failure (VM unhealthy or crashed, heartbeats or worker lost)
  4   --follow: the build timed out
  64  bad usage or configuration     65  the controller refused the request (unknown build…)
  69  the controller cannot be reached  70  an unexpected error
  72  dependencies not installed: run ./script/bootstrap (bin/expo-worker)
  73  artifacts --download: an artifact was not saved (named on stderr); the others were saved
  77  the key was refused               78  Node.js older than 22.13`;
