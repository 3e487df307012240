/** `tart ip`, `stop`, `suspend` (spec §2). */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { optionValue } from './args.ts';
import { out, sleep, type Ctx } from './context.ts';
import { TartError } from './errors.ts';
import { readConfig, readSettings, requireVm, touchAccess } from './home.ts';
import { bindAddress, findLease } from './leases.ts';
import { isAlive } from './procs.ts';
import { runHolder, vmState, type RunRecord } from './vm-state.ts';

type Resolver = 'dhcp' | 'arp' | 'agent';

/**
 * One resolver attempt. dhcp answers from any unexpired lease of the VM's MAC (stale leases
 * included, unless TART_SIM_STALE_LEASES=0); arp and agent only once this run's guest has booted.
 */
async function resolveOnce(ctx: Ctx, dir: string, resolver: Resolver): Promise<string | undefined> {
  const settings = readSettings(dir);
  if (settings.noIp === true) return undefined;
  const mac = readConfig(dir).macAddress;
  if (settings.staleIp === true) return bindAddress(ctx.home, `stale:${mac}`, ctx.env);
  const lease = findLease(ctx.home, mac);
  if (lease === undefined) return undefined;
  const run: RunRecord | undefined = runHolder(dir);
  const bootedThisRun = run !== undefined && lease.grantedAtMs >= run.startedAtMs;
  if (resolver === 'dhcp' && ctx.knobs.staleLeases) return lease.ip;
  return bootedThisRun ? lease.ip : undefined;
}

/** `tart ip NAME [--wait N] [--resolver dhcp|arp|agent]`: try, sleep 1 s, repeat until the deadline. */
export async function cmdIp(ctx: Ctx): Promise<number> {
  const name = ctx.args.positionals[0] ?? '';
  const dir = requireVm(ctx.home, name);
  touchAccess(dir);
  const waitS = Number(optionValue(ctx.args, 'wait') ?? '0');
  const resolver = (optionValue(ctx.args, 'resolver') ?? 'dhcp') as Resolver;
  const deadline = Date.now() + waitS * 1000;
  do {
    const ip = await resolveOnce(ctx, dir, resolver);
    if (ip !== undefined) {
      out(ip);
      return 0;
    }
    await sleep(1000);
  } while (Date.now() < deadline);
  let message = 'no IP address found';
  if (vmState(dir) !== 'running') message += ', is your VM running?';
  if (resolver === 'agent') message += ' (also make sure that Guest agent for Tart is running inside of a VM)';
  if (resolver === 'arp' && readConfig(dir).os === 'linux') {
    message += ' (not all Linux distributions are compatible with the ARP resolver)';
  }
  throw new TartError(message, 1);
}

/** `tart stop NAME [-t N]`: SIGINT to the run process, poll every 100 ms, SIGKILL at the timeout. */
export async function cmdStop(ctx: Ctx): Promise<number> {
  const name = ctx.args.positionals[0] ?? '';
  const dir = requireVm(ctx.home, name);
  touchAccess(dir);
  const holder = runHolder(dir);
  if (holder === undefined) {
    if (vmState(dir) === 'suspended') {
      rmSync(join(dir, 'state.vzvmsave'), { force: true });
      return 0;
    }
    throw new TartError(`VM "${name}" is not running`, 2);
  }
  const timeoutS = Number(optionValue(ctx.args, 'timeout') ?? '30');
  try {
    process.kill(holder.pid, 'SIGINT');
  } catch {
    return 0; // it ended on its own meanwhile
  }
  const deadline = Date.now() + timeoutS * 1000;
  while (Date.now() < deadline) {
    if (runHolder(dir) === undefined) return 0;
    await sleep(100);
  }
  if (runHolder(dir) === undefined) return 0;
  try {
    process.kill(holder.pid, 'SIGKILL');
  } catch (e) {
    if (isAlive(holder.pid)) {
      throw new TartError(`failed to forcefully terminate the VM "${name}": ${(e as NodeJS.ErrnoException).code ?? e}`, 1);
    }
  }
  return 0;
}

/** `tart suspend NAME`: SIGUSR1 to the run process, returning at once. */
export async function cmdSuspend(ctx: Ctx): Promise<number> {
  const name = ctx.args.positionals[0] ?? '';
  const dir = requireVm(ctx.home, name);
  const holder = runHolder(dir);
  if (holder === undefined) throw new TartError(`VM "VM "${name}" is not running" is not running`, 2);
  process.kill(holder.pid, 'SIGUSR1');
  return 0;
}
