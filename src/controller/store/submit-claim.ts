/**
 * What both adapters share for `createAndClaim`, a submission handed at once to a worker that is
 * waiting for one: the build is written already claimed (its first attempt) in the transaction
 * that creates it, instead of written queued and then claimed in a second transaction. The
 * submitter is still answered with the build as it was queued, so these rebuild that record from
 * the claimed row, and the first attempt's record from the claim request.
 */
import type { AttemptRecord, BuildRecord, ClaimRequest, NewBuild } from './store.ts';

/**
 * A new build's values in the order both adapters insert them: id, steps, env, secret_env,
 * secret_env_names, labels, artifacts, timeout_s, max_attempts, created_at, source,
 * source_project, source_repo_key (the repository lowercased), source_ref, source_sha.
 */
export function newBuildValues(b: NewBuild): (string | number | Buffer | null)[] {
  const src = b.source ?? null;
  return [
    b.id,
    JSON.stringify(b.steps),
    JSON.stringify(b.env),
    b.secretEnvSealed,
    JSON.stringify(b.secretEnvNames),
    JSON.stringify(b.labels),
    JSON.stringify(b.artifacts),
    b.timeoutS,
    b.maxAttempts,
    b.createdAt,
    src === null ? null : JSON.stringify(src),
    src?.projectId ?? null,
    src === null ? null : src.repo.toLowerCase(),
    src?.ref ?? null,
    src?.sha ?? null,
  ];
}

/** Whether a worker with these labels may take a build naming `need` (every one of them): the claim's own rule. */
export const labelsMatch = (need: readonly string[], have: readonly string[]): boolean => need.every((l) => have.includes(l));

/**
 * The build as `createBuild` would have answered it, from the same build written claimed: the
 * columns a first claim sets back to what a queued build has (the others a first claim sets —
 * progress, failure reason, message, exit code, artifact problems, step starts — a new build has
 * empty already, and a first attempt writes no banner, so the log is empty too).
 */
export const asSubmitted = (claimed: BuildRecord): BuildRecord => ({
  ...claimed,
  status: 'queued',
  attempt: 0,
  workerId: null,
  lease: null,
  assignedAt: null,
  lastHeartbeatAt: null,
});

/** The attempt a claim just wrote, as the attempts row reads back. */
export const newAttempt = (req: ClaimRequest, buildId: string, attempt: number, logOffset: number): AttemptRecord => ({
  buildId,
  attempt,
  workerId: req.workerId,
  lease: req.lease,
  buildTokenHash: req.buildTokenHash,
  claimedAt: req.now,
  endedAt: null,
  outcome: null,
  failureReason: null,
  exitCode: null,
  message: null,
  logOffset,
});
