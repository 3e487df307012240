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
 * `test/controller/store-conformance.ts` runs unchanged against every adapter and has a test
 * for every method (its `PORT_METHODS` table fails to compile when one is missing). No SQL
 * lives outside the adapter; consumers ask for the narrow part they use (`Pick<Store, …>`:
 * `CredentialStore`, `WatchdogStore`, `RetentionStore`, `WorkerStore`, `ArtifactStore`…).
 */
import type { ActiveBuildStatus, AuditAction, BuildStatus, FailureReason, FinalBuildStatus, Role } from '../../protocol/domain.ts';
import type { ArtifactProblem, ArtifactSpec, BuildSource, DeliveryOutcome, Step } from '../../protocol/schemas.ts';
import type { DeliveryWork } from '../../github/delivery-work.ts';

export interface WorkerRecord {
  id: string;
  labels: string[];
  keyHash: string;
  createdAt: number;
  lastSeenAt: number | null;
  slotsTotal: number | null;
  draining: boolean;
  /** An operator drained it from the controller: it is handed no new build until resumed. */
  drainRequested: boolean;
  /** Set by the watchdog when the worker went silent; cleared by its next contact. */
  offline: boolean;
}

// ---- access (docs/access.md) ----

export interface UserRecord {
  /** The user's name (USER_NAME_PATTERN), unique; the key. */
  name: string;
  role: Role;
  /** `scrypt$<log2 N>$<r>$<p>$<salt, base64>$<key, base64>` (see access-service.ts). */
  passwordHash: string;
  createdAt: number;
  lastSignInAt: number | null;
}

export interface SessionRecord {
  /** SHA-256 (hex) of the cookie's secret; the secret itself is never stored. */
  idHash: string;
  userName: string;
  createdAt: number;
  expiresAt: number;
}

export interface ApiTokenRecord {
  /** `tok_…` (TOKEN_ID_PATTERN): shown and used to revoke; not the secret. */
  id: string;
  name: string;
  role: Role;
  /** The user who made it; null when made with the admin key. Removing the user removes their tokens. */
  owner: string | null;
  /** SHA-256 (hex) of the secret (`ewt_…`). */
  secretHash: string;
  createdAt: number;
  expiresAt: number;
  lastUsedAt: number | null;
  revokedAt: number | null;
  /**
   * For a token made with the admin key (no owner): the epoch of that key (`adminKeyEpoch`); the
   * token stops working once the controller runs with another key. Null for a user's token.
   */
  adminEpoch: string | null;
}

export interface NewAuditEntry {
  at: number;
  actor: string;
  action: AuditAction;
  target: string;
  detail: string | null;
}

export interface AuditRecord extends NewAuditEntry {
  /** Increasing with each entry. */
  id: number;
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
  /**
   * When each step of the current attempt started, as the agent reported it (null: not started,
   * or not reported); one entry per step. Emptied when an attempt is claimed.
   */
  stepStartedAt: (number | null)[];
  finishedAt: number | null;
  lastHeartbeatAt: number | null;
  /** Where GitHub started it from; null for a build submitted through the API. */
  source: BuildSource | null;
  /**
   * How far its state was reported to GitHub (a build with a source only): null nothing yet,
   * then `pending`, `running`, `final` (see `ReportStage`). Reports only move forward.
   */
  reported: ReportStage | null;
  /** The check run that shows it on GitHub (GitHub App mode), once created. */
  checkRunId: number | null;
}

/**
 * How far a build's state has been reported to GitHub, in this order: `pending` (queued, or
 * assigned and preparing), `running` (its steps started), `final` (its end). A stage may be
 * skipped (a build that ends before its `running` was reported goes from `pending` to `final`),
 * never gone back to: a build queued again after it ran stays reported `running` until it ends.
 */
export type ReportStage = 'pending' | 'running' | 'final';

/** A GitHub repository the farm builds: its deliveries become builds. */
export interface ProjectRecord {
  id: string;
  /** `owner/name` as it was registered; matched against deliveries without regard to case. */
  repo: string;
  pipelinePath: string;
  /** Whether a push cancels the same branch's unfinished builds of other commits. */
  supersede: boolean;
  /** Names of its stored secrets, sorted. */
  secretNames: string[];
  createdAt: number;
}

export interface NewProject {
  id: string;
  repo: string;
  pipelinePath: string;
  supersede: boolean;
  createdAt: number;
}

