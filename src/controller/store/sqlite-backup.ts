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
 * replace a file that appeared meanwhile. Where the filesystem has no hard links (exFAT/FAT USB
 * drives, some SMB/NFS shares) PATH is first created exclusively, empty, and the copy renamed
 * over that placeholder: still never over a file someone else made. The directory is fsynced
 * after, so the new name survives a power loss.
 *
 * PATH is never the database or one of its companions (`-wal`, `-shm`, `-journal`), even by
 * another name (a symlinked directory, macOS' /var → /private/var, a hard link): `--force` would
 * otherwise replace the live file under the controller.
 *
 * While the temporary file exists its removal is in `cleanups` (when given): the command's
 * SIGINT/SIGTERM handler runs it, so an interrupted backup leaves no hidden half file behind.
 */
import { DatabaseSync } from 'node:sqlite';
import { closeSync, constants, existsSync, fsyncSync, linkSync, openSync, realpathSync, renameSync, rmSync, statSync } from 'node:fs';
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
  /** Holds the temporary file's removal while it exists (for a signal handler). */
  cleanups?: Set<() => void>;
  /** `fs.linkSync`; a test passes one that fails as a filesystem without hard links does. */
  link?: (existing: string, created: string) => void;
}

/** `link` errors meaning "this filesystem has no hard links", not "PATH exists". */
const NO_HARD_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'EXDEV', 'ENOSYS', 'EMLINK']);

export interface BackupResult {
  path: string;
  sizeBytes: number;
  /** The copy's schema version (`schema_migrations`). */
  schemaVersion: number;
  builds: number;
}

/**
 * One turn of the event loop. VACUUM INTO and the checks are synchronous, and the rest resolves
 * in microtasks, so a SIGINT/SIGTERM arriving meanwhile would only be handled after the handler
 * is gone; a turn between steps lets it run while the temporary file is still there to remove.
 */
const breathe = (): Promise<void> => new Promise((done) => setImmediate(done));

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
  if (!existsSync(dirname(dest))) throw new StoreCommandError('usage', `directory ${dirname(dest)} does not exist`);
  refuseLiveFile(source, dest);
  if (existsSync(dest) && statSync(dest).isDirectory()) throw new StoreCommandError('usage', `${dest} is a directory; give the backup's file name`);
  if (existsSync(dest) && !o.force) throw new StoreCommandError('refused', `${dest} exists; pass --force to replace it`);

  const tmp = join(dirname(dest), `.${basename(dest)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const removeTmp = (): void => {
    for (const f of [tmp, `${tmp}-wal`, `${tmp}-shm`, `${tmp}-journal`]) rmSync(f, { force: true });
  };
  o.cleanups?.add(removeTmp);
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
    await breathe();
    let checked: { schemaVersion: number; builds: number };
    try {
      checked = await checkCopy(tmp);
    } catch (err) {
      if (err instanceof StoreCommandError) throw err;
      // E.g. a copy whose schema this CLI's store does not read (an upgrade half done).
      throw new StoreCommandError('failed', `the copy could not be checked: ${(err as Error).message}`, { cause: err });
    }
    await breathe();
    // Checked again at the last moment: a file may have appeared at PATH meanwhile.
    refuseLiveFile(source, dest);
    try {
      if (o.force) renameSync(tmp, dest);
      else takeName(tmp, dest, o.link ?? linkSync);
    } catch (err) {
      if (err instanceof StoreCommandError) throw err;
      throw new StoreCommandError('failed', `cannot name the copy ${dest}: ${(err as Error).message}`, { cause: err });
    }
    syncDir(dirname(dest));
    return { path: dest, sizeBytes: statSync(dest).size, ...checked };
  } finally {
    removeTmp();
    o.cleanups?.delete(removeTmp);
  }
}

/** Refuses a `dest` that is the live database or its -wal/-shm/-journal, by any path. */
function refuseLiveFile(source: string, dest: string): void {
  const real = realpathSync(source);
  // The directory is resolved (symlinks, /var → /private/var); the name may not exist yet.
  const realDest = join(realpathSync(dirname(dest)), basename(dest));
  const live = [real, `${real}-wal`, `${real}-shm`, `${real}-journal`];
  if (live.includes(realDest)) throw new StoreCommandError('usage', `the backup PATH ${dest} is the database ${source} or one of its files`);
  const d = statSync(dest, { throwIfNoEntry: false });
  if (d === undefined) return;
  for (const f of live) {
    const s = statSync(f, { throwIfNoEntry: false });
    // Same device and inode: a hard link to (or another name of) a live file.
    if (s !== undefined && s.dev === d.dev && s.ino === d.ino) throw new StoreCommandError('usage', `the backup PATH ${dest} is another name of ${f}`);
  }
}

/** Gives `tmp` the name `dest` without ever replacing a file there. */
function takeName(tmp: string, dest: string, link: (existing: string, created: string) => void): void {
  try {
    link(tmp, dest);
    return;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    if (code === 'EEXIST') throw new StoreCommandError('refused', `${dest} exists; pass --force to replace it`);
    if (!NO_HARD_LINKS.has(code)) throw err;
  }
  // No hard links here: claim the name with an exclusive create, then rename over our own placeholder.
  try {
    closeSync(openSync(dest, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new StoreCommandError('refused', `${dest} exists; pass --force to replace it`);
    throw err;
  }
  try {
    renameSync(tmp, dest);
  } catch (err) {
    rmSync(dest, { force: true });
    throw err;
  }
}

/** fsyncs a directory so a new name in it is durable; some filesystems refuse, which costs only that. */
function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, constants.O_RDONLY);
    fsyncSync(fd);
  } catch {
    // EINVAL/EPERM/EISDIR on filesystems (and platforms) that cannot fsync a directory.
  } finally {
    if (fd !== undefined) closeSync(fd);
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
