/**
 * The controller's data directory — the database's folder, holding the database, its `-wal`
 * and `-shm` files, the secret-env key and (by default) the artifacts — is private to the
 * controller's user: the directory 0700, the files 0600. New ones are created so; existing
 * files with wider modes are narrowed at start, and each change is reported for the log.
 *
 * An existing directory is narrowed only when it holds nothing but the controller's own entries:
 * `--db /var/lib/controller.db` must never chmod /var/lib. One that holds anything else, or is
 * plainly not ours (not owned by this user, a sticky shared directory like /tmp, the home
 * directory), is left alone and reported instead: give `--db` a directory of its own.
 */
import { chmodSync, closeSync, constants, existsSync, mkdirSync, openSync, readdirSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, resolve } from 'node:path';

export interface DataDirReport {
  /** Modes changed, as readable lines for the log. */
  fixed: string[];
  /** What was left wider than it should be, and why. */
  warnings: string[];
}

const octal = (mode: number): string => (mode & 0o777).toString(8).padStart(4, '0');

/** Creates the database file with mode 0600 when it does not exist yet (SQLite gives `-wal`/`-shm` the database's mode). */
export function createPrivateFile(path: string): void {
  closeSync(openSync(path, constants.O_CREAT | constants.O_WRONLY, 0o600));
}

export function prepareDataDir(dbPath: string): DataDirReport {
  const report: DataDirReport = { fixed: [], warnings: [] };
  const dir = dirname(resolve(dbPath));
  // Created here: ours, and private from the start (a parent it has to create as well is 0700 too).
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
  const d = statSync(dir);
  if ((d.mode & 0o077) !== 0) {
    const uid = process.getuid?.();
    let foreign: string[] | undefined;
    if (uid !== undefined && d.uid !== uid) report.warnings.push(`data directory ${dir} is mode ${octal(d.mode)} and owned by another user; not changed`);
    else if ((d.mode & 0o1000) !== 0) report.warnings.push(`data directory ${dir} is a shared sticky directory (mode ${octal(d.mode)}); not changed — give --db a dedicated directory`);
    else if (resolve(dir) === resolve(homedir())) report.warnings.push(`data directory ${dir} is the home directory (mode ${octal(d.mode)}); not changed — give --db a dedicated directory`);
    else if (isMountPoint(dir, d.dev)) report.warnings.push(`data directory ${dir} is a mount point (mode ${octal(d.mode)}); not changed — give --db a directory of its own inside it`);
    else if ((foreign = foreignEntries(dir, basename(resolve(dbPath)))) === undefined) {
      report.warnings.push(`data directory ${dir} is mode ${octal(d.mode)} and cannot be listed; not changed — give --db a directory of its own`);
    } else if (foreign.length > 0) {
      const shown = foreign.slice(0, 3).join(', ') + (foreign.length > 3 ? `, … (${foreign.length} in all)` : '');
      report.warnings.push(`data directory ${dir} is mode ${octal(d.mode)} and holds more than the controller's files (${shown}); not changed — give --db a directory of its own`);
    } else {
      chmodSync(dir, 0o700);
      report.fixed.push(`data directory ${dir}: ${octal(d.mode)} → 0700`);
    }
  }
  for (const path of [dbPath, `${dbPath}-wal`, `${dbPath}-shm`]) {
    let mode: number;
    try {
      mode = statSync(path).mode;
    } catch {
      continue;
    }
    if ((mode & 0o077) === 0) continue;
    chmodSync(path, 0o600);
    report.fixed.push(`${path}: ${octal(mode)} → 0600`);
  }
  return report;
}

/** What the controller keeps beside its database `db` (a base name): nothing else is its own. */
const ownEntries = (db: string): Set<string> => new Set([db, `${db}-wal`, `${db}-shm`, `${db}-journal`, 'secret-env.key', 'artifacts']);

/** The entries of `dir` that are not the controller's, sorted; undefined when it cannot be read. */
function foreignEntries(dir: string, db: string): string[] | undefined {
  const own = ownEntries(db);
  try {
    return readdirSync(dir)
      .filter((name) => !own.has(name))
      .sort();
  } catch {
    return undefined;
  }
}

/** A directory on another file system than its parent's (a volume mounted there, maybe empty): not the controller's to narrow. */
function isMountPoint(dir: string, dev: number): boolean {
  const parent = dirname(dir);
  return parent !== dir && statSync(parent).dev !== dev;
}