/** A project secret as stored: its value sealed (SecretBox, associated data `project:<id>:<name>`). */
export interface ProjectSecretRecord {
  name: string;
  sealed: Buffer;
  updatedAt: number;
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
  /** Where GitHub started it from; null (or absent) for an API submission. */
  source?: BuildSource | null;
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
  /**
   * The watchdog's fence for `heartbeat_timeout`: end only while `lastHeartbeatAt` is still older
   * than this (a heartbeat that landed after the watchdog read the build keeps it). Unset: no such condition.
   */
  staleBefore?: number;
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

/** What `nextLivenessDeadline` needs: the watchdog's limits, and the time from which deadlines count. */
export interface DeadlineQuery {
  /** Deadlines before this time are over (the pass at this time handled them): only later ones, and this one, count. */
  from: number;
  heartbeatTimeoutMs: number;
  prepareTimeoutMs: number;
  graceMs: number;
}

export interface ListBuildsFilter {
  status?: BuildStatus;
  limit: number;
  /** Only builds whose source's repo is this one, without regard to case. */
  repo?: string;
  /** Only builds whose source's ref is exactly this. */
  ref?: string;
  /** Only builds whose source's sha is this. */
  sha?: string;
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

export type { DeliveryOutcome } from '../../protocol/schemas.ts';

/**
 * What a delivery asks to build, taken from its payload when it was accepted (the payload itself
 * is not kept): enough to finish the work after a restart (`src/github/delivery-work.ts`).
 */
export type { DeliveryWork };

/**
 * A GitHub webhook delivery the controller accepted (its signature held). Not the payload — it
 * can be 25 MB and may carry what should not be kept — only what explains the delivery.
 */
export interface DeliveryRecord {
  /** `X-GitHub-Delivery`, a GUID, lower-case; the same on a redelivery. */
  id: string;
  /** `X-GitHub-Event` (`push`, `pull_request`…). */
  event: string;
  /** The payload's `action`, when it has one. */
  action: string | null;
  /** The payload's `repository.full_name` (`owner/name`), when it has one. */
  repository: string | null;
  receivedAt: number;
  outcome: DeliveryOutcome;
  /** Why, in words (`no project for owner/name`). */
  reason: string;
  /** What it asks to build, kept until it is settled; null when nothing. */
  work: DeliveryWork | null;
  /** The builds it made (`built`). */
  builds: string[];
}

/** A final build old enough to prune, with what deleting it frees. */
export interface PrunableBuild {
  id: string;
  logBytes: number;
  artifacts: number;
  artifactBytes: number;
}

/**
 * The port. Unless a method says otherwise: each call is atomic (one statement or one
 * transaction: a concurrent caller sees all of it or none of it); a lookup that finds nothing
 * answers null (or an empty list), never throws; a write to a row that does not exist changes
 * nothing and does not throw; lists come in a stable order, named per method; a failure of the
 * backend itself (disk full, I/O) rejects with the backend's error, nothing written.
 */
/** A store error that may be the disk's doing: `full` for certain, or an `io` error that may be. */
export interface StoreDiskError {
  kind: 'full' | 'io';
  /** The backend's own code, for the log (`SQLITE_FULL`, `SQLITE_IOERR (778)`). */
  code: string;
}

/** Which pending deliveries a controller may work on now (see `listPendingDeliveries`). */
export interface PendingDeliveryFilter {
  ids: readonly string[];
  receivedBefore: number | null;
}

export interface Store {
  // ---- lifecycle ----

  /** Creates or upgrades the schema; safe to call on every start. Rejects (STORE_FAILED) a database from a newer version. */
  migrate(): Promise<void>;
  /** Releases the connection; safe to call twice. No call may follow. */
  close(): Promise<void>;
  /**
   * What one of this backend's errors (not its causes) says about the disk under the data: `full`
   * for certain, `io` for an I/O error that may hide a full disk, null for any other error
   * (including every `ExpoError` the port itself rejects with). Synchronous, never throws. The
   * controller's disk-full handling (`storage-full.ts`) reads backend errors only through it.
   */
  diskError(err: unknown): StoreDiskError | null;

  // ---- workers ----

