/**
 * Test harness for the tart simulator (`test/tart-sim/`): one harness = one private TART_HOME in a
 * fresh temp dir, one SSH key pair, one loopback /24 (`127.64.N.0`) claimed for its VMs' sshd so
 * that test files running in parallel never collide on `127.64.N.x:22`.
 *
 * Typical use:
 * ```ts
 * const sim = await createTartSim({ bootDelayS: 0.2 });
 * afterAll(() => sim.cleanup());
 * await sim.createBaseVm('base');
 * // drive `sim.tartPath` with `sim.env`; SSH as `sim.user` with `sim.sshKeyPath`.
 * ```
 *
 * The SSH login user of every simulated VM is the user running the tests (`sim.user`, root in CI),
 * not tart's usual `admin`: the VMs are sshd processes on this host.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { claimSubnet, type SubnetClaim } from './tart-sim-subnet.ts';
import { findSimProcesses, killProcesses, type SimProcess } from '../tart-sim/procs.ts';

export type { SimProcess } from '../tart-sim/procs.ts';

/** Absolute path of the simulator executable. */
export const TART_SIM_PATH = join(dirname(fileURLToPath(import.meta.url)), '..', 'tart-sim', 'tart');

/** Options of {@link createTartSim}; every timing is in seconds and may be fractional. */
export interface TartSimOptions {
  /** Delay from `tart run` until `tart ip` answers (the DHCP lease appears) and sshd accepts. Default 0.2 s. */
  bootDelayS?: number;
  /** Delay before the 2-VM-limit failure of a 3rd macOS VM. Default 0.2 s (real tart: ~1 s). */
  limitDelayS?: number;
  /** Shuffle `--format json` key order on every call. Default false. */
  shuffleKeys?: boolean;
  /** More environment for every simulator process (e.g. other `TART_SIM_*` knobs). */
  extraEnv?: Record<string, string>;
}

/** Options of {@link TartSim.createBaseVm}. */
export interface BaseVmOptions {
  /** Guest OS; only `darwin` VMs count toward the 2-running-VMs limit. Default `darwin`. */
  os?: 'darwin' | 'linux';
  /** Disk size in GB (disk.img is sparse; `df` in the guest reports this total). Default 50. */
  diskSizeGb?: number;
  /** Free space `df` reports in the guest, GB. Default 60 % of the disk. */
  diskFreeGb?: number;
  /** Default 4 (also the minimum `tart set --cpu` accepts). */
  cpuCount?: number;
  /** Default 8192 MiB (also the minimum `tart set --memory` accepts). */
  memoryMb?: number;
  /** Put the harness's public key in the VM's authorized_keys (clones inherit it). Default true. */
  authorizeKey?: boolean;
}

/**
 * Fault kinds of `tart sim <kind> NAME [args]`; see test/tart-sim/README.md for each one's
 * semantics. Runtime faults (`freeze`, `crash`) need a running VM; the others
 * are stored in the VM dir and inherited by clones, so they can be set on a base VM.
 */
export type TartSimFault =
  | 'freeze'
  | 'crash'
  | 'no-ip'
  | 'stale-ip'
  | 'ssh-down'
  | 'slow-boot'
  | 'disk'
  | 'start-fail'
  | 'clear'
  | 'rekey';

/** Outcome of one finished simulator call. */
export interface TartResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A `tart run` started by {@link TartSim.startRun}. */
export interface TartRun {
  readonly child: ChildProcess;
  /** Resolves when the run process has exited. */
  readonly exited: Promise<TartResult>;
  /** Output so far. */
  output(): { stdout: string; stderr: string };
}

