/**
 * Retention of the per-build files the agent keeps in its log directory: the `tart run` log of
 * each clone (`<prefix>-<workerId>-<buildId>-<attempt>.log`, see {@link EphemeralVm}) and the
 * local copy of each attempt's output (`<buildId>-<attempt>.log`, written by the build runner).
 *
 * A clone released after a good build takes its log with it (`release({ removeLog: true })`);
 * the logs of failed, aborted or crashed VMs stay for diagnosis. This prune bounds them: a log
 * older than `maxAgeDays` goes, and of the rest only the newest `maxFiles` stay. Only this
 * worker's clone logs and attempt copies are touched (other files in the directory, such as the
 * agent's own log, never are), each kind bounded on its own, and never a build's still running here.
 */
import { readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { isBuildId } from '../protocol/domain.ts';
import { parseCloneName } from './vm-name.ts';

export interface PruneRunLogsOptions {
  logDir: string;
  workerId: string;
  /** Default `expo`. */
  clonePrefix?: string;
  /** Logs last written longer ago than this many days are removed. */
  maxAgeDays: number;
  /** At most this many logs stay (the newest). */
  maxFiles: number;
  /** Build ids whose logs must stay (builds running on this worker). */
  liveBuildIds: ReadonlySet<string>;
  /** Now, in ms since the epoch. Default `Date.now()`. */
  nowMs?: number;
}

export interface PruneRunLogsReport {
  /** Files removed (names within logDir). */
  removed: string[];
  /** Files that could not be removed, with why. */
  failed: { name: string; error: Error }[];
}

const DAY_MS = 86_400_000;

/** Removes this worker's `tart run` logs beyond the age and count limits. A missing logDir is empty. */
export function pruneRunLogs(options: PruneRunLogsOptions): PruneRunLogsReport {
  const prefix = options.clonePrefix ?? 'expo';
  const now = options.nowMs ?? Date.now();
  const report: PruneRunLogsReport = { removed: [], failed: [] };
  let entries: string[];
  try {
    entries = readdirSync(options.logDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return report;
    throw err;
  }
  const kinds = { run: [] as Log[], attempt: [] as Log[] };
  for (const name of entries) {
    if (!name.endsWith('.log')) continue;
    const stem = name.slice(0, -'.log'.length);
    const clone = parseCloneName(stem, prefix, options.workerId);
    const attempt = clone === null ? /^([a-z2-7]+)-[1-9]\d*$/.exec(stem) : null;
    const buildId = clone?.buildId ?? (attempt !== null && isBuildId(attempt[1]!) ? attempt[1] : undefined);
    if (buildId === undefined || options.liveBuildIds.has(buildId)) continue;
    try {
      const st = statSync(join(options.logDir, name));
      if (st.isFile()) (clone === null ? kinds.attempt : kinds.run).push({ name, mtimeMs: st.mtimeMs });
    } catch {
      // removed meanwhile
    }
  }
  const cutoff = now - options.maxAgeDays * DAY_MS;
  for (const logs of Object.values(kinds)) prune(logs, cutoff, options, report);
  return report;
}

interface Log {
  name: string;
  mtimeMs: number;
}

function prune(logs: Log[], cutoff: number, options: PruneRunLogsOptions, report: PruneRunLogsReport): void {
  logs.sort((a, b) => b.mtimeMs - a.mtimeMs || a.name.localeCompare(b.name));
  logs.forEach((log, i) => {
    if (log.mtimeMs >= cutoff && i < options.maxFiles) return;
    try {
      rmSync(join(options.logDir, log.name), { force: true });
      report.removed.push(log.name);
    } catch (err) {
      report.failed.push({ name: log.name, error: err instanceof Error ? err : new Error(String(err)) });
    }
  });
}
