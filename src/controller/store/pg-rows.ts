/**
 * What `PgStore` shares between its files: rows of the PostgreSQL schema turned into the port's
 * records (the same columns and values as SQLite's: 0/1 flags, JSON as text, times as bigint read
 * as numbers by `PgDb`, bytes as Buffers), named statements, and PostgreSQL's disk errors.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { ArtifactProblem, ArtifactSpec, BuildSource } from '../../protocol/schemas.ts';
import type { BuildStatus } from '../../protocol/domain.ts';
import type {
  ArtifactRecord,
  AttemptRecord,
  BuildRecord,
  DeliveryOutcome,
  DeliveryRecord,
  DeliveryWork,
  ProjectRecord,
  ReportStage,
  StoreDiskError,
  WorkerRecord,
} from './store.ts';

export type Row = Record<string, unknown>;

/**
 * The columns each record reads, named rather than `*`: a prepared statement's result type is
 * fixed when it is first planned, so a `*` that grew a column (a newer controller migrating the
 * database under a running older one) would fail every later execution of it on that connection.
 */
const cols = (names: string): ((alias?: string) => string) => {
  const list = names.split(/\s+/).filter(Boolean);
  return (alias) => list.map((c) => (alias === undefined ? c : `${alias}.${c}`)).join(', ');
};
export const WORKER_COLS = cols('id labels key_hash created_at last_seen_at slots_total draining drain_requested offline');
export const BUILD_COLS = cols(`id status steps env secret_env_names secret_env labels artifacts artifact_problems timeout_s max_attempts attempt
  worker_id lease progress failure_reason message exit_code cancel_requested log_bytes created_at assigned_at started_at step_starts
  finished_at last_heartbeat_at source reported check_run_id`);
export const ATTEMPT_COLS = cols('build_id attempt worker_id lease build_token_hash claimed_at ended_at outcome failure_reason exit_code message log_offset');
export const DELIVERY_COLS = cols('id event action repository received_at outcome reason work builds');
export const PROJECT_COLS = cols('id repo pipeline_path supersede created_at');
export const ARTIFACT_COLS = cols('build_id name attempt size_bytes sha256 created_at');

export const ACTIVE_SQL = `('assigned','preparing','running')`;
export const UNFINISHED_SQL = `('queued','assigned','preparing','running')`;
export const FINAL_SQL = `('succeeded','failed','cancelled')`;

/** Something that runs a query: the pool, or a connection inside a transaction. */
export type Queryable = Pick<pg.PoolClient, 'query'>;

const names = new Map<string, string>();

/**
 * Runs `sql` as a named (prepared) statement: each connection parses and plans it once, which
 * the hot paths (heartbeat, claim, poll) feel. The name is a digest of the text, so two modules
 * sharing a pool never give one name to two statements.
 */
export async function run<R extends Row = Row>(on: Queryable, sql: string, values: unknown[] = []): Promise<pg.QueryResult<R>> {
  let name = names.get(sql);
  if (name === undefined) {
    name = `store_${createHash('sha256').update(sql).digest('hex').slice(0, 20)}`;
    names.set(sql, name);
  }
  return on.query<R>({ name, text: sql, values });
}

/** PostgreSQL's SQLSTATE of an error from `pg`, or undefined. */
export const sqlState = (e: unknown): string | undefined => {
  const code = (e as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
};

/** A unique violation (23505) on this constraint. */
export const isUniqueViolation = (e: unknown, constraint: string): boolean =>
  sqlState(e) === '23505' && (e as { constraint?: unknown }).constraint === constraint;

/** disk_full (53100) for certain; io_error (58030) may hide a full disk (the caller checks the free space). */
export function pgDiskError(e: unknown): StoreDiskError | null {
  const state = sqlState(e);
  if (state === '53100') return { kind: 'full', code: '53100 (disk_full)' };
  if (state === '58030') return { kind: 'io', code: '58030 (io_error)' };
  return null;
}

const json = <T>(v: unknown): T => JSON.parse(v as string) as T;
const orNull = <T>(v: unknown): T | null => (v === null || v === undefined ? null : (v as T));

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

/** A project row with its `secret_names` (a text[] of its secrets' names, sorted). */
export const toProject = (r: Row): ProjectRecord => ({
  id: r.id as string,
  repo: r.repo as string,
  pipelinePath: r.pipeline_path as string,
  supersede: r.supersede === 1,
  secretNames: (r.secret_names as string[] | null | undefined) ?? [],
  createdAt: r.created_at as number,
});

export const toArtifact = (r: Row): ArtifactRecord => ({
  buildId: r.build_id as string,
  name: r.name as string,
  attempt: r.attempt as number,
  sizeBytes: r.size_bytes as number,
  sha256: r.sha256 as string,
  createdAt: r.created_at as number,
});