/** A simulator instance; see {@link createTartSim}. */
export interface TartSim {
  /** The `tart` executable to drive. */
  readonly tartPath: string;
  /** The private TART_HOME (inside {@link TartSim.dir}). */
  readonly tartHome: string;
  /** The harness's temp dir; removed by cleanup. */
  readonly dir: string;
  /** Environment to run `tartPath` with: process.env + TART_HOME + the knobs. */
  readonly env: NodeJS.ProcessEnv;
  /** SSH login user of every VM (the user running the tests). */
  readonly user: string;
  /** Private ed25519 key authorized in VMs made by createBaseVm (and in their clones). */
  readonly sshKeyPath: string;
  /** Runs `tart ...args` to completion (killed after timeoutMs, default 30 s). */
  tart(args: string[], opts?: { timeoutMs?: number }): Promise<TartResult>;
  /** Starts `tart run NAME --no-graphics ...extraArgs` as a tracked child (killed by cleanup). */
  startRun(name: string, extraArgs?: string[]): TartRun;
  /** Creates a stopped local VM (like a pulled, provisioned snapshot). */
  createBaseVm(name: string, opts?: BaseVmOptions): Promise<void>;
  /** Injects a fault into VM `name`: `tart sim <kind> <name> ...args`; throws if it fails. */
  fault(name: string, kind: TartSimFault, ...args: string[]): Promise<void>;
  /** Makes the given tart subcommands (e.g. `['ip']`) hang forever; `[]` undoes it. */
  hang(commands: string[]): Promise<void>;
  /** `ssh` argv (without the remote command) to log into a VM at `ip` non-interactively. */
  sshArgs(ip: string, extraOptions?: string[]): string[];
  /** Every live process of this simulator: tart commands, supervisors, sshd, guest sessions. */
  listProcesses(): SimProcess[];
  /**
   * Stops every VM, kills whatever survives, removes the temp dir and releases the subnet.
   * Throws (after cleaning up) if a simulator process outlived its VM. Idempotent.
   */
  cleanup(): Promise<void>;
}

