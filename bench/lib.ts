/**
 * Shared by the benchmarks: start a process and find its port, sample its CPU and memory from
 * /proc, drive HTTP load with undici, keep the server and the load generator on separate cores,
 * summarise interleaved rounds, and print a table. Benchmarks compare against a baseline
 * measured in the same run on the same machine, round by round; they never assert on time.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { createInterface } from 'node:readline';
import { Pool } from 'undici';

/** Shorter measurements (not fewer rounds). */
export const QUICK = process.env.BENCH_QUICK === '1';
/** How many rounds every bench interleaves its baseline and subjects for: BENCH_ROUNDS, at least 3. */
export const ROUNDS = Math.max(3, Number(process.env.BENCH_ROUNDS ?? 3) || 3);

/** The cores this run may use (before any pinning narrows this process to some of them). */
export const CORES = availableParallelism();

/** The 1-minute load average now, as printed beside each round. */
export const load1 = (): number => loadavg()[0]!;

/**
 * Where the benchmark's servers and its load generator (this process) run. With two or more
 * cores and util-linux `taskset`, the CPUs this process may use are split in two: servers get the
 * first half, this process (all its threads) the second, so a server never competes with the
 * load generator for its core (other work on the machine still can). BENCH_PIN=0 turns it off.
 */
export interface Placement {
  pinned: boolean;
  /** CPU list for servers (`taskset -c`), when pinned. */
  serverCpus: string;
  /** CPU list of this process, when pinned. */
  loadCpus: string;
  /** One line for the report. */
  note: string;
}

