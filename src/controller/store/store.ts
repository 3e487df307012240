/**
 * The controller's storage port. Everything that matters lives behind it — builds, attempts,
 * workers, logs — so a controller restart loses nothing. The build-service holds the rules; the
 * store offers atomic operations that a SQL backend can implement with one transaction each
 * (the SQLite adapter does; a PostgreSQL adapter would use `SELECT … FOR UPDATE SKIP LOCKED`
 * for the claim). Every write that depends on a build's state is a compare-and-set on that
 * state, so two callers can never both win: `claimBuild` hands a build to one worker only,
 * and `finishAttempt` ends an attempt once.
 *
 * Times are milliseconds since the epoch. The conformance suite in
 * `test/controller/store-conformance.ts` runs unchanged against every adapter.
 */
import type { ActiveBuildStatus, BuildStatus, FailureReason, FinalBuildStatus } from '../../protocol/domain.ts';
import type { ArtifactProblem, ArtifactSpec, Step } from '../../protocol/schemas.ts';

export interface WorkerRecord {
  id: string;
  labels: string[];
  keyHash: string;
  createdAt: number;
  lastSeenAt: number | null;
  slotsTotal: number | null;
  draining: boolean;
  /** Set by the watchdog when the worker went silent; cleared by its next contact. */
  offline: boolean;
}

export interface BuildRecord {
  id: string;
  status: BuildStatus;
  steps: Step[];
  env: Record<string, string>;
  /** Names of the secret env values; kept for the record after the values are erased. */
  secretEnvNames: string[];
  /** The secret env values, sealed (see `secret-box.ts`); null when there are none or once the build is final. */
  secretEnvSealed: Buffer | null;
  labels: string[];
  timeoutS: number;
  maxAttempts: number;
  /** Paths (shell patterns, relative to the build's work directory) to collect from the VM, as declared. */
  artifacts: ArtifactSpec[];
  /** Declared artifacts the last collecting attempt could not store. */
  artifactProblems: ArtifactProblem[];
  /** Number of attempts claimed so far (0 while first queued). */
  attempt: number;
  workerId: string | null;
  /** The current attempt's lease, as its SHA-256 digest (hex); the plain lease is the worker's alone. */
  lease: string | null;
  progress: number | null;
  failureReason: FailureReason | null;
  message: string | null;
  exitCode: number | null;
  cancelRequested: boolean;
  logBytes: number;
  createdAt: number;
  assignedAt: number | null;
  startedAt: number | null;
  finishedAt: number | null;
  lastHeartbeatAt: number | null;
}

export interface AttemptRecord {
  buildId: string;
  attempt: number;
  workerId: string;
  /** SHA-256 digest (hex) of the lease. */
  lease: string;
  buildTokenHash: string;
  claimedAt: number;
  endedAt: number | null;
  /** How the attempt ended: a final status, or `requeued` when an infrastructure failure sent the build back. */
  outcome: FinalBuildStatus | 'requeued' | null;
  failureReason: FailureReason | null;
  exitCode: number | null;
  message: string | null;
  logOffset: number;
}

/** What a heartbeat answers. */
export interface BuildPulse {
  status: BuildStatus;
  cancelRequested: boolean;
}

export interface NewBuild {
  id: string;
  steps: Step[];
  env: Record<string, string>;
  secretEnvNames: string[];
  secretEnvSealed: Buffer | null;
  labels: string[];
  artifacts: ArtifactSpec[];
  timeoutS: number;
  maxAttempts: number;
  createdAt: number;
}

export interface NewWorker {
  id: string;
  labels: string[];
  keyHash: string;
  createdAt: number;
}

export interface ClaimRequest {
  workerId: string;
  workerLabels: readonly string[];
  now: number;
  /** SHA-256 digest (hex) of the lease handed to the worker. */
  lease: string;
  buildTokenHash: string;
  /** Written to the log before the attempt's own output when this is not the first attempt. */
  attemptBanner: (attempt: number, maxAttempts: number) => string;
}

export interface Claim {
  build: BuildRecord;
  attempt: AttemptRecord;
}

/** How an attempt ends. `requeue` sends the build back to `queued` instead of ending it. */
export interface AttemptEnd {
  buildId: string;
  lease: string;
  now: number;
  status: FinalBuildStatus;
  failureReason: FailureReason | null;
  exitCode: number | null;
  message: string | null;
  requeue: boolean;
}

export type AppendLogResult =
  | { kind: 'appended'; logBytes: number }
  | { kind: 'gap'; expectedOffset: number }
  /** The chunk overlaps stored bytes that differ from its own: nothing was written. */
  | { kind: 'conflict'; logBytes: number }
  | { kind: 'too-large'; logBytes: number };

export interface OverdueQuery {
  now: number;
  prepareTimeoutMs: number;
  graceMs: number;
}

export interface ListBuildsFilter {
  status?: BuildStatus;
  limit: number;
}

/** A file collected from a build's VM; its bytes live in the artifact directory, not the store. */
export interface ArtifactRecord {
  buildId: string;
  name: string;
  attempt: number;
  sizeBytes: number;
  sha256: string;
  createdAt: number;
}

