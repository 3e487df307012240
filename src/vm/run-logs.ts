/**
 * Retention of the `tart run` logs the agent keeps in its log directory, one per clone
 * (`<prefix>-<workerId>-<buildId>-<attempt>.log`, see {@link EphemeralVm}).
 *
 * A clone released after a good build takes its log with it (`release({ removeLog: true })`);
 * the logs of failed, aborted or crashed VMs stay for diagnosis. This prune bounds them: a log
 * older than `maxAgeDays` goes, and of the rest only the newest `maxFiles` stay. Only this
 * worker's clone logs are touched (other files in the directory, such as the attempt logs and
 * the agent's own, never are), and never the log of a build still running here.
 */
import { readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
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
  const logs: { name: string; mtimeMs: number }[] = [];
  for (const name of entries) {
    if (!name.endsWith('.log')) continue;
    const parts = parseCloneName(name.slice(0, -'.log'.length), prefix, options.workerId);
    if (parts === null || options.liveBuildIds.has(parts.buildId)) continue;
    try {
      const st = statSync(join(options.logDir, name));
      if (st.isFile()) logs.push({ name, mtimeMs: st.mtimeMs });
    } catch {
      // removed meanwhile
    }
  }
  logs.sort((a, b) => b.mtimeMs - a.mtimeMs || a.name.localeCompare(b.name));
  const cutoff = now - options.maxAgeDays * DAY_MS;
  logs.forEach((log, i) => {
    if (log.mtimeMs >= cutoff && i < options.maxFiles) return;
    try {
      rmSync(join(options.logDir, log.name), { force: true });
      report.removed.push(log.name);
    } catch (err) {
      report.failed.push({ name: log.name, error: err instanceof Error ? err : new Error(String(err)) });
    }
  });
  return report;
}
