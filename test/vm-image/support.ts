/**
 * Helpers for the vm-image tests: run a script as a real bash process (in its own process group,
 * so cleanup can kill whatever it started), follow its output line by line, a scripted HTTP
 * server on 127.0.0.1, and /proc walks.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';

export const MONITOR = fileURLToPath(new URL('../../vm-image/vm-monitor.sh', import.meta.url));
export const PROVISION = fileURLToPath(new URL('../../vm-image/provision.sh', import.meta.url));

export interface Run {
  child: ChildProcess;
  pid: number;
  /** stdout and stderr lines, in arrival order, each prefixed by its stream: `out: ` / `err: `. */
  lines: string[];
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves with the first line (either stream) matching `re`, at or after line `from`. */
  waitFor: (re: RegExp, timeoutMs?: number, from?: number) => Promise<string>;
}

const running = new Set<Run>();

/** Starts `bash script args…` with `process.env` plus `env` (undefined values removed), `input` on stdin. */
export function runScript(script: string, args: readonly string[], env: Record<string, string | undefined> = {}, input?: string): Run {
  const merged: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...env })) if (v !== undefined) merged[k] = v;
  const child = spawn('bash', [script, ...args], { env: merged, detached: true, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
  if (input !== undefined) {
    child.stdin?.on('error', () => {}); // EPIPE if the script exits first
    child.stdin?.end(input);
  }
  const lines: string[] = [];
  let out = '';
  let err = '';
  const waiters = new Set<() => void>();
  const feed = (prefix: string, onText: (t: string) => void) => {
    let partial = '';
    return (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      onText(text);
      partial += text;
      const parts = partial.split('\n');
      partial = parts.pop() ?? '';
      for (const p of parts) lines.push(`${prefix}${p}`);
      for (const w of waiters) w();
    };
  };
  child.stdout?.on('data', feed('out: ', (t) => (out += t)));
  child.stderr?.on('data', feed('err: ', (t) => (err += t)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('close', (code, signal) => {
      running.delete(run);
      for (const w of waiters) w();
      resolve({ code, signal });
    });
  });
  const run: Run = {
    child,
    pid: child.pid as number,
    lines,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitFor: (re, timeoutMs = 10_000, from = 0) =>
      new Promise<string>((resolve, reject) => {
        const check = (): boolean => {
          const hit = lines.slice(from).find((l) => re.test(l));
          if (hit === undefined) return false;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(hit);
          return true;
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no line matching ${re} within ${timeoutMs} ms; got:\n${lines.join('\n')}`));
        }, timeoutMs);
        if (!check()) waiters.add(check);
      }),
  };
  running.add(run);
  return run;
}

/** Kills every script still running, with its whole process group (curl, sleep), and waits. */
export async function killAll(): Promise<void> {
  const all = [...running];
  for (const r of all) {
    try {
      process.kill(-r.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await Promise.all(all.map((r) => r.exited));
}

export interface ScriptedServer {
  url: string;
  port: number;
  requests: { method: string; url: string; headers: IncomingMessage['headers']; body: string }[];
  close: () => Promise<void>;
}

/** An HTTP server on 127.0.0.1 answering each request with what `answer` returns (status, body). */
export async function startScriptedServer(
  answer: (n: number, req: IncomingMessage, body: string) => Promise<[number, unknown]> | [number, unknown],
  port = 0,
): Promise<ScriptedServer> {
  const requests: ScriptedServer['requests'] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      void Promise.resolve(answer(requests.length, req, body)).then(([status, payload]) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(payload));
      });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const actual = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${actual}`,
    port: actual,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Every live descendant of `pid` (zombies excluded). */
export function descendants(pid: number): number[] {
  const parentOf = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const m = /^\d+ \(.*\) (\S) (\d+)/.exec(stat);
      if (m && m[1] !== 'Z') parentOf.set(Number(entry), Number(m[2]));
    } catch {
      // gone
    }
  }
  const found: number[] = [];
  let frontier = [pid];
  while (frontier.length > 0) {
    const next: number[] = [];
    for (const [child, parent] of parentOf) if (frontier.includes(parent)) next.push(child);
    found.push(...next);
    frontier = next;
  }
  return found;
}

/** A process's argv, or null once it has gone. */
export function cmdline(pid: number): string[] | null {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '');
  } catch {
    return null;
  }
}

/** A process's environment as `K=V` lines, or '' once it has gone. */
export function environ(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'utf8').replaceAll('\0', '\n');
  } catch {
    return '';
  }
}

/** True while `pid` exists and is not a zombie. */
export function alive(pid: number): boolean {
  if (!existsSync(`/proc/${pid}`)) return false;
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}