/** A final build old enough to prune, with what deleting it frees. */
export interface PrunableBuild {
  id: string;
  logBytes: number;
  artifacts: number;
  artifactBytes: number;
}

export interface Store {
  /** Applies pending migrations; safe to call on every start. */
  migrate(): Promise<void>;
  close(): Promise<void>;

  createWorker(worker: NewWorker): Promise<WorkerRecord>;
  getWorker(id: string): Promise<WorkerRecord | null>;
  getWorkerByKeyHash(keyHash: string): Promise<WorkerRecord | null>;
  listWorkers(): Promise<WorkerRecord[]>;
  /** Records contact from a worker (a poll or heartbeat) and clears its offline mark. */
  touchWorker(id: string, contact: { now: number; slotsTotal?: number; draining?: boolean }): Promise<void>;
  markWorkerOffline(id: string): Promise<void>;
  /** Workers not marked offline whose last contact is older than `cutoff` (or who never made contact and were created before it). */
  findSilentWorkers(cutoff: number): Promise<WorkerRecord[]>;

  createBuild(build: NewBuild): Promise<BuildRecord>;
  getBuild(id: string): Promise<BuildRecord | null>;
  listBuilds(filter: ListBuildsFilter): Promise<BuildRecord[]>;
  countBuildsByStatus(): Promise<Record<BuildStatus, number>>;
  countQueuedBuilds(): Promise<number>;
  /** Builds in an active status held by this worker. */
  activeBuildsOfWorker(workerId: string): Promise<BuildRecord[]>;
  /** Every active build, grouped by the worker holding it — one read for views of all workers. */
  activeBuildsByWorker(): Promise<Map<string, BuildRecord[]>>;
  /** Active builds whose last sign of life is older than `cutoff`. */
  findStaleBuilds(cutoff: number): Promise<BuildRecord[]>;
  /**
   * Active builds past their limits by more than `graceMs`: `running` ones whose current attempt
   * started its steps more than `timeoutS` ago, `assigned`/`preparing` ones whose current attempt
   * was claimed more than `prepareTimeoutMs` ago.
   */
  findOverdueBuilds(q: OverdueQuery): Promise<BuildRecord[]>;

  /**
   * Atomically hands the oldest queued build whose labels the worker has to this worker, or null.
   * The new attempt starts clean: progress, outcome and artifact problems of an earlier attempt are reset.
   */
  claimBuild(req: ClaimRequest): Promise<Claim | null>;
  getAttemptByLease(buildId: string, lease: string): Promise<AttemptRecord | null>;
  getAttemptByTokenHash(tokenHash: string): Promise<AttemptRecord | null>;
  listAttempts(buildId: string): Promise<AttemptRecord[]>;
  hasAttemptOnWorker(buildId: string, workerId: string): Promise<boolean>;

  /**
   * Records a sign of life for an active build with this lease and returns what the caller
   * needs to hear back; null when the build is not active under that lease. The hot path of
   * the controller: one statement.
   */
  touchBuild(id: string, lease: string, update: { now: number; progress?: number }): Promise<BuildPulse | null>;
  /** Compare-and-set of the status for the current lease; false when the lease or the `from` status does not match. */
  setBuildPhase(id: string, lease: string, from: readonly ActiveBuildStatus[], to: ActiveBuildStatus, now: number): Promise<boolean>;
  requestCancel(id: string): Promise<void>;
  /** Cancels a queued build; false when it was no longer queued. */
  cancelQueued(id: string, now: number): Promise<boolean>;
  /**
   * Takes back an assignment the worker never received (its poll response was lost, or the
   * worker reports it does not run the build): the build is queued again and the attempt is
   * forgotten, since nothing ran. False when the build is no longer `assigned` under that lease.
   */
  unassign(buildId: string, lease: string): Promise<boolean>;
  /** Ends the current attempt if `lease` is still current; null when it was not. */
  finishAttempt(end: AttemptEnd): Promise<BuildRecord | null>;

  /** Records (or replaces) a collected artifact. */
  putArtifact(a: ArtifactRecord): Promise<void>;
  /** Records the artifact problems an attempt reported, if `lease` is still the build's current one; false otherwise. */
  setArtifactProblems(buildId: string, lease: string, problems: ArtifactProblem[]): Promise<boolean>;
  listArtifacts(buildId: string): Promise<ArtifactRecord[]>;

  /**
   * Final builds (succeeded, failed, cancelled) that finished before `cutoff`, oldest first, at
   * most `limit` of them (all without one). Active and queued builds are never returned, however old.
   */
  findPrunableBuilds(cutoff: number, limit?: number): Promise<PrunableBuild[]>;
  /** Deletes these builds with their attempts, log chunks and artifact records, if they are still final. Returns the ids deleted. */
  deleteBuilds(ids: readonly string[]): Promise<string[]>;

  /**
   * Appends at a byte offset: a repeat of stored bytes is a no-op, an overlap whose bytes match
   * appends only the new tail, an overlap whose bytes differ is a conflict, a gap is refused.
   */
  appendLog(buildId: string, offset: number, data: Buffer, maxLogBytes: number): Promise<AppendLogResult>;
  readLog(buildId: string, fromOffset: number): Promise<Buffer>;
}
