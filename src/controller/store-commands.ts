/**
 * `expo-worker backup` and `expo-worker migrate`: the commands an operator runs beside the
 * controller on its database (docs/operations.md, "Backup and moving to PostgreSQL"). Flags are
 * read here; the work is in store/sqlite-backup.ts and store/sqlite-to-pg.ts. Exit codes: 0 done,
 * 64 usage (a flag, a path, a URL), 1 refused or failed (nothing was kept).
 */
import { parseArgs } from 'node:util';
import { isPostgresUrl, redactDbUrl } from './store/db-url.ts';
import { backupSqlite } from './store/sqlite-backup.ts';
import { sqliteBeingWritten, sqlitePathOf, sqliteToPg, targetUrlOf } from './store/sqlite-to-pg.ts';
import { StoreCommandError } from './store/store-command-error.ts';

/** Where the commands write; a test passes its own. */
export interface CommandIo {
  out: (line: string) => void;
  err: (line: string) => void;
  env: NodeJS.ProcessEnv;
}

const processIo = (): CommandIo => ({ out: (l) => console.log(l), err: (l) => console.error(l), env: process.env });

export const BACKUP_HELP = `Usage: expo-worker backup PATH [--db FILE] [--force]

A consistent copy of the controller's SQLite database, taken while the controller runs (SQLite's
VACUUM INTO: one read transaction; the controller keeps writing). The copy is written to a
temporary file beside PATH, checked (PRAGMA integrity_check, and the store reads it), made 0600,
and only then named PATH.

  --db FILE   the database (EXPO_CONTROLLER_DB, as the controller's --db)
  --force     replace an existing PATH (refused otherwise)
  -h, --help  show this help

Keep the data directory's secret-env.key too (once; it does not change): without it the sealed
secrets in the copy (project secrets, queued builds' secret env) cannot be opened. It is not
copied beside the backup.

With a PostgreSQL --db use PostgreSQL's own tools: pg_dump, or pg_basebackup with WAL archiving
for point-in-time recovery (docs/operations.md).

Exit codes: 0 done, 64 usage, 1 refused or failed (PATH is left as it was).`;

export const MIGRATE_HELP = `Usage: expo-worker migrate --from sqlite:PATH --to postgres://USER@HOST:PORT/DB

Moves a farm from SQLite to PostgreSQL: every table, row for row, in one transaction (all or
nothing), then checks the counts and prints them. Stop the controller first: what it writes
after the copy starts is not copied.

  --from sqlite:PATH  the controller's SQLite database, at the current schema (start the current
                      controller on an older one once to upgrade it)
  --to URL            an empty PostgreSQL database (no tables, or a controller's with no rows);
                      prefer EXPO_MIGRATE_TO for a URL with a password (a flag shows in ps)
  -h, --help          show this help

Then start the controllers with --db URL and --data-dir holding the same secret-env.key.

Exit codes: 0 done, 64 usage, 1 refused or failed (the target is left as it was).`;

const formatBytes = (n: number): string => (n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(1)} MB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KB` : `${n} B`);

/** Runs `fn`, turning its refusals into a message and an exit code. */
async function guarded(name: string, io: CommandIo, fn: () => Promise<number>): Promise<number> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof StoreCommandError) {
      io.err(`expo-worker ${name}: ${err.message}`);
      return err.code === 'usage' ? 64 : 1;
    }
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) {
      io.err(`expo-worker ${name}: ${(err as Error).message}\nRun 'expo-worker ${name} --help'.`);
      return 64;
    }
    throw err;
  }
}

export async function backupMain(argv: string[], io: CommandIo = processIo()): Promise<number> {
  return guarded('backup', io, async () => {
    const { values, positionals } = parseArgs({
      args: argv,
      options: { db: { type: 'string' }, force: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
    if (values.help) {
      io.out(BACKUP_HELP);
      return 0;
    }
    if (positionals.length !== 1) throw new StoreCommandError('usage', `expected one PATH, got ${positionals.length}; run 'expo-worker backup --help'`);
    const db = values.db ?? io.env.EXPO_CONTROLLER_DB;
    if (db === undefined || db === '') throw new StoreCommandError('usage', '--db (EXPO_CONTROLLER_DB): required — the SQLite database file');
    if (isPostgresUrl(db)) {
      throw new StoreCommandError('usage', `--db is PostgreSQL (${redactDbUrl(db)}): back it up with pg_dump, or pg_basebackup with WAL archiving (docs/operations.md, "Backup and moving to PostgreSQL")`);
    }
    io.out(`backing up ${db} to ${positionals[0]!}…`);
    const r = await backupSqlite({ dbPath: db, dest: positionals[0]!, force: values.force === true });
    io.out(`backup ${r.path}: ${formatBytes(r.sizeBytes)}, schema version ${r.schemaVersion}, ${r.builds} builds, integrity ok, mode 0600`);
    io.out('Keep secret-env.key from the data directory too (not copied here): without it the sealed project and build secrets in this backup cannot be opened.');
    return 0;
  });
}

export async function migrateMain(argv: string[], io: CommandIo = processIo()): Promise<number> {
  return guarded('migrate', io, async () => {
    const { values, positionals } = parseArgs({
      args: argv,
      options: { from: { type: 'string' }, to: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
    if (values.help) {
      io.out(MIGRATE_HELP);
      return 0;
    }
    if (positionals.length > 0) throw new StoreCommandError('usage', `unexpected argument '${positionals[0]!}'; run 'expo-worker migrate --help'`);
    const to = values.to ?? io.env.EXPO_MIGRATE_TO;
    if (values.from === undefined || values.from === '') throw new StoreCommandError('usage', '--from sqlite:PATH: required');
    if (to === undefined || to === '') throw new StoreCommandError('usage', '--to postgres://… (EXPO_MIGRATE_TO): required');
    const path = sqlitePathOf(values.from);
    targetUrlOf(to);
    io.err('migrate reads the SQLite file read-only; stop the controller first: what it writes after the copy starts is not copied.');
    if (sqliteBeingWritten(path)) io.err(`warning: ${path} is being written right now — is a controller still running on it?`);
    const r = await sqliteToPg({ from: values.from, to, progress: io.err });
    const width = Math.max(...r.counts.map((c) => c.table.length));
    io.out(`migrated to ${r.target}; rows per table (equal on both sides):`);
    for (const c of r.counts) io.out(`  ${c.table.padEnd(width)}  ${c.rows}`);
    io.out('Start the controllers with --db set to this URL and --data-dir holding the same secret-env.key.');
    return 0;
  });
}
