/**
 * `expo-worker migrate --from sqlite:PATH --to postgres://…`: moves a farm from SQLite to
 * PostgreSQL. The two schemas are equal table for table and column for column (pg-schema.ts), so
 * the move is a row-for-row copy:
 *
 * 1. The SQLite file is opened read-only and must be at `SQLITE_VERSION_MIRRORED` (an older one
 *    is upgraded by starting the current controller on it once).
 *    Rows whose parent is missing (`PRAGMA foreign_key_check`; a farm from before foreign keys
 *    were on, or edited by hand) are refused up front, naming them: PostgreSQL enforces those keys
 *    and would otherwise stop the copy halfway with a bare 23503.
 * 2. The target must be empty: no tables, or only ours with no rows (a controller started on it
 *    once). Anything else is refused: the copy never merges two farms.
 * 3. In ONE PostgreSQL transaction, under the migration advisory lock: the schema migrations
 *    (as `PgStore.migrate` runs them), every table locked against writers and the emptiness
 *    check again (a controller may have started meanwhile, and must not write beside the copy),
 *    every table in foreign-key order in multi-row INSERTs, the identity sequences set past the
 *    copied maxima and SQLite's own high-water marks, and the counts compared. `cluster_settings`
 *    (PostgreSQL's own) is not copied; a key fingerprint left there is removed. Any failure rolls
 *    all of it back; a COMMIT whose answer is lost is checked again on a new connection.
 *
 * PostgreSQL's `text` cannot hold U+0000, which SQLite's TEXT can (a step name, a message quoting
 * a tool's output): such characters are replaced by U+FFFD while copying and counted per table,
 * so one odd value does not keep a farm from moving. Blobs (bytea) are copied byte for byte.
 *
 * SQLite is read in one read transaction, so the copy is one moment of the farm even if a
 * controller writes meanwhile (what it writes after that moment is not copied: stop it first).
 * Rows are streamed (`iterate`) and sent in batches bounded by rows and by bytes: a farm with
 * gigabytes of logs never sits in memory.
 */
import { DatabaseSync, type SQLOutputValue } from 'node:sqlite';
import { existsSync, statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
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
  /**
   * Rows copied per table, in copy order (equal on both sides: checked before commit), and how
   * many text values held U+0000 and were copied with U+FFFD in its place.
   */
  counts: { table: string; rows: number; nulReplaced: number }[];
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
  // cluster_settings (PostgreSQL's own) may hold the key fingerprint of a controller started on
  // the target once: not a farm's rows; the copy clears it (copyAll).
  const ours = new Set<string>([...COPY_ORDER, 'schema_migrations', 'cluster_settings']);
  const foreign = tables.filter((t) => !ours.has(t));
  if (foreign.length > 0) return `it has tables that are not expo-worker's (${foreign.slice(0, 5).join(', ')})`;
  for (const t of COPY_ORDER.filter((t) => tables.includes(t))) {
    if ((await c.query(`SELECT 1 FROM ${q(t)} LIMIT 1`)).rowCount !== 0) return `table ${t} has rows`;
  }
  return null;
}

/** What PostgreSQL's text gets instead of U+0000 (which it refuses with 22021). */
export const NUL_REPLACEMENT = '\uFFFD';

/** SQLite's values as `pg` sends them: blobs as Buffers (bytea, untouched), text without U+0000, the rest as they are. */
const toPg = (v: SQLOutputValue): unknown => {
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  return typeof v === 'string' && v.includes('\u0000') ? v.replaceAll('\u0000', NUL_REPLACEMENT) : v;
};
const sizeOf = (v: unknown): number => (Buffer.isBuffer(v) ? v.length : typeof v === 'string' ? v.length : 8);

async function copyTable(sqlite: DatabaseSync, c: pg.PoolClient, table: string, progress: (line: string) => void): Promise<{ copied: number; nulReplaced: number }> {
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
  let nulReplaced = 0;
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
    const row = cols.map((col) => {
      const v = r[col]!;
      if (typeof v === 'string' && v.includes('\u0000')) nulReplaced++;
      return toPg(v);
    });
    batch.push(row);
    bytes += row.reduce<number>((n, v) => n + sizeOf(v), 0);
    if (batch.length >= BATCH_ROWS || bytes >= BATCH_BYTES) await flush();
  }
  await flush();
  return { copied, nulReplaced };
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

/**
 * Rows whose parent row is missing, as PostgreSQL's foreign keys would refuse them: one line per
 * row (at most `limit`) and a cleanup statement per kind. `builds/attempts.worker_id` are left
 * out: PostgreSQL has no key there (a deleted worker's builds keep its id).
 */
