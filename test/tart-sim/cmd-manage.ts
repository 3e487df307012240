/** `tart delete`, `rename`, `prune` (spec §2). */
import { existsSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { optionValue } from './args.ts';
import type { Ctx } from './context.ts';
import { TartError, usageError, vmMissing } from './errors.ts';
import { localVmNames, requireVm, VM_FILES, vmDir } from './home.ts';
import { deleteRemote, isRemoteName, ociEntries } from './cmd-oci.ts';
import { runHolder } from './vm-state.ts';

/** `tart delete NAME…` — in order, stopping at the first error. */
export async function cmdDelete(ctx: Ctx): Promise<number> {
  for (const name of ctx.args.positionals) {
    if (isRemoteName(name)) {
      if (!deleteRemote(ctx.home, name)) throw vmMissing(name);
      continue;
    }
    const dir = requireVm(ctx.home, name);
    if (runHolder(dir) !== undefined) throw new TartError(`VM "${name}" is running`, 1);
    rmSync(dir, { recursive: true, force: true });
  }
  return 0;
}

/** `tart rename OLD NEW` — no running check; its validation errors print the root usage. */
export async function cmdRename(ctx: Ctx): Promise<number> {
  const [from = '', to = ''] = ctx.args.positionals;
  if (to.includes('/')) throw usageError('<new-name> should be a local name', 'rename');
  if (!existsSync(vmDir(ctx.home, from))) {
    throw usageError(`failed to rename a non-existent local VM: ${from}`, undefined);
  }
  if (existsSync(vmDir(ctx.home, to))) {
    throw usageError(`failed to rename VM ${from}, target VM ${to} already exists, delete it first!`, undefined);
  }
  renameSync(vmDir(ctx.home, from), vmDir(ctx.home, to));
  return 0;
}

interface Prunable {
  dir: string;
  accessedMs: number;
  bytes: number;
  remove: () => void;
}

function allocated(dir: string): number {
  let sum = 0;
  for (const f of VM_FILES) {
    try {
      sum += statSync(join(dir, f)).blocks * 512;
    } catch {
      // incomplete entry
    }
  }
  return sum;
}

/** `tart prune [--entries caches|vms] [--older-than DAYS] [--space-budget GB]`; never running VMs. */
export async function cmdPrune(ctx: Ctx): Promise<number> {
  const olderThan = optionValue(ctx.args, 'older-than');
  const budget = optionValue(ctx.args, 'space-budget') ?? optionValue(ctx.args, 'cache-budget');
  if (olderThan === undefined && budget === undefined) {
    throw usageError('at least one pruning criteria must be specified', 'prune');
  }
  const items: Prunable[] =
    optionValue(ctx.args, 'entries') === 'vms'
      ? localVmNames(ctx.home)
          .map((n) => vmDir(ctx.home, n))
          .filter((dir) => runHolder(dir) === undefined)
          .map((dir) => ({ dir, accessedMs: statSync(dir).atimeMs, bytes: allocated(dir), remove: () => rmSync(dir, { recursive: true, force: true }) }))
      : ociEntries(ctx.home)
          .filter((e) => e.name.includes('@'))
          .map((e) => ({ dir: e.dir, accessedMs: statSync(e.dir).atimeMs, bytes: allocated(e.dir), remove: () => deleteRemote(ctx.home, e.name) }));
  items.sort((a, b) => a.accessedMs - b.accessedMs);
  const keep: Prunable[] = [];
  for (const item of items) {
    if (olderThan !== undefined && item.accessedMs < Date.now() - Number(olderThan) * 86_400_000) item.remove();
    else keep.push(item);
  }
  if (budget !== undefined) {
    let total = keep.reduce((s, i) => s + i.bytes, 0);
    for (const item of keep) {
      if (total <= Number(budget) * 1e9) break;
      item.remove();
      total -= item.bytes;
    }
  }
  return 0;
}
