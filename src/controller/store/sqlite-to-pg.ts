/**
 * `expo-worker migrate --from sqlite:PATH --to postgres://…`: moves a farm from SQLite to
 * PostgreSQL. The two schemas are equal table for table and column for column (pg-schema.ts), so
 * the move is a row-for-row copy:
 *
 * 1. The SQLite file is opened read-only and must be at `SQLITE_VERSION_MIRRORED` (an older one
 *    is upgraded by starting the current controller on it once).
 * 2. The target must be empty: no tables, or only ours with no rows (a controller started on it
 *    once). Anything else is refused: the copy never merges two farms.
 * 3. In ONE PostgreSQL transaction, under the migration advisory lock: the schema migrations
 *    (as `PgStore.migrate` runs them), the emptiness check again (a controller may have started
 *    meanwhile), every table in foreign-key order in multi-row INSERTs, the identity sequences
 *    set past the copied maxima, and the counts compared. Any failure rolls all of it back.
 *
 * SQLite is read in one read transaction, so the copy is one moment of the farm even if a
 * controller writes meanwhile (what it writes after that moment is not copied: stop it first).
 * Rows are streamed (`iterate`) and sent in batches bounded by rows and by bytes: a farm with
 * gigabytes of logs never sits in memory.
 */
import { DatabaseSync, type SQLOutputValue } from 'node:sqlite';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type pg from 'pg';
import { PgDb } from './pg-db.ts';
import { PG_MIGRATION_LOCK, PG_MIGRATIONS, SQLITE_VERSION_MIRRORED } from './pg-schema.ts';
import { isPostgresUrl, redactDbUrl } from './db-url.ts';
import { StoreCommandError } from './store-command-error.ts';

/** The tables copied, parents before children (the foreign keys of pg-schema.ts). */
export const COPY_ORDER = [
  'workers',
  'builds',
  'attempts',
  'log_chunks',
  'artifacts',
  'webhook_deliveries',
  'projects',
  'project_secrets',
  'users',
  'sessions',
  'api_tokens',
  'audit_log',
] as const;

/** Identity columns whose sequences must move past the copied values. */
const IDENTITIES: readonly [table: string, column: string][] = [
  ['builds', 'seq'],
  ['audit_log', 'id'],
];

/** Rows per INSERT, and bytes (log chunks, sealed secrets) after which a batch is sent sooner. */
const BATCH_ROWS = 500;
const BATCH_BYTES = 4 * 1024 * 1024;

export interface SqliteToPgOptions {
  /** `sqlite:PATH` (or a bare path). */
  from: string;
  /** `postgres://…` */
  to: string;
  /** Progress lines (stderr). */
  progress: (line: string) => void;
}

export interface SqliteToPgResult {
  /** Rows copied per table, in copy order (equal on both sides: checked before commit). */
  counts: { table: string; rows: number }[];
  target: string;
}

const q = (name: string): string => `"${name.replaceAll('"', '""')}"`;

/** The SQLite path of `--from`: `sqlite:PATH` or a path; never a URL of another kind. */
export function sqlitePathOf(from: string): string {
  const path = from.startsWith('sqlite:') ? from.slice('sqlite:'.length) : from;
  if (path === '' || /^[a-z][a-z0-9+.-]*:\/\//i.test(path)) throw new StoreCommandError('usage', `--from: '${from}' is not sqlite:PATH`);
  return path;
}

/** Checks `--to`: a parseable postgres:// URL (shown redacted in every message). */
export function targetUrlOf(to: string): string {
  if (!isPostgresUrl(to) || !URL.canParse(to)) throw new StoreCommandError('usage', `--to: '${redactDbUrl(to)}' is not a postgres:// URL`);
  return to;
}

/** Runs the missing PostgreSQL migrations on `c` (inside the caller's transaction, under the lock). */
export async function migratePgIn(c: pg.PoolClient): Promise<void> {
  await c.query('SELECT pg_advisory_xact_lock($1)', [PG_MIGRATION_LOCK.toString()]);
  await c.query('CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at bigint NOT NULL)');
  const current = Number((await c.query<{ v: number | null }>('SELECT max(version) AS v FROM schema_migrations')).rows[0]?.v ?? 0);
  const latest = PG_MIGRATIONS.at(-1)?.version ?? 0;
  if (current > latest) throw new StoreCommandError('refused', `the target is at schema version ${current}, newer than this expo-worker (${latest}); upgrade expo-worker`);
  for (const m of PG_MIGRATIONS.filter((m) => m.version > current)) {
    await c.query(m.sql);
    await c.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [m.version, m.name, Date.now()]);
  }
}

