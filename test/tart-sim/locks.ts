/**
 * Real locks without fcntl (unreachable from Node): a lock is a file created with O_EXCL that
 * holds its owner's PID and start time (and, for a VM's run lock, the run's details). It is held
 * while that exact process lives — a PID reused by another process does not count, because the
 * start time differs — so a SIGKILLed owner releases it like the kernel releases an fcntl lock.
 * A stale file is taken over under a short-lived `.steal` guard so two takers cannot both win.
 */
import { closeSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { processCmdline, processStartTime } from './procs.ts';

/** Contents of a lock file. */
export interface LockRecord {
  pid: number;
  startTime: number;
  [key: string]: unknown;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function readRecord(path: string): LockRecord | undefined {
  try {
    const r = JSON.parse(readFileSync(path, 'utf8')) as LockRecord;
    return typeof r.pid === 'number' ? r : undefined;
  } catch {
    return undefined;
  }
}

/** The live holder of the lock at `path`, or undefined if it is free (or stale). */
export function lockHolder(path: string, check?: (r: LockRecord) => boolean): LockRecord | undefined {
  const r = readRecord(path);
  if (r === undefined || processStartTime(r.pid) !== r.startTime) return undefined;
  if (check !== undefined && !check(r)) return undefined;
  return r;
}

function createExclusive(path: string, record: LockRecord): boolean {
  try {
    const fd = openSync(path, 'wx');
    writeSync(fd, JSON.stringify(record));
    closeSync(fd);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return false;
  }
}

function removeIfStale(path: string, check?: (r: LockRecord) => boolean): void {
  const guard = `${path}.steal`;
  const me = { pid: process.pid, startTime: processStartTime(process.pid) ?? 0 };
  if (!createExclusive(guard, me)) {
    // A taker that died inside the guard leaves it behind; it never holds it for long.
    try {
      if (Date.now() - statSync(guard).mtimeMs > 2000) rmSync(guard, { force: true });
    } catch {
      // gone already
    }
    return;
  }
  try {
    const raw = (() => {
      try {
        return readFileSync(path, 'utf8');
      } catch {
        return undefined;
      }
    })();
    // A half-written file (its creator is between open and write) is not stale: give it time.
    if (raw === '') {
      if (Date.now() - statSync(path).mtimeMs < 2000) return;
    }
    if (raw !== undefined && lockHolder(path, check) === undefined) rmSync(path, { force: true });
  } finally {
    rmSync(guard, { force: true });
  }
}

/**
 * Tries once to take the lock at `path` for this process, storing `extra` in it. `check` lets
 * a caller reject a live holder that is not what the lock is for (e.g. not a run of this VM).
 */
export function tryLock(path: string, extra: Record<string, unknown> = {}, check?: (r: LockRecord) => boolean): boolean {
  const record: LockRecord = { ...extra, pid: process.pid, startTime: processStartTime(process.pid) ?? 0 };
  if (createExclusive(path, record)) return true;
  removeIfStale(path, check);
  return createExclusive(path, record);
}

/** Blocks (polling every 20 ms, no timeout — like tart's flock) until the lock is ours. */
export async function lock(path: string): Promise<void> {
  while (!tryLock(path)) await sleep(20);
}

/** Rewrites our lock record (e.g. a run's phase); no-op if we do not hold it. */
export function updateLock(path: string, extra: Record<string, unknown>): void {
  const r = readRecord(path);
  if (r?.pid !== process.pid) return;
  writeFileSync(path, JSON.stringify({ ...r, ...extra, pid: r.pid, startTime: r.startTime }));
}

/** Releases the lock if this process holds it. */
export function unlock(path: string): void {
  if (readRecord(path)?.pid === process.pid) rmSync(path, { force: true });
}

/** Whether a lock record's owner is a `tart run` process of the simulator (not a reused PID). */
export function isRunProcess(r: LockRecord): boolean {
  const cmd = processCmdline(r.pid);
  return cmd.includes('tart-sim') && / run /.test(`${cmd} `);
}
