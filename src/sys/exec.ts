/**
 * Running local processes, behind the `Exec` port. Always argv arrays, never a shell string, so
 * no argument is ever re-parsed by a shell.
 *
 * A child runs in its own process group (`detached`, i.e. setsid), so a timeout can kill the
 * whole tree it started: SIGTERM to the group, then SIGKILL after a grace period. Every child
 * inherits `process.env` (plus the caller's additions).
 *
 * Long-lived children (`start`, used for `tart run`) write stdout and stderr to a log file and
 * expose their end as a promise; nothing is read from them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { ExpoError } from '../protocol/errors.ts';

/** Options of one short-lived command. */
export interface ExecOptions {
  /** Extra environment variables, merged over `process.env`. Default: none. */
  env?: Readonly<Record<string, string>>;
  /** Working directory. Default: the current one. */
  cwd?: string;
  /** Kill the process group after this many milliseconds. Default: no timeout. */
  timeoutMs?: number;
  /** Milliseconds between SIGTERM and SIGKILL when killing on timeout or abort. Default 2000. */
  killGraceMs?: number;
  /** Aborting kills the process group like a timeout and rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Text written to the child's stdin, which is then closed. Default: stdin is /dev/null. */
  input?: string;
}

/** What a command that exited 0 printed. */
export interface ExecResult {
  stdout: string;
  stderr: string;
  durationMs: number;
}

/** The details every `EXEC_*` error carries. */
export interface ExecErrorDetails {
  argv: readonly string[];
  /** The exit code, or null when the process died by a signal or never started. */
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** The last {@link TAIL_BYTES} bytes of stderr. */
  stderrTail: string;
  /** The last {@link TAIL_BYTES} bytes of stdout. */
  stdoutTail: string;
  timeoutMs?: number;
  /** The OS error code of a spawn failure (`ENOENT`, `EACCES`…). */
  errno?: string;
}

/** Options of a long-lived child. */
export interface StartOptions {
  /** File receiving the child's stdout and stderr (appended). */
  logPath: string;
  /** Extra environment variables, merged over `process.env`. Default: none. */
  env?: Readonly<Record<string, string>>;
  cwd?: string;
}

/** How a child ended. */
export interface ExitStatus {
  /** The exit code, or null when it died by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A running long-lived child in its own process group. */
export interface ChildHandle {
  readonly pid: number;
  /** Resolves once the child has exited; never rejects. */
  readonly exited: Promise<ExitStatus>;
  /** The exit status once exited, else null. */
  exitStatus(): ExitStatus | null;
  /** Sends `signal` (default SIGTERM) to the child's whole process group. No-op once exited. */
  kill(signal?: NodeJS.Signals): void;
}

/** The process port. */
export interface Exec {
  /**
   * Runs argv to completion. Resolves when it exits 0; rejects with `EXEC_FAILED` (non-zero exit
   * or signal), `EXEC_TIMEOUT` (killed after `timeoutMs`) or `EXEC_SPAWN` (could not start), each
   * with {@link ExecErrorDetails}; rejects with the abort reason when `signal` aborts.
   */
  run(argv: readonly string[], options?: ExecOptions): Promise<ExecResult>;
  /** Starts a long-lived child; resolves once it has spawned, rejects with `EXEC_SPAWN`. */
  start(argv: readonly string[], options: StartOptions): Promise<ChildHandle>;
}

/** How many bytes of each stream an error keeps. */
export const TAIL_BYTES = 4096;
/** Most bytes of stdout/stderr `run` keeps in memory (16 MiB each); the rest is dropped. */
const MAX_CAPTURE_BYTES = 16 * 1024 * 1024;

const DEFAULT_KILL_GRACE_MS = 2000;

/** Keeps the whole capture up to a cap and can cut a tail. */
class Capture {
  private chunks: Buffer[] = [];
  private bytes = 0;
  add(chunk: Buffer): void {
    if (this.bytes >= MAX_CAPTURE_BYTES) return;
    this.chunks.push(chunk);
    this.bytes += chunk.length;
  }
  text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
  tail(): string {
    const all = Buffer.concat(this.chunks);
    return all.subarray(Math.max(0, all.length - TAIL_BYTES)).toString('utf8');
  }
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // ESRCH: the group is already gone
  }
}

function spawnError(argv: readonly string[], err: NodeJS.ErrnoException): ExpoError<ExecErrorDetails> {
  return new ExpoError('EXEC_SPAWN', `cannot start ${argv[0] ?? '(empty argv)'}: ${err.code ?? err.message}`, {
    cause: err,
    details: { argv, exitCode: null, signal: null, stderrTail: '', stdoutTail: '', errno: err.code ?? 'UNKNOWN' },
  });
}

