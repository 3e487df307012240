/**
 * The `VmDriver` adapter for the tart CLI: argv exec of `tart`, every call with a timeout (a
 * hung tart call is killed with its process group and reported as `VM_TIMEOUT`), every failure
 * classified (`tart-errors.ts`).
 *
 * Finding tart: an explicit `tartPath` wins; otherwise the first `tart` on PATH, then
 * `/opt/homebrew/bin/tart` and `/usr/local/bin/tart` — a LaunchDaemon's PATH is only
 * `/usr/bin:/bin:/usr/sbin:/sbin`, where Homebrew's tart is not.
 */
import { accessSync, constants, openSync, readSync, closeSync, fstatSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { ExpoError } from '../protocol/errors.ts';
import type { Exec } from '../sys/exec.ts';
import { runExitError, tartError } from './tart-errors.ts';
import { parseTartGet, parseTartList } from './tart-output.ts';
import type { IpResolver, VmDetails, VmDirShare, VmDriver, VmExit, VmInfo, VmNetwork, VmRunHandle } from './vm-driver.ts';

/** Where tart lives when PATH does not say (Homebrew on Apple Silicon, then Intel/manual). */
export const TART_FALLBACK_PATHS = ['/opt/homebrew/bin/tart', '/usr/local/bin/tart'] as const;

export interface TartCliOptions {
  exec: Exec;
  /** The tart executable: a path, or a name looked up on PATH. Default: found as described above. */
  tartPath?: string;
  /** `TART_HOME` for every call. Default: tart's own (`~/.tart`). */
  tartHome?: string;
  /** Timeout of a quick call (list, get, set, delete, --version), in ms. Default 30000. */
  callTimeoutMs?: number;
  /** Timeout of `clone` (an OCI source may be pulled), in ms. Default 1800000 (30 min). */
  cloneTimeoutMs?: number;
  /** Extra time allowed beyond `--wait`/`--timeout` for ip and stop, in ms. Default 15000. */
  graceMs?: number;
  /** The PATH to search. Default `process.env.PATH`. */
  searchPath?: string;
  /** More environment for every tart call (e.g. `TART_NO_AUTO_PRUNE`). Default: none. */
  env?: Readonly<Record<string, string>>;
}

const LOG_TAIL_BYTES = 4096;

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function readTail(path: string): string {
  try {
    const fd = openSync(path, 'r');
    try {
      const size = fstatSync(fd).size;
      const len = Math.min(size, LOG_TAIL_BYTES);
      const buf = Buffer.alloc(len);
      readSync(fd, buf, 0, len, size - len);
      return buf.toString('utf8');
    } finally {
      closeSync(fd);
    }
  } catch {
    return '';
  }
}

/** `tart run`'s network flags (specs/tart-cli.md §2 `tart run`): none for tart's shared NAT. */
export function networkArgs(network: VmNetwork | undefined): string[] {
  if (network === undefined || network.isolation === 'shared') return [];
  // Always --net-softnet itself: tart < 2.24 ignores --net-softnet-allow without it.
  return network.allow.length === 0 ? ['--net-softnet'] : ['--net-softnet', '--net-softnet-allow', network.allow.join(',')];
}

/** `tart run`'s `--dir=NAME:PATH[:ro]` flags, one per share. */
export function dirArgs(dirs: readonly VmDirShare[] | undefined): string[] {
  return (dirs ?? []).map((d) => `--dir=${d.name}:${d.path}${d.readOnly === true ? ':ro' : ''}`);
}

export class TartCli implements VmDriver {
  private readonly exec: Exec;
  private readonly options: TartCliOptions;
  private resolved: string | undefined;

  constructor(options: TartCliOptions) {
    this.exec = options.exec;
    this.options = options;
  }

  /** The tart executable used, or `VM_TART_NOT_FOUND` naming every place looked at. */
  tartExecutable(): string {
    if (this.resolved !== undefined) return this.resolved;
    const explicit = this.options.tartPath;
    const searched: string[] = [];
    if (explicit !== undefined && explicit.includes('/')) {
      if (isExecutable(explicit)) return (this.resolved = explicit);
      searched.push(explicit);
    } else {
      const name = explicit ?? 'tart';
      const dirs = (this.options.searchPath ?? process.env.PATH ?? '').split(delimiter).filter((d) => d !== '');
      const candidates = [...dirs.map((d) => join(d, name)), ...(name === 'tart' ? TART_FALLBACK_PATHS : [])];
      for (const c of candidates) {
        if (isExecutable(c)) return (this.resolved = c);
        searched.push(c);
      }
    }
    throw new ExpoError('VM_TART_NOT_FOUND', `tart not found (looked at ${searched.join(', ')}); install it or set tartPath`, {
      details: { searched },
    });
  }

  private env(extra: Record<string, string> = {}): Record<string, string> {
    const home: Record<string, string> = this.options.tartHome === undefined ? {} : { TART_HOME: this.options.tartHome };
    return { ...this.options.env, ...home, ...extra };
  }

  private async tart(
    args: readonly string[],
    opts: { timeoutMs?: number; env?: Record<string, string>; signal?: AbortSignal } = {},
  ): Promise<string> {
    const argv = [this.tartExecutable(), ...args];
    try {
      const { stdout } = await this.exec.run(argv, {
        env: this.env(opts.env),
        timeoutMs: opts.timeoutMs ?? this.options.callTimeoutMs ?? 30_000,
        signal: opts.signal,
      });
      return stdout;
    } catch (err) {
      throw tartError(err, argv);
    }
  }

  private get graceMs(): number {
    return this.options.graceMs ?? 15_000;
  }

  async version(): Promise<string> {
    return (await this.tart(['--version'])).trim();
  }

  async list(): Promise<VmInfo[]> {
    return parseTartList(await this.tart(['list', '--format', 'json']));
  }

  async get(name: string): Promise<VmDetails> {
    return parseTartGet(await this.tart(['get', name, '--format', 'json']));
  }

  async clone(source: string, name: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    // CI=1: plain progress lines instead of ANSI redraws (docs/tart.md §1).
    await this.tart(['clone', source, name], {
      env: { CI: '1' },
      timeoutMs: this.options.cloneTimeoutMs ?? 1_800_000,
      signal: options.signal,
    });
  }

  async setRandomMac(name: string): Promise<void> {
    await this.tart(['set', name, '--random-mac']);
  }

  async run(name: string, options: { logPath: string; network?: VmNetwork; dirs?: readonly VmDirShare[] }): Promise<VmRunHandle> {
    const argv = [this.tartExecutable(), 'run', name, '--no-graphics', ...networkArgs(options.network), ...dirArgs(options.dirs)];
    let child;
    try {
      child = await this.exec.start(argv, { logPath: options.logPath, env: this.env() });
    } catch (err) {
      throw tartError(err, argv);
    }
    const exited: Promise<VmExit> = child.exited.then(({ code, signal }) => {
      const logTail = readTail(options.logPath);
      return { code, signal, logTail, error: runExitError(name, argv, code, signal, logTail) };
    });
    return {
      pid: child.pid,
      logPath: options.logPath,
      exited,
      isRunning: () => child.exitStatus() === null,
      kill: (signal) => child.kill(signal),
    };
  }

  async ip(name: string, options: { waitS: number; resolver?: IpResolver; signal?: AbortSignal }): Promise<string> {
    const args = ['ip', name, '--wait', String(Math.max(0, Math.ceil(options.waitS)))];
    if (options.resolver !== undefined) args.push('--resolver', options.resolver);
    const out = await this.tart(args, { timeoutMs: options.waitS * 1000 + this.graceMs, signal: options.signal });
    const ip = out.trim().split('\n')[0]?.trim() ?? '';
    if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(ip)) {
      throw new ExpoError('VM_NO_IP', `tart ip ${name} printed no IPv4 address: ${JSON.stringify(out.slice(0, 100))}`, {
        details: { argv: [this.tartExecutable(), ...args], exitCode: 0, signal: null, stderrTail: '', stdoutTail: out },
      });
    }
    return ip;
  }

  async stop(name: string, options: { timeoutS: number }): Promise<void> {
    const timeoutS = Math.max(0, Math.ceil(options.timeoutS));
    await this.tart(['stop', name, '--timeout', String(timeoutS)], { timeoutMs: timeoutS * 1000 + this.graceMs });
  }

  async delete(name: string): Promise<void> {
    await this.tart(['delete', name]);
  }
}
