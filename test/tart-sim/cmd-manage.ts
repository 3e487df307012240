/** `tart clone`, `set`, `delete`, `stop` (spec §2): the commands that change a VM. */
import { randomUUID } from 'node:crypto';
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, renameSync, rmSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { optionValue } from './args.ts';
import { sleep, type Ctx } from './context.ts';
import { notSimulated, TartError, usageError } from './errors.ts';
import { randomMac, readConfig, requireVm, SIM_INHERITED_FILES, touchAccess, vmDir, writeConfig, type Home } from './home.ts';
import { lock, unlock } from './locks.ts';
import { isAlive } from './procs.ts';
import { runHolder } from './vm-state.ts';

/** Copies a VM's files into `dest` (disk.img re-created sparse: guest contents are not simulated). */
function copyVmFiles(src: string, dest: string): void {
  for (const f of ['config.json', 'nvram.bin', ...SIM_INHERITED_FILES]) {
    if (existsSync(join(src, f))) copyFileSync(join(src, f), join(dest, f));
  }
  closeSync(openSync(join(dest, 'disk.img'), 'w'));
  truncateSync(join(dest, 'disk.img'), statSync(join(src, 'disk.img')).size);
}

/** Atomically replaces `vms/NAME` by the staged dir (silent overwrite, as tart does). */
function installVm(home: Home, staged: string, name: string): void {
  const target = vmDir(home, name);
  if (!existsSync(target)) return renameSync(staged, target);
  const old = join(home.tmp, `${randomUUID()}-replaced`);
  renameSync(target, old);
  renameSync(staged, target);
  rmSync(old, { recursive: true, force: true });
}

/**
 * `tart clone SOURCE NAME` from a local VM, under the global lock, through `tmp/<UUID>`. The
 * clone gets a new MAC: tart keeps the source's only when no local VM has it, never true for a
 * local source. A registry SOURCE (one with a `/`) is not simulated.
 */
export async function cmdClone(ctx: Ctx): Promise<number> {
  const [source = '', name = ''] = ctx.args.positionals;
  if (name.includes('/')) throw usageError('<new-name> should be a local name', 'clone');
  if (source.includes('/')) throw notSimulated(`clone ${source}`);
  const srcDir = requireVm(ctx.home, source);
  const globalLock = join(ctx.home.sim, 'global.lock');
  await lock(globalLock);
  const staged = join(ctx.home.tmp, randomUUID().toUpperCase());
  try {
    mkdirSync(staged);
    copyVmFiles(srcDir, staged);
    writeConfig(staged, { ...readConfig(staged), macAddress: randomMac() });
    installVm(ctx.home, staged, name);
    touchAccess(srcDir);
  } finally {
    rmSync(staged, { recursive: true, force: true });
    unlock(globalLock);
  }
  return 0;
}

/** `tart set NAME --random-mac` — edits config.json; no running check (takes effect next run). */
export async function cmdSet(ctx: Ctx): Promise<number> {
  const dir = requireVm(ctx.home, ctx.args.positionals[0] ?? '');
  touchAccess(dir);
  if (ctx.args.flags.has('random-mac')) writeConfig(dir, { ...readConfig(dir), macAddress: randomMac() });
  return 0;
}

/** `tart delete NAME…` — in order, stopping at the first error. */
export async function cmdDelete(ctx: Ctx): Promise<number> {
  for (const name of ctx.args.positionals) {
    const dir = requireVm(ctx.home, name);
    if (runHolder(dir) !== undefined) throw new TartError(`VM "${name}" is running`, 1);
    rmSync(dir, { recursive: true, force: true });
  }
  return 0;
}

/** `tart stop NAME [-t N]`: SIGINT to the run process, poll every 100 ms, SIGKILL at the timeout. */
export async function cmdStop(ctx: Ctx): Promise<number> {
  const name = ctx.args.positionals[0] ?? '';
  const dir = requireVm(ctx.home, name);
  touchAccess(dir);
  const holder = runHolder(dir);
  if (holder === undefined) throw new TartError(`VM "${name}" is not running`, 2);
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