  /** Enrols a worker (not offline, not draining, never seen). Rejects with WORKER_EXISTS when the id is taken. */
  createWorker(worker: NewWorker): Promise<WorkerRecord>;
  /** The worker by id; null when none. */
  getWorker(id: string): Promise<WorkerRecord | null>;
  /** The worker whose key has this SHA-256 digest; null when none. */
  getWorkerByKeyHash(keyHash: string): Promise<WorkerRecord | null>;
  /** Every enrolled worker, by id. */
  listWorkers(): Promise<WorkerRecord[]>;
  /**
   * Records contact from a worker (a poll or heartbeat): `lastSeenAt`, clears its offline mark,
   * and sets `slotsTotal` / `draining` when given (kept as they were when not).
   */
  touchWorker(id: string, contact: { now: number; slotsTotal?: number; draining?: boolean }): Promise<void>;
  /**
   * Records contact from every worker in `ids` at `now` in one statement (the workers waiting on
   * this controller, renewed for the leader's watchdog); unknown ids are skipped.
   */
  touchWorkers(ids: readonly string[], now: number): Promise<void>;
  /**
   * Marks the worker offline until its next contact, only if it is not offline yet and, when
   * `silentBefore` is given, its last contact is still older than that (a contact that landed
   * after the watchdog read the worker keeps it online). True when it changed the worker.
   */
  markWorkerOffline(id: string, silentBefore?: number): Promise<boolean>;
  /** Workers not marked offline whose last contact is older than `cutoff`; a worker that never made contact is never silent. */
  findSilentWorkers(cutoff: number): Promise<WorkerRecord[]>;

  // ---- builds: reads ----

  /** Queues a new build (attempt 0, no log). The id is the caller's and must be new. */
  createBuild(build: NewBuild): Promise<BuildRecord>;
  /**
   * Queues a new build as `createBuild` does and, in the same transaction, hands it to the worker
   * of `req` when that worker would take it now by `claimBuild`'s rules — it exists, is not
   * drained, has every label the build names — and no older queued build is one it could take
   * (that one comes first; a claim hands it over). Then the build is that worker's first attempt,
   * exactly as `claimBuild` would have made it, in one write. `build` is the build as queued (what
   * `createBuild` answers); `claim` is null when the worker does not take it (the build stays queued).
   */
  createAndClaim(build: NewBuild, req: ClaimRequest): Promise<{ build: BuildRecord; claim: Claim | null }>;
  /** The build by id; null when none (never submitted, or pruned). */
  getBuild(id: string): Promise<BuildRecord | null>;
  /**
   * The newest builds first (submission order), at most `limit`, only those matching every filter
   * given: `status`; and for builds with a source, `repo` (any case), `ref` and `sha` (a build
   * without a source matches none of those three).
   */
  listBuilds(filter: ListBuildsFilter): Promise<BuildRecord[]>;
  /** How many builds are in each status; every status is a key, 0 when none. */
  countBuildsByStatus(): Promise<Record<BuildStatus, number>>;
  countQueuedBuilds(): Promise<number>;
  /** Builds in an active status held by this worker, oldest submission first. */
  activeBuildsOfWorker(workerId: string): Promise<BuildRecord[]>;
  /**
   * Every active build, grouped by the worker holding it, oldest submission first within each —
   * one read for views of all workers. A worker holding none has no key.
   */
  activeBuildsByWorker(): Promise<Map<string, BuildRecord[]>>;
  /** Active builds whose last sign of life (`lastHeartbeatAt`) is older than `cutoff`, oldest submission first. */
  findStaleBuilds(cutoff: number): Promise<BuildRecord[]>;
  /**
   * Active builds past their limits by more than `graceMs`, oldest submission first: `running`
   * ones whose current attempt started its steps more than `timeoutS` ago, `assigned`/`preparing`
   * ones whose current attempt was claimed more than `prepareTimeoutMs` ago.
   */
  findOverdueBuilds(q: OverdueQuery): Promise<BuildRecord[]>;
  /**
   * The earliest liveness deadline at or after `from`, or null when there is none: an active
   * build's `lastHeartbeatAt` + timeout, a worker's (not offline) `lastSeenAt` + timeout, and
   * the backstops `findOverdueBuilds` applies (steps start + `timeoutS` + grace, claim +
   * prepare timeout + grace). What is past its deadline is found once `now` is beyond it:
   * `findStaleBuilds(now - timeout)`, `findSilentWorkers(now - timeout)`, `findOverdueBuilds({ now })`.
   */
  nextLivenessDeadline(q: DeadlineQuery): Promise<number | null>;

  // ---- builds: the attempt's life (each a compare-and-set) ----

