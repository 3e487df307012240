/**
 * /proc helpers. A simulated VM is a set of real processes (its sshd, sshd's per-connection
 * children and every guest session with its descendants). Guest sessions carry an environment
 * marker (`TART_SIM_VM_TOKEN=<token>`, passed by sshd's `SetEnv`); sshd itself cannot (it
 * overwrites its environ with its process title), so its listener is recognized by its own
 * sshd_config path on the command line. Descendants of either count too.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** One live process as seen in /proc. */
export interface SimProcess {
  pid: number;
  ppid: number;
  /** /proc state letter: R, S, T (stopped), Z… */
  state: string;
  /** Start time in clock ticks since boot; with the PID it identifies a process uniquely. */
  startTime: number;
  cmdline: string;
}

interface ProcEntry extends SimProcess {
  environ: string;
}

function readStat(pid: number): Omit<SimProcess, 'cmdline'> | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm may contain spaces and parentheses; fields resume after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { pid, state: rest[0] ?? '?', ppid: Number(rest[1]), startTime: Number(rest[19]) };
  } catch {
    return undefined;
  }
}

/** The process's start time (ticks since boot), or undefined when it is gone or a zombie. */
export function processStartTime(pid: number): number | undefined {
  const s = readStat(pid);
  return s === undefined || s.state === 'Z' || s.state === 'X' ? undefined : s.startTime;
}

/** The process's command line with NULs as spaces ('' when gone). */
export function processCmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
  } catch {
    return '';
  }
}

function scan(): ProcEntry[] {
  const out: ProcEntry[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    const stat = readStat(pid);
    if (stat === undefined || stat.state === 'Z' || stat.state === 'X') continue;
    let environ: string;
    try {
      environ = readFileSync(`/proc/${pid}/environ`, 'utf8');
    } catch {
      continue; // gone, or a kernel thread
    }
    out.push({ ...stat, cmdline: processCmdline(pid), environ });
  }
  return out;
}

function hasEnv(environ: string, assignment: string): boolean {
  return environ.startsWith(`${assignment}\0`) || environ.includes(`\0${assignment}\0`) || environ === assignment;
}

/** Marked processes plus all their descendants, excluding the caller. */
function markedWithDescendants(assignment: string, cmdlineMark?: string): SimProcess[] {
  const all = scan();
  const picked = new Set<number>();
  for (const p of all) {
    if (hasEnv(p.environ, assignment) || (cmdlineMark !== undefined && p.cmdline.includes(cmdlineMark))) picked.add(p.pid);
  }
  // Fixed point over the parent links: a child of a picked process is picked.
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of all) {
      if (!picked.has(p.pid) && picked.has(p.ppid)) {
        picked.add(p.pid);
        grew = true;
      }
    }
  }
  picked.delete(process.pid);
  return all.filter((p) => picked.has(p.pid)).map(({ environ: _e, ...p }) => p);
}

/**
 * Every process of one VM run (sshd, its children, guest sessions): by the run's token, and by
 * `sshdConfig` (the VM's config path) on sshd's command line.
 */
export function findVmProcesses(token: string, sshdConfig: string): SimProcess[] {
  return markedWithDescendants(`TART_SIM_VM_TOKEN=${token}`, sshdConfig);
}

/** Every process of one simulator instance (CLI calls, supervisors, VMs), by its TART_HOME. */
export function findSimProcesses(tartHome: string): SimProcess[] {
  return markedWithDescendants(`TART_SIM_HOME=${tartHome}`, `${tartHome}/`);
}

/** Sends `signal` to each PID, ignoring processes that are already gone. */
export function killProcesses(pids: number[], signal: NodeJS.Signals = 'SIGKILL'): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

/** True while `pid` exists (and is not a zombie). */
export function isAlive(pid: number): boolean {
  return processStartTime(pid) !== undefined;
}
