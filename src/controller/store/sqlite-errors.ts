/**
 * What an error of `node:sqlite` says about the disk under the database, so that the
 * controller's disk-full handling (`storage-full.ts`) needs no SQLite codes of its own. SQLite
 * reports a full disk as SQLITE_FULL (13), and some write paths as an SQLITE_IOERR (10, with
 * extended codes) whose errno (ENOSPC) node:sqlite does not expose: the caller decides whether
 * such an I/O error means "full" by the free space left.
 */

import type { StoreDiskError } from './store.ts';

const SQLITE_IOERR = 10;
const SQLITE_FULL = 13;

/** One error (not its causes) as a disk error, or null when it is not one of SQLite's disk errors. */
export function sqliteDiskError(e: unknown): StoreDiskError | null {
  const { code, errcode } = (e ?? {}) as { code?: unknown; errcode?: unknown };
  if (code !== 'ERR_SQLITE_ERROR' || typeof errcode !== 'number') return null;
  const primary = errcode & 0xff;
  if (primary === SQLITE_FULL) return { kind: 'full', code: 'SQLITE_FULL' };
  if (primary === SQLITE_IOERR) return { kind: 'io', code: `SQLITE_IOERR (${errcode})` };
  return null;
}
