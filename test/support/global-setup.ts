/**
 * Runs once around the whole suite. At the end it fails the run if a test left a process behind:
 * every process a test starts (sshd for simulated VMs, the tart simulator, controllers, agents)
 * carries EXPO_TEST_MARK in its environment, so a survivor is found by reading /proc.
 */
import { readdirSync, readFileSync } from 'node:fs';

export const TEST_MARK = 'EXPO_WORKER_TEST_RUN';

function leftovers(runId: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    try {
      const env = readFileSync(`/proc/${pid}/environ`, 'utf8');
      if (!env.includes(`${TEST_MARK}=${runId}`)) continue;
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (/^\d+ \(.*\) Z /.test(stat)) continue; // a zombie has already exited
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
      if (cmdline.includes('vitest')) continue; // the runner's own pool and watchdog processes
      found.push(`${pid}: ${cmdline}`);
    } catch {
      // the process ended while we looked, or is not ours to read
    }
  }
  return found;
}

export default function setup(): () => Promise<void> {
  const runId = `${process.pid}-${Date.now()}`;
  process.env[TEST_MARK] = runId;
  return async () => {
    // Give processes that are being torn down a moment to finish exiting.
    let left = leftovers(runId);
    for (let i = 0; i < 20 && left.length > 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      left = leftovers(runId);
    }
    if (left.length > 0) {
      throw new Error(`tests left ${left.length} process(es) running:\n${left.join('\n')}`);
    }
  };
}