export function foreignKeyOrphans(db: DatabaseSync, limit = 10): { rows: string[]; hints: string[]; total: number } {
  const found = db.prepare('PRAGMA foreign_key_check').all() as { table: string; rowid: number | null; parent: string; fkid: number }[];
  const rows: string[] = [];
  const hints = new Set<string>();
  let total = 0;
  for (const f of found) {
    const fk = (db.prepare(`PRAGMA foreign_key_list(${q(f.table)})`).all() as { id: number; table: string; from: string; to: string | null }[]).find((k) => k.id === f.fkid);
    if (fk === undefined) continue;
    if (f.parent === 'workers' && fk.from === 'worker_id' && (f.table === 'builds' || f.table === 'attempts')) continue;
    total++;
    const to = fk.to ?? 'rowid';
    if (rows.length < limit) {
      const value = f.rowid === null ? undefined : (db.prepare(`SELECT ${q(fk.from)} AS v FROM ${q(f.table)} WHERE rowid = ?`).get(f.rowid) as { v: unknown } | undefined)?.v;
      rows.push(`${f.table} rowid ${f.rowid ?? '?'}: ${fk.from} = ${JSON.stringify(value)} has no row in ${f.parent}(${to})`);
    }
    hints.add(`DELETE FROM ${q(f.table)} WHERE ${q(fk.from)} NOT IN (SELECT ${q(to)} FROM ${q(f.parent)});`);
  }
  return { rows, hints: [...hints], total };
}

/**
 * Whether another connection writes the SQLite file right now (a controller still running): it
 * committed during `intervalMs`, or its `-wal` changed. Read-only, like the copy: a read-write
 * probe would take the write lock (and warn falsely where the file may only be read) and, closing
 * last, checkpoint and delete a leftover `-wal`, writing the source. A write still uncommitted
 * after the interval is not seen; the copy leaves it out in any case.
 */
export async function sqliteBeingWritten(path: string, intervalMs = 1000): Promise<boolean> {
  const file = resolve(path);
  // Opening a missing file would create it: that is for openSource to report.
  if (!existsSync(file)) return false;
  const walState = (): string => {
    const st = statSync(`${file}-wal`, { throwIfNoEntry: false });
    return st === undefined ? 'none' : `${st.size}:${st.mtimeMs}`;
  };
  let probe: DatabaseSync | undefined;
  try {
    probe = new DatabaseSync(file, { readOnly: true, timeout: 1000 });
    const version = (): number => Number((probe!.prepare('PRAGMA data_version').get() as { data_version: number }).data_version);
    const [v0, w0] = [version(), walState()];
    await sleep(intervalMs);
    return version() !== v0 || walState() !== w0;
  } catch (cause) {
    throw new StoreCommandError('refused', `cannot open ${file} read-only: ${(cause as Error).message}`, { cause });
  } finally {
    probe?.close();
  }
}

/** Whether the copy was kept after its COMMIT failed: asked on a new connection. */
async function committedAfterAll(url: string): Promise<boolean | 'unknown'> {
  const db = new PgDb({ url, max: 1, applicationName: 'expo-worker migrate' });
  try {
    const c = await db.pool.connect();
    try {
      return (await targetNotEmpty(c)) !== null;
    } finally {
      c.release();
    }
  } catch {
    return 'unknown';
  } finally {
    await db.close();
  }
}

