/**
 * Runs once around the whole suite. It gives the run an id in EXPO_WORKER_TEST_RUN, which every
 * process a test starts inherits (sshd for simulated VMs, the tart simulator, controllers,
 * agents; the simulator passes it on to SSH sessions), so a survivor is found by reading /proc.
 *
 * The mark's value is `<run id>` or, inside a test file, `<run id>/<file>` (set per file by
 * `leak-check.ts`, which fails the file that leaked). At the very end this setup fails the run if
 * any process of the run is still alive, naming the file it came from when the mark says so.
 */
import { readdirSync, readFileSync } from 'node:fs';

export const TEST_MARK = 'EXPO_WORKER_TEST_RUN';

/** A live process carrying the test mark. */
export interface MarkedProcess {
  pid: number;
  ppid: number;
  /** The value of {@link TEST_MARK} in its environment. */
  mark: string;
  /** Its command line, arguments joined by spaces. */
  cmdline: string;
}

/** The mark in a process's environment as it was at exec (what /proc shows), if any. */
function markOf(environ: string): string | undefined {
  const prefix = `${TEST_MARK}=`;
  return environ
    .split('\0')
    .find((entry) => entry.startsWith(prefix))
    ?.slice(prefix.length);
}

/**
 * Live, non-zombie processes other than this one that carry the mark and satisfy `wanted`.
 * Processes of other users, or that end while we look, are skipped.
 */
export function markedProcesses(wanted: (p: MarkedProcess) => boolean): MarkedProcess[] {
  const found: MarkedProcess[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    try {
      const mark = markOf(readFileSync(`/proc/${pid}/environ`, 'utf8'));
      if (mark === undefined) continue;
      // stat is `pid (comm) state ppid …`; comm may hold spaces and parentheses.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (state === 'Z') continue; // a zombie has already exited
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
      const p = { pid, ppid: Number(ppid), mark, cmdline };
      if (wanted(p)) found.push(p);
    } catch {
      // the process ended while we looked, or is not ours to read
    }
  }
  return found;
}

/** `markedProcesses(wanted)`, polled every 100 ms until none is left or `waitMs` has passed. */
export async function survivors(wanted: (p: MarkedProcess) => boolean, waitMs: number): Promise<MarkedProcess[]> {
  const deadline = Date.now() + waitMs;
  let left = markedProcesses(wanted);
  while (left.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    left = markedProcesses(wanted);
  }
  return left;
}

/** The test file a mark names, if it names one. */
export function fileOfMark(mark: string): string | undefined {
  const slash = mark.indexOf('/');
  return slash === -1 ? undefined : mark.slice(slash + 1);
}

export default function setup(): () => Promise<void> {
  // No '/' in a run id: `<run id>/<file>` splits at the first one.
  const runId = `${process.pid}-${Date.now()}`;
  process.env[TEST_MARK] = runId;
  return async () => {
    // Up to 2 s for processes that are being torn down to finish exiting.
    // The runner's own children (pool workers, its watchdog) inherit the run's mark; a test's
    // processes are children of a worker, or orphans adopted by init.
    const ours = (p: MarkedProcess): boolean =>
      (p.mark === runId || p.mark.startsWith(`${runId}/`)) && p.ppid !== process.pid;
    const left = await survivors(ours, 2000);
    if (left.length > 0) {
      const lines = left.map((p) => `${p.pid} (${fileOfMark(p.mark) ?? 'outside any test file'}): ${p.cmdline}`);
      throw new Error(`tests left ${left.length} process(es) running:\n${lines.join('\n')}`);
    }
  };
}
