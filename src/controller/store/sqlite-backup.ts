/**
 * `expo-worker backup`: a consistent copy of the controller's SQLite database, taken while the
 * controller runs. The copy is `VACUUM INTO` (one read transaction: in WAL mode the controller
 * keeps writing meanwhile, and the copy is the database as of the moment that transaction
 * began). `sqlite3_backup` copies page by page and starts over whenever another connection writes
 * between two steps, so against a busy controller it may never finish; `VACUUM INTO` cannot be
 * starved, and leaves the free pages (pruned logs, erased secrets) behind.
 *
 * The copy goes to a private (0600) temporary file beside PATH, is checked (`PRAGMA
 * integrity_check`, the schema version, and `SqliteStore` opens it and reads a build), and only
 * then takes PATH's name: PATH is never a half-written or unchecked file. An existing PATH is
 * refused unless `force`; without it the new name is taken with `link`, which fails rather than
 * replace a file that appeared meanwhile.
 */
import { DatabaseSync } from 'node:sqlite';
import { closeSync, constants, existsSync, linkSync, openSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { SqliteStore } from './sqlite-store.ts';
import { StoreCommandError } from './store-command-error.ts';

export interface BackupOptions {
  /** The controller's database file. */
  dbPath: string;
  /** Where the copy goes. */
  dest: string;
  /** Replace an existing file at `dest`. Default false. */
  force?: boolean;
  /** How long to wait for the controller's write lock when starting the read, in ms. Default 10000. */
  busyTimeoutMs?: number;
}

export interface BackupResult {
  path: string;
  sizeBytes: number;
  /** The copy's schema version (`schema_migrations`). */
  schemaVersion: number;
  builds: number;
}

const schemaVersionOf = (db: DatabaseSync): number => {
  const hasTable = db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'`).get();
  if (!hasTable) return 0;
  return Number((db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as { v: number | null }).v ?? 0);
};

/** Copies the database to `dest` (see the file's comment); rejects with a `StoreCommandError`. */
export async function backupSqlite(o: BackupOptions): Promise<BackupResult> {
  const source = resolve(o.dbPath);
  const dest = resolve(o.dest);
  // Opening a missing file would create an empty database: check first.
  if (!existsSync(source) || !statSync(source).isFile()) throw new StoreCommandError('usage', `no database at ${source}`);
  if (source === dest) throw new StoreCommandError('usage', 'the backup PATH is the database itself');
  if (existsSync(dest) && statSync(dest).isDirectory()) throw new StoreCommandError('usage', `${dest} is a directory; give the backup's file name`);
  if (existsSync(dest) && !o.force) throw new StoreCommandError('refused', `${dest} exists; pass --force to replace it`);
  if (!existsSync(dirname(dest))) throw new StoreCommandError('usage', `directory ${dirname(dest)} does not exist`);

  const tmp = join(dirname(dest), `.${basename(dest)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const removeTmp = (): void => {
    for (const f of [tmp, `${tmp}-wal`, `${tmp}-shm`, `${tmp}-journal`]) rmSync(f, { force: true });
  };
  try {
    // VACUUM INTO writes into an empty file that exists: made here, private from the start.
    closeSync(openSync(tmp, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600));
    // Read-only: the backup never writes the controller's database.
    const src = new DatabaseSync(source, { readOnly: true, timeout: o.busyTimeoutMs ?? 10_000 });
    try {
      if (schemaVersionOf(src) === 0) throw new StoreCommandError('refused', `${source} is not an expo-worker database (no schema_migrations table)`);
      src.prepare('VACUUM INTO ?').run(tmp);
    } finally {
      src.close();
    }
    const checked = await checkCopy(tmp);
    if (o.force) renameSync(tmp, dest);
    else {
      try {
        linkSync(tmp, dest);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new StoreCommandError('refused', `${dest} exists; pass --force to replace it`);
        throw err;
      }
    }
    return { path: dest, sizeBytes: statSync(dest).size, ...checked };
  } finally {
    removeTmp();
  }
}

/** Whether the copy is sound: SQLite's integrity check, then our own store reading it as the controller would. */
async function checkCopy(path: string): Promise<{ schemaVersion: number; builds: number }> {
  let schemaVersion: number;
  let builds: number;
  let newest: string | undefined;
  const db = new DatabaseSync(path);
  try {
    const problems = (db.prepare('PRAGMA integrity_check').all() as { integrity_check: string }[]).map((r) => r.integrity_check);
    if (problems.join() !== 'ok') throw new StoreCommandError('failed', `the copy failed its integrity check: ${problems.slice(0, 5).join('; ')}`);
    schemaVersion = schemaVersionOf(db);
    builds = Number((db.prepare('SELECT count(*) AS n FROM builds').get() as { n: number }).n);
    newest = (db.prepare('SELECT id FROM builds ORDER BY seq DESC LIMIT 1').get() as { id: string } | undefined)?.id;
  } finally {
    db.close();
  }
  // Not migrated: the copy stays at the version it was taken at.
  const store = new SqliteStore({ path });
  try {
    if (newest !== undefined && (await store.getBuild(newest)) === null) throw new StoreCommandError('failed', `the copy does not answer build ${newest}`);
  } finally {
    await store.close();
  }
  // Rollback-journal mode (the store set WAL): the copy is one self-contained file, with no -wal to lose.
  const last = new DatabaseSync(path);
  try {
    last.exec('PRAGMA journal_mode = DELETE');
  } finally {
    last.close();
  }
  return { schemaVersion, builds };
}
