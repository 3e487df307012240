/**
 * What `PgStore` shares between its files: the columns each record reads, named statements, and
 * PostgreSQL's disk errors. Rows become records in rows.ts, shared with the SQLite adapter.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { StoreDiskError } from './store.ts';
import type { Row } from './rows.ts';


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
