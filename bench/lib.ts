/**
 * Shared by the benchmarks: start a process and find its port, sample its CPU and memory from
 * /proc, drive HTTP load with undici, and print a table. Benchmarks compare against a baseline
 * measured in the same run on the same machine; they never assert on time.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { Pool } from 'undici';

export interface Started {
  proc: ChildProcess;
  url: string;
  stop: () => Promise<void>;
}

/** Spawns `node args…` and waits for a stdout line matching `ready` whose first group is the URL. */
export async function startProcess(args: string[], ready: RegExp): Promise<Started> {
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
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
}): Promise<{ rps: number; p50Ms: number; p99Ms: number; errors: number }> {
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
  return { rps: latencies.length / elapsedS, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99), errors };
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