  /**
   * Atomically hands the oldest queued build whose labels the worker has (every one of them) to
   * this worker, or null when none matches or the worker is gone or drained (`drainRequested`,
   * read in the same transaction); two concurrent claims never get the same build.
   * The new attempt starts clean: progress, outcome and artifact problems of an earlier attempt
   * are reset, and from the second attempt on the banner is appended to the log first.
   */
  claimBuild(req: ClaimRequest): Promise<Claim | null>;
  /** The attempt of this build with this lease digest, current or over; null when none. */
  getAttemptByLease(buildId: string, lease: string): Promise<AttemptRecord | null>;
  /** The attempt whose build token has this digest, current or over; null when none (or taken back). */
  getAttemptByTokenHash(tokenHash: string): Promise<AttemptRecord | null>;
  /** Every attempt of the build still on record (taken-back ones are not), first attempt first. */
  listAttempts(buildId: string): Promise<AttemptRecord[]>;
  /** Whether this worker ever held an attempt of the build (current or over). */
  hasAttemptOnWorker(buildId: string, workerId: string): Promise<boolean>;

  /**
   * Records a sign of life for an active build with this lease (and its progress when given) and
   * returns what the caller needs to hear back; null when the build is not active under that
   * lease. The hot path of the controller: one statement.
   */
  touchBuild(id: string, lease: string, update: { now: number; progress?: number }): Promise<BuildPulse | null>;
  /**
   * Compare-and-set of the status for the current lease, counting as a sign of life; the first
   * move to `running` stamps the build's `startedAt` and the attempt's steps start. False when
   * the lease or the `from` status does not match (nothing written).
   */
  setBuildPhase(id: string, lease: string, from: readonly ActiveBuildStatus[], to: ActiveBuildStatus, now: number): Promise<boolean>;
  /**
   * Compare-and-set on the lease of a `running` build: step `index` (below the build's step
   * count) of the current attempt started at `now`. A step's first report stands (a repeated
   * report is a retry, not a restart). False when the lease or the status does not match, or
   * the index is out of range (nothing written).
   */
  recordStepStart(id: string, lease: string, index: number, now: number): Promise<boolean>;
  /**
   * Asks for a cancel of a queued or active build; a final build is left as it is. `message`
   * (`superseded by <sha>`), when given, is the build's message from now on, and a `cancelled`
   * end keeps it first: the end's own message, when it brings one, follows after `; ` (the
   * agent's "cancel requested" detail). An end of another status (it succeeded or failed before
   * the cancel reached it) has its own message only.
   */
  requestCancel(id: string, message?: string): Promise<void>;
  /**
   * Cancels a queued build and erases its secret env; its message is `message` when given (else
   * the message of an earlier `requestCancel`, if any). False when it was no longer queued
   * (nothing written).
   */
  cancelQueued(id: string, now: number, message?: string): Promise<boolean>;
  /**
   * Takes back an assignment the worker never received (its poll response was lost, or the
   * worker reports it does not run the build): the build is queued again and the attempt is
   * forgotten, since nothing ran. False when the build is no longer `assigned` under that lease,
   * or, when `staleBefore` is given, its `lastHeartbeatAt` is no longer older than that (see `AttemptEnd`).
   */
  unassign(buildId: string, lease: string, staleBefore?: number): Promise<boolean>;
  /**
   * Ends the current attempt if `lease` is still current (the build active under it), in one
   * transaction: the attempt gets its outcome (`requeued` when `requeue`), and the build goes
   * back to `queued` (secret env kept) or to its final status (secret env erased, progress 100 on
   * success). Returns the build as it now is; null when the lease was not current — so of two
   * concurrent calls exactly one wins.
   */
  finishAttempt(end: AttemptEnd): Promise<BuildRecord | null>;

  // ---- artifacts ----

  /** Records a collected artifact; one of the same build and name is replaced unless it came from a later attempt. */
  putArtifact(a: ArtifactRecord): Promise<void>;
  /** Records the artifact problems an attempt reported, if `lease` is still the build's current one; false otherwise. */
  setArtifactProblems(buildId: string, lease: string, problems: ArtifactProblem[]): Promise<boolean>;
  /** The build's artifact records, by name. */
  listArtifacts(buildId: string): Promise<ArtifactRecord[]>;

  // ---- retention ----

  /**
   * Final builds (succeeded, failed, cancelled) that finished before `cutoff`, oldest first, at
   * most `limit` of them (all without one). Active and queued builds are never returned, however old.
   */
  findPrunableBuilds(cutoff: number, limit?: number): Promise<PrunableBuild[]>;
  /**
   * Deletes these builds with their attempts, log chunks and artifact records, in one
   * transaction, if they are still final (re-checked inside it). Returns the ids deleted; unknown
   * or no longer final ids are skipped.
   */
  deleteBuilds(ids: readonly string[]): Promise<string[]>;