/** Why the target is not empty, or null when it is (no tables, or ours with no rows). */
async function targetNotEmpty(c: pg.ClientBase): Promise<string | null> {
  const tables = (await c.query<{ name: string }>(`SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`)).rows.map((r) => r.name);
  const ours = new Set<string>([...COPY_ORDER, 'schema_migrations']);
  const foreign = tables.filter((t) => !ours.has(t));
  if (foreign.length > 0) return `it has tables that are not expo-worker's (${foreign.slice(0, 5).join(', ')})`;
  for (const t of COPY_ORDER.filter((t) => tables.includes(t))) {
    if ((await c.query(`SELECT 1 FROM ${q(t)} LIMIT 1`)).rowCount !== 0) return `table ${t} has rows`;
  }
  return null;
}

/** SQLite's values as `pg` sends them: blobs as Buffers (bytea), the rest as they are. */
const toPg = (v: SQLOutputValue): unknown => (v instanceof Uint8Array ? Buffer.from(v.buffer, v.byteOffset, v.byteLength) : v);
const sizeOf = (v: unknown): number => (Buffer.isBuffer(v) ? v.length : typeof v === 'string' ? v.length : 8);

async function copyTable(sqlite: DatabaseSync, c: pg.PoolClient, table: string, progress: (line: string) => void): Promise<number> {
  const pgCols = (await c.query<{ name: string }>(`SELECT column_name AS name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`, [table])).rows.map((r) => r.name);
  const sqliteCols = (sqlite.prepare(`PRAGMA table_info(${q(table)})`).all() as { name: string }[]).map((r) => r.name);
  const missing = sqliteCols.filter((col) => !pgCols.includes(col));
  const absent = pgCols.filter((col) => !sqliteCols.includes(col));
  // Equal shapes are the contract (pg-schema.ts); a column either side lacks would be lost or guessed.
  if (missing.length > 0 || absent.length > 0) throw new StoreCommandError('failed', `table ${table}: the schemas differ (only in SQLite: ${missing.join(', ') || 'none'}; only in PostgreSQL: ${absent.join(', ') || 'none'})`);
  const cols = pgCols;
  const insertHead = `INSERT INTO ${q(table)} (${cols.map(q).join(', ')}) VALUES `;
  let batch: unknown[][] = [];
  let bytes = 0;
  let copied = 0;
  let reported = 0;
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return;
    const params: unknown[] = [];
    const tuples = batch.map((row) => `(${row.map((v) => (params.push(v), `$${params.length}`)).join(', ')})`);
    await c.query(insertHead + tuples.join(', '), params);
    copied += batch.length;
    batch = [];
    bytes = 0;
    if (copied - reported >= 50_000) {
      reported = copied;
      progress(`  ${table}: ${copied} rows…`);
    }
  };
  const select = sqlite.prepare(`SELECT ${cols.map(q).join(', ')} FROM ${q(table)}`);
  for (const r of select.iterate() as Iterable<Record<string, SQLOutputValue>>) {
    const row = cols.map((col) => toPg(r[col]!));
    batch.push(row);
    bytes += row.reduce<number>((n, v) => n + sizeOf(v), 0);
    if (batch.length >= BATCH_ROWS || bytes >= BATCH_BYTES) await flush();
  }
  await flush();
  return copied;
}

