/**
 * Rows of the store's schema turned into the port's records, for both adapters: SQLite's and
 * PostgreSQL's tables have the same columns and the same values (0/1 flags, times as ms numbers
 * — `PgDb` reads bigint as numbers —, JSON as text), so one mapper serves both. Bytes come as
 * SQLite's Uint8Array or PG's Buffer; `Buffer.from` takes either. Each adapter keeps its own SQL;
 * what `listBuilds` filters on (and how a filter's value is normalised) is here too.
 */
import type { AuditAction, BuildStatus, Role } from '../../protocol/domain.ts';
import type { ArtifactProblem, ArtifactSpec, BuildSource } from '../../protocol/schemas.ts';
import type {
  ApiTokenRecord,
  ArtifactRecord,
  AttemptRecord,
  AuditRecord,
  BuildRecord,
  ListBuildsFilter,
  DeliveryOutcome,
  DeliveryRecord,
  DeliveryWork,
  ProjectRecord,
  ReportStage,
  SessionRecord,
  UserRecord,
  WorkerRecord,
} from './store.ts';

/** A row as either driver answers it: column name → value. */
export type Row = Record<string, unknown>;

const json = <T>(v: unknown): T => JSON.parse(v as string) as T;
const orNull = <T>(v: unknown): T | null => (v === null || v === undefined ? null : (v as T));

/** A `workers` row. */
export const toWorker = (r: Row): WorkerRecord => ({
  id: r.id as string,
  labels: json<string[]>(r.labels),
  keyHash: r.key_hash as string,
  createdAt: r.created_at as number,
  lastSeenAt: orNull<number>(r.last_seen_at),
  slotsTotal: orNull<number>(r.slots_total),
  draining: r.draining === 1,
  drainRequested: r.drain_requested === 1,
  offline: r.offline === 1,
});

/** The build's `step_starts` (a JSON array, null until a step is reported) stretched to one entry per step. */
export const stepStarts = (r: Row): (number | null)[] => {
  const have = r.step_starts === null || r.step_starts === undefined ? [] : json<(number | null)[]>(r.step_starts);
  const count = json<unknown[]>(r.steps).length;
  return Array.from({ length: count }, (_, i) => have[i] ?? null);
};

/** A `builds` row. */
export const toBuild = (r: Row): BuildRecord => ({
  id: r.id as string,
  status: r.status as BuildStatus,
  steps: json<BuildRecord['steps']>(r.steps),
  env: json<Record<string, string>>(r.env),
  secretEnvNames: json<string[]>(r.secret_env_names),
  secretEnvSealed: r.secret_env === null || r.secret_env === undefined ? null : Buffer.from(r.secret_env as Uint8Array),
  labels: json<string[]>(r.labels),
  artifacts: json<ArtifactSpec[]>(r.artifacts),
  artifactProblems: json<ArtifactProblem[]>(r.artifact_problems),
  timeoutS: r.timeout_s as number,
  maxAttempts: r.max_attempts as number,
  attempt: r.attempt as number,
  workerId: orNull<string>(r.worker_id),
  lease: orNull<string>(r.lease),
  progress: orNull<number>(r.progress),
  failureReason: orNull<NonNullable<BuildRecord['failureReason']>>(r.failure_reason),
  message: orNull<string>(r.message),
  exitCode: orNull<number>(r.exit_code),
  cancelRequested: r.cancel_requested === 1,
  logBytes: r.log_bytes as number,
  createdAt: r.created_at as number,
  assignedAt: orNull<number>(r.assigned_at),
  startedAt: orNull<number>(r.started_at),
  stepStartedAt: stepStarts(r),
  finishedAt: orNull<number>(r.finished_at),
  lastHeartbeatAt: orNull<number>(r.last_heartbeat_at),
  source: r.source === null || r.source === undefined ? null : json<BuildSource>(r.source),
  reported: orNull<ReportStage>(r.reported),
  checkRunId: orNull<number>(r.check_run_id),
});