function run(file: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs = 30_000): Promise<TartResult> {
  return new Promise((resolve) => {
    execFile(file, args, { env, timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const e = err as (Error & { code?: unknown; signal?: NodeJS.Signals | null }) | null;
      resolve({
        code: e === null ? 0 : typeof e.code === 'number' ? e.code : null,
        signal: e?.signal ?? null,
        stdout,
        stderr,
      });
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Creates a simulator with its own TART_HOME, key pair and loopback subnet. */
export async function createTartSim(options: TartSimOptions = {}): Promise<TartSim> {
  const dir = mkdtempSync(join(tmpdir(), 'tart-sim-'));
  const tartHome = join(dir, 'tart-home');
  const sshKeyPath = join(dir, 'id_ed25519');
  let subnet: SubnetClaim | undefined;
  const runs = new Set<TartRun>();
  try {
    subnet = claimSubnet();
    const keygen = await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'tart-sim', '-f', sshKeyPath], process.env);
    if (keygen.code !== 0) throw new Error(`ssh-keygen failed: ${keygen.stderr}`);
  } catch (err) {
    subnet?.release();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TART_HOME: tartHome,
    // Marks every simulator process, so listProcesses() and cleanup() can find survivors.
    TART_SIM_HOME: tartHome,
    TART_SIM_SUBNET: subnet.prefix,
    TART_SIM_BOOT_DELAY_S: String(options.bootDelayS ?? 0.2),
    TART_SIM_LIMIT_DELAY_S: String(options.limitDelayS ?? 0.2),
    TART_SIM_SHUFFLE_KEYS: options.shuffleKeys === true ? '1' : '0',
    ...options.extraEnv,
  };
  let cleaned = false;

  const sim: TartSim = {
    tartPath: TART_SIM_PATH,
    tartHome,
    dir,
    env,
    user: userInfo().username,
    sshKeyPath,
    tart: (args, opts) => run(TART_SIM_PATH, args, env, opts?.timeoutMs),
    startRun(name, extraArgs = []) {
      const child = spawn(TART_SIM_PATH, ['run', name, '--no-graphics', ...extraArgs], {
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<TartResult>((resolve) => {
        child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
      });
      const handle: TartRun = { child, exited, output: () => ({ stdout, stderr }) };
      runs.add(handle);
      void exited.then(() => runs.delete(handle));
      return handle;
    },
    async createBaseVm(name, opts = {}) {
      const args = ['sim', 'create', name, '--os', opts.os ?? 'darwin'];
      args.push('--disk-size', String(opts.diskSizeGb ?? 50));
      if (opts.diskFreeGb !== undefined) args.push('--disk-free', String(opts.diskFreeGb));
      args.push('--cpu', String(opts.cpuCount ?? 4), '--memory', String(opts.memoryMb ?? 8192));
      if (opts.authorizeKey !== false) args.push('--authorize', `${sshKeyPath}.pub`);
      await expectOk(sim.tart(args), args);
    },
    async fault(name, kind, ...args) {
      const argv = ['sim', kind, name, ...args];
      await expectOk(sim.tart(argv), argv);
    },
    async hang(commands) {
      const argv = ['sim', 'hang', ...(commands.length > 0 ? commands : ['--none'])];
      await expectOk(sim.tart(argv), argv);
    },
    sshArgs(ip, extraOptions = []) {
      return [
        '-i', sshKeyPath,
        '-o', 'StrictHostKeyChecking=no',
        '-o', 'UserKnownHostsFile=/dev/null',
        '-o', 'BatchMode=yes',
        '-o', 'LogLevel=ERROR',
        '-o', 'ConnectTimeout=5',
        ...extraOptions.flatMap((o) => ['-o', o]),
        `${sim.user}@${ip}`,
      ];
    },
    listProcesses: () => findSimProcesses(tartHome),
    async cleanup() {
      if (cleaned) return;
      cleaned = true;
      try {
        await stopAll(sim, runs);
        let left = findSimProcesses(tartHome);
        // A stopped run's Node process and its guest take a moment to exit, longer on a busy
        // machine: 10 s before anything still there counts as a leak.
        for (let i = 0; i < 100 && left.length > 0; i++) {
          await sleep(100);
          left = findSimProcesses(tartHome);
        }
        if (left.length > 0) {
          killProcesses(left.map((p) => p.pid));
          throw new Error(`tart-sim: processes outlived their VMs:\n${left.map((p) => `${p.pid} ${p.cmdline}`).join('\n')}`);
        }
      } finally {
        subnet.release();
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
  // The key file is only needed by ssh; keep a note beside it for humans poking at a kept dir.
  writeFileSync(join(dir, 'README'), `TART_HOME=${tartHome}\nssh -i ${sshKeyPath} ${sim.user}@<ip>\n`);
  return sim;
}

async function expectOk(result: Promise<TartResult>, argv: string[]): Promise<void> {
  const r = await result;
  if (r.code !== 0) throw new Error(`tart ${argv.join(' ')} failed (${r.code ?? r.signal}): ${r.stderr}${r.stdout}`);
}

/** Stops every running VM: `tart stop` for locked VMs, then kills tracked run children. */
async function stopAll(sim: TartSim, runs: Set<TartRun>): Promise<void> {
  // Cleanup must work even while a test made tart subcommands hang.
  const env = { ...sim.env, TART_SIM_NO_HANG: '1' };
  const list = await run(sim.tartPath, ['list', '--format', 'json', '--source', 'local'], env, 10_000);
  if (list.code === 0) {
    const vms = JSON.parse(list.stdout) as Array<{ Name: string; State: string }>;
    await Promise.all(
      vms
        .filter((vm) => vm.State === 'running')
        .map((vm) => run(sim.tartPath, ['stop', vm.Name, '--timeout', '2'], env, 10_000)),
    );
  }
  for (const r of runs) r.child.kill('SIGKILL');
  await Promise.all([...runs].map((r) => r.exited));
}
