/**
 * `tart run NAME` (spec §2, §4): validation → global lock → MAC check → VM lock (else "already
 * running", 2) → global lock released → start checks (injected failure; the 2-macOS-VM limit,
 * failing about a second later while holding the VM lock) → running until one of:
 *
 *   SIGINT            → `Stopping VM...`, hard stop, exit 0
 *   SIGUSR2           → `Requesting guest OS to stop...`, then the guest-stop path
 *   guest power-off   → `guest has stopped the virtual machine`, exit 0 (control file / shim)
 *   SIGUSR1           → suspend (with --suspendable) exit 0, else `Failed to suspend…` exit 1
 *   crash fault       → error, exit 1
 *   SIGTERM/HUP/KILL  → no handler: the process dies; the guest supervisor kills the VM
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { accessSync, constants, existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { err, out, sleep, type Ctx } from './context.ts';
import { TartError, usageError } from './errors.ts';
import { localVmNames, randomMac, readConfig, readSettings, touchAccess, vmDir, vmDirState, writeConfig } from './home.ts';
import { bindAddress } from './leases.ts';
import { isRunProcess, lock, tryLock, unlock, updateLock } from './locks.ts';
import { findVmProcesses, killProcesses } from './procs.ts';
import { controlFilePath, sshdConfigPath } from './guest-files.ts';
import { runHolder, runLockPath, type RunInfo, type RunNetwork } from './vm-state.ts';

const HERE = dirname(fileURLToPath(import.meta.url));

function validate(ctx: Ctx, name: string): string {
  const dir = vmDir(ctx.home, name);
  const state = vmDirState(dir);
  // Raised in the validation phase: `Error: ` prefix and exit 1, not the usual 2.
  if (state === 'missing') throw new TartError(`the specified VM "${name}" does not exist`, 1, 'prefixed');
  if (state === 'incomplete') {
    throw new TartError('VM is missing some of its files (config.json, disk.img or nvram.bin)', 1, 'prefixed');
  }
  const nets = ['net-bridged', 'net-softnet', 'net-host'].filter((n) => ctx.args.flags.has(n) || ctx.args.options.has(n));
  if (nets.length > 1) throw usageError(`--${nets.join(' and --')} are mutually exclusive`, 'run');
  // Options newer than the simulated version do not exist for its parser.
  for (const [option, since] of Object.entries(OPTION_SINCE)) {
    if (ctx.args.options.has(option) && !versionAtLeast(ctx.knobs.version, since)) throw usageError(`Unknown option '--${option}'`, 'run');
  }
  return dir;
}

/** When `tart run` learnt these options (tart release notes). */
const OPTION_SINCE: Record<string, string> = {
  'net-softnet-allow': '2.7.1',
  'net-softnet-block': '2.30.0',
};

/** `version ≥ min` for dotted versions; a dev build (`SNAPSHOT`) is newer than any release. */
function versionAtLeast(version: string, min: string): boolean {
  if (!/^\d+(\.\d+)*$/.test(version)) return true;
  const a = version.split('.').map(Number);
  const b = min.split('.').map(Number);
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d > 0;
  }
  return true;
}

const splitList = (v: string[] | undefined): string[] | undefined =>
  v === undefined ? undefined : v.flatMap((x) => x.split(',')).map((x) => x.trim()).filter((x) => x !== '');

/**
 * The network the flags ask for. `--net-softnet-allow/-block/-expose` imply `--net-softnet`
 * since 2.24 and are ignored without it before. Softnet needs the `softnet` executable on PATH:
 * tart fails building the VM's network device, before taking any lock.
 */