function hasTaskset(): boolean {
  try {
    execFileSync('taskset', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** The CPUs this process may run on, from `taskset -c -p` ("…affinity list: 0-3,6"). */
function allowedCpus(): number[] {
  const out = execFileSync('taskset', ['-c', '-p', String(process.pid)], { encoding: 'utf8' });
  const list = out.slice(out.lastIndexOf(':') + 1).trim();
  return list.split(',').flatMap((part) => {
    const [a, b] = part.split('-').map(Number);
    return b === undefined ? [a!] : Array.from({ length: b - a! + 1 }, (_, i) => a! + i);
  });
}

function decidePlacement(): Placement {
  const off = (why: string): Placement => ({ pinned: false, serverCpus: '', loadCpus: '', note: `not pinned (${why})` });
  if (process.env.BENCH_PIN === '0') return off('BENCH_PIN=0');
  if (CORES < 2) return off('one core');
  if (!hasTaskset()) return off('util-linux taskset not found');
  const cpus = allowedCpus();
  if (cpus.length < 2) return off('one core allowed');
  const half = Math.floor(cpus.length / 2);
  const serverCpus = cpus.slice(0, half).join(',');
  const loadCpus = cpus.slice(half).join(',');
  try {
    execFileSync('taskset', ['-a', '-c', '-p', loadCpus, String(process.pid)], { stdio: 'ignore' });
  } catch (err) {
    return off(`taskset failed: ${(err as Error).message.split('\n')[0]}`);
  }
  return { pinned: true, serverCpus, loadCpus, note: `pinned apart with taskset: servers on CPU ${serverCpus}, load generator on CPU ${loadCpus}` };
}

/**
 * Where servers and this process run: not pinned until `pinApart()` (the controller benches call
 * it once at start; the agent bench does not, its farm has no load generator to keep apart).
 */
export const placement: Placement = { pinned: false, serverCpus: '', loadCpus: '', note: 'not pinned' };

/** Decides the placement and pins this process (all its threads) to the load generator's CPUs. */
export function pinApart(): Placement {
  Object.assign(placement, decidePlacement());
  return placement;
}

/** `node args…` as a server: on the servers' CPUs when pinned. */
export function spawnServer(args: string[], stdio: 'ignore' | ['ignore', 'pipe', 'inherit']): ChildProcess {
  return placement.pinned
    ? spawn('taskset', ['-c', placement.serverCpus, process.execPath, ...args], { stdio })
    : spawn(process.execPath, args, { stdio });
}

/**
 * Runs `start` (which spawns a server through code that is not ours, e.g. PostgreSQL's pg_ctl)
 * with this process on the servers' CPUs, so that what it spawns inherits them; then moves this
 * process back to the load generator's CPUs.
 */
export async function asServer<T>(start: () => Promise<T>): Promise<T> {
  if (!placement.pinned) return start();
  execFileSync('taskset', ['-a', '-c', '-p', placement.serverCpus, String(process.pid)], { stdio: 'ignore' });
  try {
    return await start();
  } finally {
    execFileSync('taskset', ['-a', '-c', '-p', placement.loadCpus, String(process.pid)], { stdio: 'ignore' });
  }
}

/** The CPU a process last ran on: field 39 (`processor`) of /proc/<pid>/stat. */
function lastCpu(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[36]);
}

/**
 * When not pinned: samples, every 10 ms while a measurement runs, the CPU the server and this
 * process last ran on; `stop()` answers how many samples found them on the same core. When pinned
 * it does nothing (the kernel keeps them apart) and answers no samples.
 */
export function watchCores(serverPid: number): { stop: () => { samples: number; shared: number } } {
  if (placement.pinned) return { stop: () => ({ samples: 0, shared: 0 }) };
  let samples = 0;
  let shared = 0;
  const timer = setInterval(() => {
    try {
      samples++;
      if (lastCpu(serverPid) === lastCpu(process.pid)) shared++;
    } catch {
      samples--; // the server is gone
    }
  }, 10);
  return {
    stop: () => {
      clearInterval(timer);
      return { samples, shared };
    },
  };
}

/** Adds up core samples over a bench and says whether server and load generator shared a core. */
export class CoreReport {
  private samples = 0;
  private shared = 0;
  add(s: { samples: number; shared: number }): void {
    this.samples += s.samples;
    this.shared += s.shared;
  }
  line(): string {
    const sampled = this.samples === 0 ? '' : `; /proc/<pid>/stat \`processor\` sampled every 10 ms: same core in ${this.shared} of ${this.samples} samples (${((this.shared / this.samples) * 100).toFixed(0)} %)`;
    return `Server and load generator: ${placement.note}${sampled}.`;
  }
}

/** The median of `xs` (not sorted in place). */
export function median(xs: number[]): number {
  return percentile([...xs].sort((a, b) => a - b), 50);
}

/** `median (min–max)` with `digits` decimals: how every per-round figure is shown. */
export function spread(all: number[], digits = 2): string {
  // A round with no samples of a kind (NaN) is left out and said so.
  const xs = all.filter((x) => Number.isFinite(x));
  const none = all.length - xs.length;
  if (xs.length === 0) return all.length === 0 ? '' : 'none';
  const f = (x: number) => x.toFixed(digits);
  return `${f(median(xs))} (${f(Math.min(...xs))}–${f(Math.max(...xs))})${none > 0 ? `, none in ${none} round${none > 1 ? 's' : ''}` : ''}`;
}

/** "met in k of n rounds" for a per-round goal. */
export function verdict(oks: boolean[]): string {
  const k = oks.filter(Boolean).length;
  const n = oks.length;
  return k === n ? `met in all ${n} rounds` : k === 0 ? `not met in any of ${n} rounds` : `met in ${k} of ${n} rounds`;
}

/** The load average at each round, for the line under a table. */
export const loadLine = (loads: number[]): string => `Load average (1 min) at each round: ${loads.map((l) => l.toFixed(2)).join(', ')}.`;

export interface Started {
  proc: ChildProcess;
  url: string;
  stop: () => Promise<void>;
}

/** Spawns `node args…` (on the servers' CPUs when pinned) and waits for a stdout line matching `ready` whose first group is the URL. */
export async function startProcess(args: string[], ready: RegExp): Promise<Started> {
  const proc = spawnServer(args, ['ignore', 'pipe', 'inherit']);
  const url = await new Promise<string>((resolve, reject) => {
    proc.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}`)));
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      const m = ready.exec(line);
      if (m) resolve(m[1]!);
    });
  });
  return {
    proc,
    url,
    stop: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      await once(proc, 'exit');
    },
  };
}

/** CPU seconds (user + system) and resident memory of a process, from /proc. */
export function sampleProcess(pid: number): { cpuS: number; rssBytes: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  const rssPages = Number(fields[21]);
  return { cpuS: ticks / 100, rssBytes: rssPages * 4096 };
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Sends `body()` to `path` over `connections` keep-alive connections for `durationMs`; returns requests/s and latencies. */
export async function hammer(o: {
  url: string;
  /** The next request to send: path, extra headers and JSON body. */
  next: () => { path: string; headers: Record<string, string>; body: string };
  connections: number;
  durationMs: number;
}): Promise<{ rps: number; requests: number; p50Ms: number; p99Ms: number; errors: number }> {
  const pool = new Pool(o.url, { connections: o.connections, pipelining: 1 });
  const latencies: number[] = [];
  let errors = 0;
  const end = performance.now() + o.durationMs;
  const worker = async () => {
    while (performance.now() < end) {
      const t = performance.now();
      const { path, headers, body } = o.next();
      try {
        const res = await pool.request({ method: 'POST', path, headers: { 'content-type': 'application/json', ...headers }, body });
        await res.body.dump();
        if (res.statusCode >= 300) errors++;
      } catch {
        errors++;
      }
      latencies.push(performance.now() - t);
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: o.connections }, worker));
  const elapsedS = (performance.now() - started) / 1000;
  await pool.close();
  latencies.sort((a, b) => a - b);
  return { rps: latencies.length / elapsedS, requests: latencies.length, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99), errors };
}

export function table(title: string, rows: Record<string, string | number>[]): string {
  const cols = Object.keys(rows[0] ?? {});
  const cell = (v: string | number) => (typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(2)) : v);
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]!).length)));
  const line = (vals: string[]) => `| ${vals.map((v, i) => v.padEnd(widths[i]!)).join(' | ')} |`;
  return [
    `### ${title}`,
    '',
    line(cols),
    `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`,
    ...rows.map((r) => line(cols.map((c) => cell(r[c]!)))),
    '',
  ].join('\n');
}

export const CLI = new URL('../dist/src/cli.js', import.meta.url).pathname;
export const LISTENING = /controller listening on (http:\/\/[^"\s]+)/;
