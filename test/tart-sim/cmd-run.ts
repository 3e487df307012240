/**
 * `tart run NAME` (spec §2, §4). Its states:
 *
 *   starting  validation → global lock → VM lock taken (`tart list` says running from here) →
 *             global lock released → start checks: an injected start failure (exit 1), the
 *             2-macOS-VM limit (exit 1 about a second later, holding the VM lock meanwhile)
 *   running   phase `started` in the lock; a detached supervisor (guest-main.ts) boots the guest
 *   ended     by one of
 *     SIGINT            → `Stopping VM...`, hard stop, exit 0 (from `starting` too: no guest yet)
 *     SIGUSR2           → the crash fault (`tart sim crash`): kills the VM, a VZErrorDomain
 *                         error, exit 1. Real tart's SIGUSR2 (ask the guest to stop) is not simulated.
 *     SIGTERM/HUP/KILL  → no handler: the process dies; the supervisor kills the VM
 *
 * The SIGINT and SIGUSR2 handlers are installed before the VM lock is taken: `tart stop` sends
 * SIGINT as soon as the VM reads running, and Node's default action would end the process by
 * the signal instead of `Stopping VM...` and exit 0.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { err, out, sleep, type Ctx } from './context.ts';
import { TartError } from './errors.ts';
import { localVmNames, readConfig, readSettings, touchAccess, vmDir, vmDirState } from './home.ts';
import { MACOS_VM_LIMIT } from './knobs.ts';
import { bindAddress } from './leases.ts';
import { isRunProcess, lock, tryLock, unlock, updateLock } from './locks.ts';
import { runNetwork } from './network.ts';
import { linkShares, runShares } from './shares.ts';
import { findVmProcesses, killProcesses } from './procs.ts';
import { sshdConfigPath } from './guest-files.ts';
import { runHolder, runLockPath, type RunInfo } from './vm-state.ts';

const HERE = dirname(fileURLToPath(import.meta.url));

/** Why a run ends before its guest does. */
type EndRequest = 'stop' | 'crash';

/** SIGINT and SIGUSR2, remembered from the moment they are listened to. */
class EndSignals {
  requested: EndRequest | undefined;
  /** Resolves with the first request. */
  readonly next: Promise<EndRequest>;

  constructor() {
    let resolve: (r: EndRequest) => void = () => undefined;
    this.next = new Promise((r) => (resolve = r));
    const request = (r: EndRequest): void => {
      this.requested ??= r;
      resolve(this.requested);
    };
    process.on('SIGINT', () => request('stop'));
    process.on('SIGUSR2', () => request('crash'));
  }

  /** Sleeps `ms` unless an end is requested first. */
  async sleep(ms: number): Promise<void> {
    await Promise.race([sleep(ms), this.next]);
  }
}

/** Ends a run on request: prints what tart prints around `teardown` and gives the exit code. */
function endOnRequest(request: EndRequest, teardown: () => void): number {
  if (request === 'stop') {
    out('Stopping VM...');
    teardown();
    return 0;
  }
  teardown();
  err('Error: Error Domain=VZErrorDomain Code=1 "The virtual machine stopped unexpectedly."');
  return 1;
}

function validate(ctx: Ctx, name: string): string {
  const dir = vmDir(ctx.home, name);
  const state = vmDirState(dir);
  // Raised in the validation phase: `Error: ` prefix and exit 1, not the usual 2.
  if (state === 'missing') throw new TartError(`the specified VM "${name}" does not exist`, 1, 'prefixed');
  if (state === 'incomplete') {
    throw new TartError('VM is missing some of its files (config.json, disk.img or nvram.bin)', 1, 'prefixed');
  }
  return dir;
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
  const net = runNetwork(ctx.args, ctx.env);
  const shares = runShares(ctx.args);
  touchAccess(dir);
  const signals = new EndSignals();
  const lockPath = runLockPath(dir);
  const globalLock = join(ctx.home.sim, 'global.lock');
  await lock(globalLock);
  let record: RunInfo;
  try {
    if (signals.requested !== undefined) return endOnRequest(signals.requested, () => undefined);
    const config = readConfig(dir);
    const ip = await bindAddress(ctx.home, config.macAddress, ctx.env);
    record = { token: randomUUID(), phase: 'starting', startedAtMs: Date.now(), ip, os: config.os, mac: config.macAddress, net };
    if (!tryLock(lockPath, { ...record }, isRunProcess)) throw new TartError(`VM "${name}" is already running!`, 2);
  } finally {
    unlock(globalLock);
  }
  const failure = await startChecks(ctx, name, record, signals);
  if (signals.requested !== undefined) return endOnRequest(signals.requested, () => unlock(lockPath));
  if (failure !== undefined) {
    unlock(lockPath);
    throw failure;
  }
  updateLock(lockPath, { phase: 'started' });
  linkShares(dir, shares);
  const guest = spawn(
    process.execPath,
    [...process.execArgv, join(HERE, 'guest-main.ts'), dir, record.token, record.ip, record.mac, String(process.pid)],
    { env: ctx.env, stdio: ['pipe', 'ignore', 'ignore'], detached: true },
  );
  // Like tart, the process lives until it is told to end, whatever its supervisor child does.
  setInterval(() => undefined, 60_000);
  return endOnRequest(await signals.next, () => {
    killVm(guest, record.token, dir);
    unlock(lockPath);
  });
}

/** The start failure, if any: an injected one, or the macOS VM limit (after holding the lock). */
async function startChecks(ctx: Ctx, name: string, record: RunInfo, signals: EndSignals): Promise<TartError | undefined> {
  const settings = readSettings(vmDir(ctx.home, name));
  if (settings.startFailure !== undefined) {
    await signals.sleep(200);
    return new TartError(settings.startFailure, 1);
  }
  if (record.os !== 'darwin') return undefined;
  const others = otherRunningDarwin(ctx, name);
  if (others.length < MACOS_VM_LIMIT) return undefined;
  await signals.sleep(ctx.knobs.limitDelayS * 1000);
  return new TartError(`The number of VMs exceeds the system limit (other running VMs: ${others.join(', ')})`, 1);
}

/** Kills the supervisor and every process of the VM, repeating while sessions fork. */
function killVm(guest: ChildProcess, token: string, dir: string): void {
  guest.kill('SIGKILL');
  for (let i = 0; i < 50; i++) {
    const procs = findVmProcesses(token, sshdConfigPath(dir));
    if (procs.length === 0) break;
    killProcesses(procs.map((p) => p.pid), 'SIGKILL');
  }
}