  // ---- GitHub webhook deliveries ----

  /**
   * Records a delivery unless one with its id is already recorded, atomically (a unique insert):
   * true when it was new, false for a redelivery (nothing written), so of two concurrent
   * deliveries of one id exactly one is new.
   */
  recordDelivery(d: DeliveryRecord): Promise<boolean>;
  /** The newest deliveries first (by `receivedAt`, then id), at most `limit`. */
  listDeliveries(limit: number): Promise<DeliveryRecord[]>;
  /**
   * Deliveries still `pending`, oldest first, at most `limit`: the work a (re)started controller
   * picks up. With `only`, just those whose id is in `ids` or that were received at or before
   * `receivedBefore` (null: none by age) — filtered before the limit, so a backlog of others'
   * deliveries never hides a controller's own.
   */
  listPendingDeliveries(limit: number, only?: PendingDeliveryFilter): Promise<DeliveryRecord[]>;
  /**
   * Settles a pending delivery: its outcome, reason and builds, and its `work` cleared. False
   * (nothing written) when it is not pending — so of two settlers one wins.
   */
  settleDelivery(id: string, outcome: Exclude<DeliveryOutcome, 'pending'>, reason: string, builds: readonly string[]): Promise<boolean>;
  /**
   * Makes a `failed` delivery pending again with `d`'s reason, work and receipt time (GitHub's
   * **Redeliver** of a delivery that could not build asks for another try), its builds cleared.
   * False (nothing written) when there is no such delivery or it is not `failed`.
   */
  reopenDelivery(d: DeliveryRecord): Promise<boolean>;

  // ---- projects ----

  /** Registers a project (no secrets). Rejects with PROJECT_EXISTS when its repo (any case) has one. */
  createProject(p: NewProject): Promise<ProjectRecord>;
  getProject(id: string): Promise<ProjectRecord | null>;
  /** The project of this `owner/name`, without regard to case; null when none. */
  getProjectByRepo(repo: string): Promise<ProjectRecord | null>;
  /** Every project, by repo (case-insensitively). */
  listProjects(): Promise<ProjectRecord[]>;
  /** Deletes the project and its secrets (its builds stay, with their source); false when none. */
  deleteProject(id: string): Promise<boolean>;
  /** Sets (or replaces) a secret of the project; false when there is no such project. */
  putProjectSecret(projectId: string, name: string, sealed: Buffer, now: number): Promise<boolean>;
  /** Deletes a secret; false when the project or the secret does not exist. */
  deleteProjectSecret(projectId: string, name: string): Promise<boolean>;
  /** The project's secrets, sealed, by name. */
  getProjectSecrets(projectId: string): Promise<ProjectSecretRecord[]>;

  // ---- GitHub sources and reports ----

  /** Queued or active builds of this project and exact ref, oldest first (what a new push may supersede). */
  unfinishedBuildsOfRef(projectId: string, ref: string): Promise<BuildRecord[]>;
  /**
   * Builds with a source whose state is not yet reported as far as it goes — `reported` null;
   * `pending` on a build now `running` or final; `running` on a final build — oldest first, at
   * most `limit`. A build reported `running` and queued again is not listed until it ends.
   */
  listBuildsToReport(limit: number): Promise<BuildRecord[]>;
  /**
   * Records that the build's state was reported up to `stage` (and its check run, when given).
   * Only forward in `ReportStage` order: a stage below the one recorded changes nothing (not the
   * check run either); the same stage again may record a check run. False when the build is gone.
   */
  setReported(buildId: string, stage: ReportStage, checkRunId?: number): Promise<boolean>;
  /** How many deliveries were received before `cutoff`. */
  countDeliveriesBefore(cutoff: number): Promise<number>;
  /** Deletes the deliveries received before `cutoff`; returns how many. */
  deleteDeliveriesBefore(cutoff: number): Promise<number>;


  // ---- access: users, sessions, API tokens, audit ----