/** Opens the SQLite farm read-only and checks its schema version. */
function openSource(path: string): DatabaseSync {
  const file = resolve(path);
  if (!existsSync(file)) throw new StoreCommandError('usage', `--from: no database at ${file}`);
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(file, { readOnly: true, timeout: 10_000 });
  } catch (cause) {
    throw new StoreCommandError('refused', `cannot open ${file} read-only: ${(cause as Error).message}`, { cause });
  }
  try {
    const hasTable = db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'`).get();
    const version = hasTable ? Number((db.prepare('SELECT max(version) AS v FROM schema_migrations').get() as { v: number | null }).v ?? 0) : 0;
    if (version === 0) throw new StoreCommandError('refused', `${file} is not an expo-worker database (no schema version)`);
    if (version !== SQLITE_VERSION_MIRRORED) {
      throw new StoreCommandError(
        'refused',
        version < SQLITE_VERSION_MIRRORED ?
          `${file} is at schema version ${version}; this migrate copies version ${SQLITE_VERSION_MIRRORED}: start the current controller on it once to upgrade it, stop it, then migrate`
        : `${file} is at schema version ${version}, newer than this expo-worker copies (${SQLITE_VERSION_MIRRORED}); use the expo-worker that wrote it`,
      );
    }
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/** Whether another connection holds the SQLite file's write lock right now (a controller writing). */
export function sqliteBeingWritten(path: string): boolean {
  // Opening a missing file would create it: that is for openSource to report.
  if (!existsSync(resolve(path))) return false;
  const probe = new DatabaseSync(resolve(path), { timeout: 0 });
  try {
    probe.exec('BEGIN IMMEDIATE');
    probe.exec('ROLLBACK');
    return false;
  } catch {
    return true;
  } finally {
    probe.close();
  }
}

/** Copies the farm (see the file's comment); rejects with a `StoreCommandError` and leaves the target as it was. */
export async function sqliteToPg(o: SqliteToPgOptions): Promise<SqliteToPgResult> {
  const path = sqlitePathOf(o.from);
  const url = targetUrlOf(o.to);
  const shown = redactDbUrl(url);
  const sqlite = openSource(path);
  const db = new PgDb({ url, max: 1, applicationName: 'expo-worker migrate' });
  try {
    // Before any write: a target that is not empty is refused without touching it.
    let c: pg.PoolClient;
    try {
      c = await db.pool.connect();
    } catch (cause) {
      throw new StoreCommandError('failed', `cannot connect to ${shown}: ${(cause as Error).message}`, { cause });
    }
    let before: string | null;
    try {
      before = await targetNotEmpty(c);
    } finally {
      c.release();
    }
    if (before !== null) throw new StoreCommandError('refused', `the target ${shown} is not empty: ${before}. migrate copies into an empty database only`);
    o.progress(`migrating ${resolve(path)} to ${shown}`);
    const counts = await db.tx(async (c) => {
      await migratePgIn(c);
      const now = await targetNotEmpty(c);
      if (now !== null) throw new StoreCommandError('refused', `the target ${shown} is not empty: ${now}`);
      // One read transaction on SQLite: every table as of one moment.
      sqlite.exec('BEGIN');
      try {
        const out: { table: string; rows: number }[] = [];
        for (const table of COPY_ORDER) {
          const expected = Number((sqlite.prepare(`SELECT count(*) AS n FROM ${q(table)}`).get() as { n: number }).n);
          o.progress(`copying ${table} (${expected} rows)`);
          const copied = await copyTable(sqlite, c, table, o.progress);
          const inPg = Number((await c.query<{ n: number }>(`SELECT count(*)::bigint AS n FROM ${q(table)}`)).rows[0]!.n);
          if (copied !== expected || inPg !== expected) throw new StoreCommandError('failed', `table ${table}: ${expected} rows in SQLite, ${copied} copied, ${inPg} in PostgreSQL; nothing was kept`);
          out.push({ table, rows: expected });
        }
        for (const [table, col] of IDENTITIES) {
          // The next generated value is past every copied one (1 when the table is empty).
          await c.query(`SELECT setval(pg_get_serial_sequence($1, $2), coalesce((SELECT max(${q(col)}) FROM ${q(table)}), 0) + 1, false)`, [table, col]);
        }
        return out;
      } finally {
        sqlite.exec('COMMIT');
      }
    });
    return { counts, target: shown };
  } catch (err) {
    if (err instanceof StoreCommandError) throw err;
    // PostgreSQL's own refusal (a value it will not take, a lost connection): rolled back whole.
    throw new StoreCommandError('failed', `the copy to ${shown} failed and was rolled back, nothing was kept: ${(err as Error).message}`, { cause: err });
  } finally {
    sqlite.close();
    await db.close();
  }
}