function network(ctx: Ctx): RunNetwork {
  const o = ctx.args.options;
  const related = o.has('net-softnet-allow') || o.has('net-softnet-block') || o.has('net-softnet-expose');
  if (ctx.args.flags.has('net-softnet') || (related && versionAtLeast(ctx.knobs.version, '2.24.0'))) {
    const onPath = (ctx.env.PATH ?? '').split(delimiter).some((d) => d !== '' && isExecutable(join(d, 'softnet')));
    if (!onPath) throw new TartError('InitializationFailed(why: "softnet not found in PATH")', 1);
    const allow = splitList(o.get('net-softnet-allow'));
    const block = splitList(o.get('net-softnet-block'));
    return { mode: 'softnet', ...(allow === undefined ? {} : { allow }), ...(block === undefined ? {} : { block }) };
  }
  if (ctx.args.flags.has('net-host')) return { mode: 'host' };
  if (o.has('net-bridged')) return { mode: 'bridged', bridged: o.get('net-bridged') ?? [] };
  return { mode: 'shared' };
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** Gives the VM a new MAC if another running VM uses its MAC (caller holds the global lock). */
function resolveMacClash(ctx: Ctx, name: string, dir: string): void {
  const config = readConfig(dir);
  const clash = localVmNames(ctx.home).some((other) => {
    if (other === name) return false;
    const otherDir = vmDir(ctx.home, other);
    return runHolder(otherDir) !== undefined && readConfig(otherDir).macAddress === config.macAddress;
  });
  if (!clash) return;
  out('There is already a running VM with the same MAC address!');
  out('Resetting VM to assign a new MAC address...');
  config.macAddress = randomMac();
  writeConfig(dir, config);
}

/** Names of other running macOS VMs that have passed their start checks. */
function otherRunningDarwin(ctx: Ctx, name: string): string[] {
  return localVmNames(ctx.home).filter((other) => {
    if (other === name) return false;
    const r = runHolder(vmDir(ctx.home, other));
    return r !== undefined && r.phase === 'started' && r.os === 'darwin';
  });
}

/** `tart run NAME [flags]`; resolves with the exit code when the VM has ended. */
export async function cmdRun(ctx: Ctx): Promise<number> {
  const name = ctx.args.positionals[0] ?? '';
  const dir = validate(ctx, name);
  const net = network(ctx);
  touchAccess(dir);
  const lockPath = runLockPath(dir);
  const globalLock = join(ctx.home.sim, 'global.lock');
  await lock(globalLock);
  let record: RunInfo;
  try {
    resolveMacClash(ctx, name, dir);
    const config = readConfig(dir);
    const ip = await bindAddress(ctx.home, config.macAddress, ctx.env);
    record = { token: randomUUID(), phase: 'starting', startedAtMs: Date.now(), ip, os: config.os, mac: config.macAddress, net };
    if (!tryLock(lockPath, { ...record }, isRunProcess)) throw new TartError(`VM "${name}" is already running!`, 2);
  } finally {
    unlock(globalLock);
  }
  const settings = readSettings(dir);
  if (settings.startFailure !== undefined) {
    await sleep(200);
    unlock(lockPath);
    throw new TartError(settings.startFailure, 1);
  }
  if (record.os === 'darwin') {
    const others = otherRunningDarwin(ctx, name);
    if (others.length >= ctx.knobs.vmLimit) {
      await sleep(ctx.knobs.limitDelayS * 1000);
      unlock(lockPath);
      throw new TartError(`The number of VMs exceeds the system limit (other running VMs: ${others.join(', ')})`, 1);
    }
  }
  updateLock(lockPath, { phase: 'started' });
  const saved = join(dir, 'state.vzvmsave');
  const suspendable = ctx.args.flags.has('suspendable') || existsSync(saved);
  if (existsSync(saved)) {
    out('restoring VM state from a snapshot...');
    out('resuming VM...');
    rmSync(saved, { force: true });
  }
  rmSync(controlFilePath(dir), { force: true });
  const guest = spawn(
    process.execPath,
    [...process.execArgv, join(HERE, 'guest-main.ts'), dir, record.token, record.ip, record.mac, String(process.pid)],
    { env: ctx.env, stdio: ['pipe', 'ignore', 'ignore'], detached: true },
  );
  return supervise(ctx, { dir, lockPath, token: record.token, guest, suspendable });
}

interface Running {
  dir: string;
  lockPath: string;
  token: string;
  guest: ChildProcess;
  suspendable: boolean;
}

/** Waits for the VM's end (signals, control file) and tears it down; resolves with the exit code. */
function supervise(ctx: Ctx, vm: Running): Promise<number> {
  return new Promise((resolve) => {
    let ending = false;
    const end = (code: number, before?: () => void): void => {
      if (ending) return;
      ending = true;
      clearInterval(poll);
      vm.guest.kill('SIGKILL');
      for (let i = 0; i < 50; i++) {
        const procs = findVmProcesses(vm.token, sshdConfigPath(vm.dir));
        if (procs.length === 0) break;
        killProcesses(procs.map((p) => p.pid), 'SIGKILL');
      }
      before?.();
      unlock(vm.lockPath);
      resolve(code);
    };
    const guestStop = (message?: string): void =>
      end(0, () => out(message === undefined ? 'guest has stopped the virtual machine' : `guest has stopped the virtual machine due to error: ${message}`));

    process.on('SIGINT', () => {
      out('Stopping VM...');
      end(0);
    });
    process.on('SIGUSR2', () => {
      out('Requesting guest OS to stop...');
      setTimeout(() => guestStop(), ctx.knobs.guestStopDelayS * 1000);
    });
    process.on('SIGUSR1', () => {
      if (!vm.suspendable) {
        out('Failed to suspend the VM: the VM was not started with --suspendable');
        end(1);
        return;
      }
      out('pausing VM to take a snapshot...');
      out('creating a snapshot...');
      end(0, () => {
        writeFileSync(join(vm.dir, 'state.vzvmsave'), 'simulated VM state\n');
        out('snapshot created successfully! shutting down the VM...');
      });
    });

    const controlFile = controlFilePath(vm.dir);
    const poll = setInterval(() => {
      let action: { action?: string; message?: string };
      try {
        action = JSON.parse(readFileSync(controlFile, 'utf8')) as typeof action;
      } catch {
        return; // no request (or half-written: read it next time)
      }
      rmSync(controlFile, { force: true });
      if (action.action === 'crash') {
        end(1, () => err('Error: Error Domain=VZErrorDomain Code=1 "The virtual machine stopped unexpectedly."'));
      } else if (action.action === 'poweroff') {
        guestStop(action.message);
      }
    }, 50);
  });
}
