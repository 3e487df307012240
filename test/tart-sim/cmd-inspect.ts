/** `tart list`, `get`, `ip` (spec §2): the read-only commands a driver polls. */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { optionValue } from './args.ts';
import { out, sleep, type Ctx } from './context.ts';
import { TartError } from './errors.ts';
import { isoSeconds, jsonArray, jsonRecord, relativePhrase, textTable, type Row } from './format.ts';
import { localVmNames, readConfig, readSettings, requireVm, touchAccess, VM_FILES, vmDir } from './home.ts';
import { bindAddress, findLease } from './leases.ts';
import { runHolder, vmState } from './vm-state.ts';

function listRow(name: string, dir: string, json: boolean): Row {
  let apparent = 0;
  let allocated = 0;
  for (const f of VM_FILES) {
    const st = statSync(join(dir, f));
    apparent += st.size;
    allocated += st.blocks * 512;
  }
  const accessed = statSync(dir).atime;
  const state = vmState(dir);
  const row: Row = [
    ['Source', 'local'],
    ['Name', name],
    ['Disk', Math.floor(apparent / 1e9)],
    ['Size', Math.floor(allocated / 1e9)],
    ['Accessed', json ? isoSeconds(accessed) : relativePhrase(accessed)],
  ];
  if (json) row.push(['Running', state === 'running']);
  row.push(['State', state]);
  return row;
}

/** `tart list [--source local|oci] [--format text|json] [-q]`; the OCI cache is always empty. */
export async function cmdList(ctx: Ctx): Promise<number> {
  const names = optionValue(ctx.args, 'source') === 'oci' ? [] : localVmNames(ctx.home);
  if (ctx.args.flags.has('quiet')) {
    for (const name of names) out(name);
    return 0;
  }
  const json = optionValue(ctx.args, 'format') === 'json';
  const rows: Row[] = [];
  for (const name of names) {
    try {
      rows.push(listRow(name, vmDir(ctx.home, name), json));
    } catch {
      // deleted while we listed: tart skips such VMs too
    }
  }
  out(json ? jsonArray(rows, ctx.knobs.shuffleKeys) : textTable(rows));
  return 0;
}

function getRow(dir: string, json: boolean): Row {
  const c = readConfig(dir);
  const st = statSync(join(dir, 'disk.img'));
  const state = vmState(dir);
  const row: Row = [
    ['OS', c.os],
    ['CPU', c.cpuCount],
    ['Memory', Math.floor(c.memorySize / 1048576)],
    ['Disk', Math.floor(st.size / 1e9)],
    ['DiskFormat', c.diskFormat],
    ['Size', ((st.blocks * 512) / 1e9).toFixed(3)],
    ['Display', `${c.display.width}x${c.display.height}${c.display.unit ?? ''}`],
  ];
  if (json) row.push(['Running', state === 'running']);
  row.push(['State', state]);
  return row;
}

/** `tart get NAME [--format text|json]`. */
export async function cmdGet(ctx: Ctx): Promise<number> {
  const dir = requireVm(ctx.home, ctx.args.positionals[0] ?? '');
  touchAccess(dir);
  const json = optionValue(ctx.args, 'format') === 'json';
  out(json ? jsonRecord(getRow(dir, true), ctx.knobs.shuffleKeys) : textTable([getRow(dir, false)]));
  return 0;
}

type Resolver = 'dhcp' | 'arp' | 'agent';

/**
 * One resolver attempt. dhcp answers from any unexpired lease of the VM's MAC, stale ones
 * included (as bootpd's leases outlive the VM); arp and agent only once this run's guest booted.
 */
async function resolveOnce(ctx: Ctx, dir: string, resolver: Resolver): Promise<string | undefined> {
  const settings = readSettings(dir);
  if (settings.noIp === true) return undefined;
  const mac = readConfig(dir).macAddress;
  if (settings.staleIp === true) return bindAddress(ctx.home, `stale:${mac}`, ctx.env);
  const lease = findLease(ctx.home, mac);
  if (lease === undefined) return undefined;
  if (resolver === 'dhcp') return lease.ip;
  const run = runHolder(dir);
  return run !== undefined && lease.grantedAtMs >= run.startedAtMs ? lease.ip : undefined;
}

/** `tart ip NAME [--wait N] [--resolver dhcp|arp|agent]`: try, sleep 1 s, repeat until the deadline. */
export async function cmdIp(ctx: Ctx): Promise<number> {
  const dir = requireVm(ctx.home, ctx.args.positionals[0] ?? '');
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
