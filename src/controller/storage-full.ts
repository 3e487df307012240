/**
 * Telling "the disk is full" apart from other failures, so that a full disk under the database
 * answers `507 STORE_FULL` with `Retry-After` (the agent retries 5xx; nothing is lost, since a
 * failed write changed nothing) and the log says so in words an operator searches for — ENOSPC,
 * disk full, and the directory — instead of a bare 500.
 *
 * The store's own errors are read by its adapter's recogniser (the port's `diskError`): a
 * "full" is full; an I/O error counts as "full" when the data directory's filesystem has almost
 * nothing left (SQLite hides the ENOSPC behind some of them).
 */
import { statfs } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { StoreDiskError } from './store/store.ts';
/** Below this many free bytes an SQLite I/O error is taken for a full disk. */
const NEARLY_FULL_BYTES = 1024 * 1024;
/** What `Retry-After` tells a client refused for a full disk, in seconds. */
export const STORE_FULL_RETRY_AFTER_S = 10;

interface ErrorLike {
  code?: unknown;
  path?: unknown;
  cause?: unknown;
}

/** The errors along an error's `cause` chain, the error first; bounded against cycles. */
function chain(err: unknown): ErrorLike[] {
  const out: ErrorLike[] = [];
  for (let e = err, i = 0; e !== null && typeof e === 'object' && i < 8; e = (e as ErrorLike).cause, i++) out.push(e as ErrorLike);
  return out;
}

/** Free bytes for an unprivileged writer on the filesystem holding `dir`; null when unknown. */
export async function freeBytes(dir: string): Promise<number | null> {
  try {
    const s = await statfs(dir);
    return s.bavail * s.bsize;
  } catch {
    return null;
  }
}

export interface StorageFull {
  /** One line for the log: names ENOSPC, "disk full" and the directory. */
  summary: string;
  /** Structured fields for the same log line. */
  fields: { diskFull: true; errno: 'ENOSPC'; sqliteCode: string | null; dataDir: string | null; file: string | null; freeBytes: number | null };
}

/**
 * When `err` is a full disk, what to log about it; otherwise null. `storeDiskError` reads the
 * store adapter's errors (`Store.diskError`).
 */
export async function describeStorageFull(
  err: unknown,
  dataDir: string | undefined,
  storeDiskError: (e: unknown) => StoreDiskError | null,
): Promise<StorageFull | null> {
  let sqliteCode: string | null = null;
  let full = false;
  let ioError = false;
  // A file write (an artifact) names its own file, which may be on another disk than the database.
  let file: string | null = null;
  for (const e of chain(err)) {
    if (e.code === 'ENOSPC') {
      full = true;
      if (typeof e.path === 'string') file = e.path;
    }
    const disk = storeDiskError(e);
    if (disk?.kind === 'full') full = true;
    if (disk?.kind === 'io') ioError = true;
    if (disk) sqliteCode = disk.code;
  }
  if (!full && !ioError) return null;
  const watched = file === null ? dataDir : dirname(file);
  const free = watched === undefined ? null : await freeBytes(watched);
  if (!full && (free === null || free >= NEARLY_FULL_BYTES)) return null;
  const where = file ?? dataDir ?? 'the database directory';
  return {
    summary: `disk full (ENOSPC${sqliteCode ? `, ${sqliteCode}` : ''}) under ${where}: ${file ? 'a file' : 'the database'} refused a write; free space there — writes resume by themselves`,
    fields: { diskFull: true, errno: 'ENOSPC', sqliteCode, dataDir: dataDir ?? null, file, freeBytes: free },
  };
}