function checkArgv(argv: readonly string[]): void {
  if (argv.length === 0 || argv[0] === '') throw new ExpoError('EXEC_SPAWN', 'empty argv', { details: { argv } });
}

/** The real adapter, on `node:child_process`. */
export class NodeExec implements Exec {
  run(argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    checkArgv(argv);
    const started = performance.now();
    const graceMs = options.killGraceMs ?? DEFAULT_KILL_GRACE_MS;
    return new Promise<ExecResult>((resolve, reject) => {
      if (options.signal?.aborted) {
        reject(options.signal.reason);
        return;
      }
      const child = spawn(argv[0] as string, argv.slice(1), {
        env: { ...process.env, ...options.env },
        cwd: options.cwd,
        detached: true,
        stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      });
      const out = new Capture();
      const err = new Capture();
      child.stdout?.on('data', (c: Buffer) => out.add(c));
      child.stderr?.on('data', (c: Buffer) => err.add(c));
      if (options.input !== undefined) {
        child.stdin?.on('error', () => {}); // EPIPE when the child exits without reading
        child.stdin?.end(options.input);
      }
      let ending: 'timeout' | 'abort' | null = null;
      let killTimer: NodeJS.Timeout | undefined;
      const terminate = (why: 'timeout' | 'abort'): void => {
        if (ending !== null) return;
        ending = why;
        killGroup(child, 'SIGTERM');
        killTimer = setTimeout(() => killGroup(child, 'SIGKILL'), graceMs);
      };
      const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => terminate('timeout'), options.timeoutMs);
      const onAbort = (): void => terminate('abort');
      options.signal?.addEventListener('abort', onAbort, { once: true });
      const cleanup = (): void => {
        clearTimeout(timer);
        clearTimeout(killTimer);
        options.signal?.removeEventListener('abort', onAbort);
      };
      child.on('error', (e: NodeJS.ErrnoException) => {
        cleanup();
        reject(spawnError(argv, e));
      });
      child.on('close', (code, signal) => {
        cleanup();
        // Anything the leader left in its group dies with it when we were killing anyway.
        if (ending !== null) killGroup(child, 'SIGKILL');
        const details: ExecErrorDetails = {
          argv,
          exitCode: code,
          signal,
          stderrTail: err.tail(),
          stdoutTail: out.tail(),
        };
        switch (ending) {
          case 'abort':
            reject(options.signal?.reason);
            return;
          case 'timeout':
            reject(
              new ExpoError('EXEC_TIMEOUT', `${argv.join(' ')} timed out after ${options.timeoutMs} ms and was killed`, {
                details: { ...details, timeoutMs: options.timeoutMs },
              }),
            );
            return;
          case null:
            break;
          default: {
            const never: never = ending;
            throw new Error(`unexpected ending ${String(never)}`);
          }
        }
        if (code === 0) {
          resolve({ stdout: out.text(), stderr: err.text(), durationMs: performance.now() - started });
          return;
        }
        const how = code === null ? `was killed by ${signal}` : `exited ${code}`;
        const firstLine = details.stderrTail.trim().split('\n').at(-1) ?? '';
        reject(
          new ExpoError('EXEC_FAILED', `${argv.join(' ')} ${how}${firstLine ? `: ${firstLine}` : ''}`, { details }),
        );
      });
    });
  }

  start(argv: readonly string[], options: StartOptions): Promise<ChildHandle> {
    checkArgv(argv);
    const fd = openSync(options.logPath, 'a');
    return new Promise<ChildHandle>((resolve, reject) => {
      let child: ChildProcess;
      try {
        child = spawn(argv[0] as string, argv.slice(1), {
          env: { ...process.env, ...options.env },
          cwd: options.cwd,
          detached: true,
          stdio: ['ignore', fd, fd],
        });
      } finally {
        closeSync(fd);
      }
      let status: ExitStatus | null = null;
      const exited = new Promise<ExitStatus>((res) => {
        child.on('exit', (code, signal) => {
          status = { code, signal };
          res(status);
        });
      });
      child.once('error', (e: NodeJS.ErrnoException) => reject(spawnError(argv, e)));
      child.once('spawn', () => {
        const pid = child.pid as number;
        resolve({
          pid,
          exited,
          exitStatus: () => status,
          kill: (signal: NodeJS.Signals = 'SIGTERM') => {
            if (status === null) killGroup(child, signal);
          },
        });
      });
    });
  }
}