/** An `attempts` row. */
export const toAttempt = (r: Row): AttemptRecord => ({
  buildId: r.build_id as string,
  attempt: r.attempt as number,
  workerId: r.worker_id as string,
  lease: r.lease as string,
  buildTokenHash: r.build_token_hash as string,
  claimedAt: r.claimed_at as number,
  endedAt: orNull<number>(r.ended_at),
  outcome: orNull<NonNullable<AttemptRecord['outcome']>>(r.outcome),
  failureReason: orNull<NonNullable<AttemptRecord['failureReason']>>(r.failure_reason),
  exitCode: orNull<number>(r.exit_code),
  message: orNull<string>(r.message),
  logOffset: r.log_offset as number,
});

/** A `webhook_deliveries` row. */
export const toDelivery = (r: Row): DeliveryRecord => ({
  id: r.id as string,
  event: r.event as string,
  action: orNull<string>(r.action),
  repository: orNull<string>(r.repository),
  receivedAt: r.received_at as number,
  outcome: r.outcome as DeliveryOutcome,
  reason: r.reason as string,
  work: r.work === null || r.work === undefined ? null : json<DeliveryWork>(r.work),
  builds: json<string[]>(r.builds),
});

/** A `projects` row with its secrets' names (sorted), which each adapter reads its own way. */
export const toProject = (r: Row, secretNames: string[]): ProjectRecord => ({
  id: r.id as string,
  repo: r.repo as string,
  pipelinePath: r.pipeline_path as string,
  supersede: r.supersede === 1,
  secretNames,
  createdAt: r.created_at as number,
});

/** An `artifacts` row. */
export const toArtifact = (r: Row): ArtifactRecord => ({
  buildId: r.build_id as string,
  name: r.name as string,
  attempt: r.attempt as number,
  sizeBytes: r.size_bytes as number,
  sha256: r.sha256 as string,
  createdAt: r.created_at as number,
});

/** A `users` row. */
export const toUser = (r: Row): UserRecord => ({
  name: r.name as string,
  role: r.role as Role,
  passwordHash: r.password_hash as string,
  createdAt: r.created_at as number,
  lastSignInAt: orNull<number>(r.last_sign_in_at),
});

/** A `sessions` row. */
export const toSession = (r: Row): SessionRecord => ({
  idHash: r.id_hash as string,
  userName: r.user_name as string,
  createdAt: r.created_at as number,
  expiresAt: r.expires_at as number,
});

/** An `api_tokens` row. */
export const toToken = (r: Row): ApiTokenRecord => ({
  id: r.id as string,
  name: r.name as string,
  role: r.role as Role,
  owner: orNull<string>(r.owner),
  secretHash: r.secret_hash as string,
  createdAt: r.created_at as number,
  expiresAt: r.expires_at as number,
  lastUsedAt: orNull<number>(r.last_used_at),
  revokedAt: orNull<number>(r.revoked_at),
  adminEpoch: orNull<string>(r.admin_epoch),
});

/** An `audit_log` row. */
export const toAudit = (r: Row): AuditRecord => ({
  id: r.id as number,
  at: r.at as number,
  actor: r.actor as string,
  action: r.action as AuditAction,
  target: r.target as string,
  detail: orNull<string>(r.detail),
});

/**
 * The `builds` columns a `listBuilds` filter gives, each with its value as stored (repository
 * and sha lowercased), in a fixed order: at most 16 shapes of statement, each prepared once.
 */
export const listBuildsWhere = (f: ListBuildsFilter): [column: string, value: string][] => {
  const all: [string, string | undefined][] = [
    ['status', f.status],
    ['source_repo_key', f.repo?.toLowerCase()],
    ['source_ref', f.ref],
    ['source_sha', f.sha?.toLowerCase()],
  ];
  return all.filter((x): x is [string, string] => x[1] !== undefined);
};