  /** Adds a user. Rejects with USER_EXISTS when the name is taken. */
  createUser(u: Omit<UserRecord, 'lastSignInAt'>): Promise<UserRecord>;
  getUser(name: string): Promise<UserRecord | null>;
  /** Every user, by name. */
  listUsers(): Promise<UserRecord[]>;
  /** Deletes the user with their sessions and tokens, in one transaction; false when none. */
  deleteUser(name: string): Promise<boolean>;
  /** Replaces the password hash and deletes every session of the user, in one transaction; false when none. */
  setUserPassword(name: string, passwordHash: string): Promise<boolean>;
  /** Sets the user's role; the role it had before, or null when there is no such user. */
  setUserRole(name: string, role: Role): Promise<Role | null>;
  /** Stamps a successful sign-in. */
  recordSignIn(name: string, now: number): Promise<void>;
  createSession(s: SessionRecord): Promise<void>;
  /** The session with this digest and its user, if it has not expired at `now` (an expired one is deleted); null otherwise. */
  getSession(idHash: string, now: number): Promise<{ session: SessionRecord; user: UserRecord } | null>;
  deleteSession(idHash: string): Promise<boolean>;
  /** Deletes every session expired at `now` (the retention job's purge); returns how many. */
  deleteExpiredSessions(now: number): Promise<number>;
  /** Deletes every session of the user; returns how many. */
  deleteSessionsOfUser(name: string): Promise<number>;
  createApiToken(t: ApiTokenRecord): Promise<void>;
  /** The token with this secret digest, whatever its state (the caller checks expiry and revocation), with its owner (null when made with the admin key). */
  getApiTokenBySecretHash(secretHash: string): Promise<{ token: ApiTokenRecord; owner: UserRecord | null } | null>;
  getApiToken(id: string): Promise<ApiTokenRecord | null>;
  /** Tokens of this owner (`undefined`: every token), newest first. */
  listApiTokens(owner?: string | null): Promise<ApiTokenRecord[]>;
  /** Marks the token revoked at `now`; false when none or already revoked. */
  revokeApiToken(id: string, now: number): Promise<boolean>;
  /** Stamps the token's last use. */
  touchApiToken(id: string, now: number): Promise<void>;
  appendAudit(e: NewAuditEntry): Promise<void>;
  /** Newest first, at most `limit`, only ids below `beforeId` when given, only `action` when given. */
  listAudit(q: { limit: number; beforeId?: number; action?: AuditAction }): Promise<AuditRecord[]>;

  // ---- workers, from the controller's side ----

  /** Sets or clears the worker's `drainRequested`; false when there is no such worker. */
  setWorkerDrainRequested(id: string, drainRequested: boolean): Promise<boolean>;
  /**
   * Deletes the worker (its key stops working at once) unless it holds an active build, in one
   * transaction: `removed`, `busy` (nothing written) or `missing`. Its finished builds keep its id.
   */
  deleteWorker(id: string): Promise<'removed' | 'busy' | 'missing'>;

  // ---- the dashboard's reads ----

  /**
   * Builds that were created, active or finished in [since, now]: every build created at or
   * after `since`, every active or queued build, and every build finished at or after `since`;
   * newest submission first, at most `limit`. The overview's plots are drawn from these. When
   * more than `limit` qualify, the read stays bounded: it keeps the newest unfinished ones and
   * those that finished last (which, builds finishing in about the order they came, are the newest).
   */
  listBuildsSince(since: number, limit: number): Promise<BuildRecord[]>;
  /**
   * Attempts claimed at or after `since`, or still running, or ended at or after `since`; oldest
   * claim first, at most `limit`. (Bounded like `listBuildsSince`: those claimed before `since`
   * are found through the builds that read would keep.)
   */
  listAttemptsSince(since: number, limit: number): Promise<AttemptRecord[]>;

  // ---- logs ----

  /**
   * Appends at a byte offset, atomically: a repeat of stored bytes is a no-op, an overlap whose
   * bytes match appends only the new tail, an overlap whose bytes differ is a conflict, a gap is
   * refused, and a log that would pass `maxLogBytes` is refused whole. The build must exist
   * (callers look it up first).
   */
  appendLog(buildId: string, offset: number, data: Buffer, maxLogBytes: number): Promise<AppendLogResult>;
  /** The build's log from byte `fromOffset` to its end; empty past the end or for an unknown build. */
  readLog(buildId: string, fromOffset: number): Promise<Buffer>;
  /**
   * The build's log bytes [from, to), clipped to what is stored (empty past the end or for an
   * unknown build). Reads only the chunks that overlap the range: a 50 MB log's tail costs no
   * more than the tail.
   */
  readLogRange(buildId: string, from: number, to: number): Promise<Buffer>;
}