/** The copy itself, inside the caller's transaction on `c` (see the file's comment). */
async function copyAll(sqlite: DatabaseSync, c: pg.PoolClient, shown: string, progress: (line: string) => void): Promise<SqliteToPgResult['counts']> {
  await migratePgIn(c);
  // No controller writes beside the copy (readers still may); one holding a long transaction is
  // waited for a while, then named.
  await c.query(`SET LOCAL lock_timeout = '30s'`);
  try {
    await c.query(`LOCK TABLE ${COPY_ORDER.map(q).join(', ')} IN EXCLUSIVE MODE`);
  } catch (err) {
    if ((err as { code?: string }).code === '55P03') throw new StoreCommandError('refused', `the target ${shown} is in use: its tables could not be locked within 30 s (is a controller running on it?)`, { cause: err });
    throw err;
  }
  await c.query(`SET LOCAL lock_timeout = 0`);
  const now = await targetNotEmpty(c);
  if (now !== null) throw new StoreCommandError('refused', `the target ${shown} is not empty: ${now}`);
  // A fingerprint recorded by a controller started on the empty target vouches for a key that
  // sealed nothing here; the copied secrets are sealed with the SQLite farm's key, whose
  // fingerprint the first controller started afterwards records (pg-settings.ts).
  await c.query('DELETE FROM cluster_settings');
  // One read transaction on SQLite: every table as of one moment.
  sqlite.exec('BEGIN');
  try {
    const out: SqliteToPgResult['counts'] = [];
    for (const table of COPY_ORDER) {
      const expected = Number((sqlite.prepare(`SELECT count(*) AS n FROM ${q(table)}`).get() as { n: number }).n);
      progress(`copying ${table} (${expected} rows)`);
      const { copied, nulReplaced } = await copyTable(sqlite, c, table, progress);
      const inPg = Number((await c.query<{ n: number }>(`SELECT count(*)::bigint AS n FROM ${q(table)}`)).rows[0]!.n);
      if (copied !== expected || inPg !== expected) throw new StoreCommandError('failed', `table ${table}: ${expected} rows in SQLite, ${copied} copied, ${inPg} in PostgreSQL; nothing was kept`);
      if (nulReplaced > 0) progress(`  ${table}: ${nulReplaced} text values held U+0000 (PostgreSQL's text cannot): copied with U+FFFD in its place`);
      out.push({ table, rows: expected, nulReplaced });
    }
    const hasSequences = sqlite.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'`).get() !== undefined;
    for (const [table, col] of IDENTITIES) {
      // AUTOINCREMENT never reuses a number, even one whose row was deleted (retention, a deleted
      // build): the next value is past both the copied rows and SQLite's high-water mark.
      const mark = hasSequences ? Number((sqlite.prepare('SELECT seq FROM sqlite_sequence WHERE name = ?').get(table) as { seq: number } | undefined)?.seq ?? 0) : 0;
      await c.query(`SELECT setval(pg_get_serial_sequence($1, $2), greatest(coalesce((SELECT max(${q(col)}) FROM ${q(table)}), 0), $3::bigint) + 1, false)`, [table, col, mark]);
    }
    return out;
  } finally {
    sqlite.exec('COMMIT');
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
    const orphans = foreignKeyOrphans(sqlite);
    if (orphans.total > 0) {
      throw new StoreCommandError(
        'refused',
        `${resolve(path)} has ${orphans.total} rows whose parent row is missing, which PostgreSQL's foreign keys refuse:\n  ${orphans.rows.join('\n  ')}\n` +
          `With the controller stopped and after a backup, remove them in SQLite (sqlite3 ${resolve(path)}), then migrate again:\n  ${orphans.hints.join('\n  ')}`,
      );
    }
    // Before any write: a target that is not empty is refused without touching it.
    let c: pg.PoolClient;
    try {
      c = await db.pool.connect();
    } catch (cause) {
      throw new StoreCommandError('failed', `cannot connect to ${shown}: ${(cause as Error).message}`, { cause });
    }
    // A connection that dies mid-copy must not crash the process: its query rejects instead.
    c.on('error', () => undefined);
    let broken = false;
    try {
      const before = await targetNotEmpty(c);
      if (before !== null) throw new StoreCommandError('refused', `the target ${shown} is not empty: ${before}. migrate copies into an empty database only`);
      o.progress(`migrating ${resolve(path)} to ${shown}`);
      await c.query('BEGIN');
      let counts: SqliteToPgResult['counts'];
      try {
        counts = await copyAll(sqlite, c, shown, o.progress);
      } catch (err) {
        try {
          await c.query('ROLLBACK');
        } catch {
          broken = true;
        }
        throw err;
      }
      try {
        await c.query('COMMIT');
      } catch (cause) {
        // The answer to COMMIT was lost: PostgreSQL may have committed. Ask again, elsewhere.
        broken = true;
        const kept = await committedAfterAll(url);
        const why = (cause as Error).message;
        if (kept === true) throw new StoreCommandError('failed', `the connection failed during COMMIT (${why}), but the target ${shown} now holds the copy: check its row counts against the SQLite file before using it`, { cause });
        if (kept === false) throw new StoreCommandError('failed', `the connection failed during COMMIT (${why}); checked again on a new connection: the target ${shown} is empty, the copy was not kept`, { cause });
        throw new StoreCommandError('failed', `the connection failed during COMMIT (${why}) and ${shown} cannot be reached to check: the copy may or may not have been kept; see whether its tables have rows before migrating again`, { cause });
      }
      return { counts, target: shown };
    } finally {
      c.release(broken);
    }
  } catch (err) {
    if (err instanceof StoreCommandError) throw err;
    // PostgreSQL's own refusal (a value it will not take, a lost connection): rolled back whole.
    throw new StoreCommandError('failed', `the copy to ${shown} failed and was rolled back, nothing was kept: ${(err as Error).message}`, { cause: err });
  } finally {
    sqlite.close();
    await db.close();
  }
}
