/** `tart list`, `clone`, `get`, `set` (spec §2). */
import { randomUUID } from 'node:crypto';
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, renameSync, rmSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { optionValue } from './args.ts';
import { out, type Ctx } from './context.ts';
import { TartError, usageError } from './errors.ts';
import {
  localVmNames, randomMac, readConfig, requireVm, SIM_INHERITED_FILES, touchAccess, VM_FILES, vmDir, writeConfig,
  type Home,
} from './home.ts';
import { lock, tryLock, unlock } from './locks.ts';
import { isRemoteName, ociEntries, resolveRemote } from './cmd-oci.ts';
import { isoSeconds, jsonArray, jsonRecord, relativePhrase, textTable, type Row } from './format.ts';
import { vmState } from './vm-state.ts';

function sizes(dir: string): { apparent: number; allocated: number } {
  let apparent = 0;
  let allocated = 0;
  for (const f of VM_FILES) {
    const st = statSync(join(dir, f));
    apparent += st.size;
    allocated += st.blocks * 512;
  }
  return { apparent, allocated };
}

function listRow(source: 'local' | 'OCI', name: string, dir: string, json: boolean): Row {
  const { apparent, allocated } = sizes(dir);
  const accessed = statSync(dir).atime;
  const state = source === 'local' ? vmState(dir) : 'stopped';
  const row: Row = [
    ['Source', source],
    ['Name', name],
    ['Disk', Math.floor(apparent / 1e9)],
    ['Size', Math.floor(allocated / 1e9)],
    ['Accessed', json ? isoSeconds(accessed) : relativePhrase(accessed)],
  ];
  if (json) row.push(['Running', state === 'running']);
  row.push(['State', state]);
  return row;
}

/** `tart list [--source local|oci] [--format text|json] [-q]`. */
export async function cmdList(ctx: Ctx): Promise<number> {
  const source = optionValue(ctx.args, 'source');
  const json = optionValue(ctx.args, 'format') === 'json';
  const entries: Array<{ source: 'local' | 'OCI'; name: string; dir: string }> = [];
  if (source !== 'oci') {
    for (const name of localVmNames(ctx.home)) entries.push({ source: 'local', name, dir: vmDir(ctx.home, name) });
  }
  if (source !== 'local') for (const e of ociEntries(ctx.home)) entries.push({ source: 'OCI', ...e });
  if (ctx.args.flags.has('quiet')) {
    for (const e of entries) out(e.name);
    return 0;
  }
  const rows: Row[] = [];
  for (const e of entries) {
    try {
      rows.push(listRow(e.source, e.name, e.dir, json));
    } catch {
      // deleted while we listed: tart skips such VMs too
    }
  }
  out(json ? jsonArray(rows, ctx.knobs.shuffleKeys) : textTable(rows));
  return 0;
}

/** Copies a VM's files into `dest` (disk.img re-created sparse: guest contents are not simulated). */
export function copyVmFiles(src: string, dest: string): void {
  for (const f of ['config.json', 'nvram.bin', 'state.vzvmsave', ...SIM_INHERITED_FILES]) {
    if (existsSync(join(src, f))) copyFileSync(join(src, f), join(dest, f));
  }
  closeSync(openSync(join(dest, 'disk.img'), 'w'));
  truncateSync(join(dest, 'disk.img'), statSync(join(src, 'disk.img')).size);
}

/** Atomically replaces `vms/NAME` by the staged dir (silent overwrite, as tart does). */
export function installVm(home: Home, staged: string, name: string): void {
  const target = vmDir(home, name);
  if (existsSync(target)) {
    const old = join(home.tmp, `${randomUUID()}-replaced`);
    renameSync(target, old);
    renameSync(staged, target);
    rmSync(old, { recursive: true, force: true });
  } else {
    renameSync(staged, target);
  }
}

/** A fresh staging dir `tmp/<UUID>`, locked so garbage collection leaves it alone. */
export function stagingDir(home: Home): string {
  const dir = join(home.tmp, randomUUID().toUpperCase());
  mkdirSync(dir);
  tryLock(join(dir, 'tart-sim-tmp.lock'));
  return dir;
}

/** `tart clone SOURCE NAME`. */
export async function cmdClone(ctx: Ctx): Promise<number> {
  const [source = '', name = ''] = ctx.args.positionals;
  if (name.includes('/')) throw usageError('<new-name> should be a local name', 'clone');
  if (optionValue(ctx.args, 'concurrency') === '0') {
    throw usageError('--concurrency should be greater than 0', 'clone');
  }
  const srcDir = isRemoteName(source) ? await resolveRemote(ctx, source) : requireVm(ctx.home, source);
  const globalLock = join(ctx.home.sim, 'global.lock');
  await lock(globalLock);
  try {
    const staged = stagingDir(ctx.home);
    copyVmFiles(srcDir, staged);
    rmSync(join(staged, 'tart-sim-tmp.lock'), { force: true });
    const config = readConfig(staged);
    const suspended = existsSync(join(srcDir, 'state.vzvmsave'));
    const macTaken = localVmNames(ctx.home).some((n) => readConfig(vmDir(ctx.home, n)).macAddress === config.macAddress);
    if (macTaken && !suspended) {
      config.macAddress = randomMac();
      writeConfig(staged, config);
    }
    installVm(ctx.home, staged, name);
    if (!isRemoteName(source)) touchAccess(srcDir);
  } finally {
    unlock(globalLock);
  }
  return 0;
}

function getRow(dir: string, json: boolean): Row {
  const c = readConfig(dir);
  const st = statSync(join(dir, 'disk.img'));
  const state = vmState(dir);
  const display = `${c.display.width}x${c.display.height}${c.display.unit ?? ''}`;
  const row: Row = [
    ['OS', c.os],
    ['CPU', c.cpuCount],
    ['Memory', Math.floor(c.memorySize / 1048576)],
    ['Disk', Math.floor(st.size / 1e9)],
    ['DiskFormat', c.diskFormat],
    ['Size', ((st.blocks * 512) / 1e9).toFixed(3)],
    ['Display', display],
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

/** `tart set NAME …` — edits config.json; no running check (takes effect next run). */
export async function cmdSet(ctx: Ctx): Promise<number> {
  const dir = requireVm(ctx.home, ctx.args.positionals[0] ?? '');
  touchAccess(dir);
  const config = readConfig(dir);
  const cpu = optionValue(ctx.args, 'cpu');
  if (cpu !== undefined) {
    const n = Number(cpu);
    if (n < config.cpuCountMin) {
      throw new TartError(
        `LessThanMinimalResourcesError: VM should have ${config.cpuCountMin} CPU cores at minimum (requested ${n})`, 1, 'prefixed');
    }
    config.cpuCount = n;
  }
  const memory = optionValue(ctx.args, 'memory');
  if (memory !== undefined) {
    const mib = Number(memory);
    const minMib = Math.floor(config.memorySizeMin / 1048576);
    if (mib < minMib) {
      throw new TartError(
        `LessThanMinimalResourcesError: VM should have ${minMib} MB of memory at minimum (requested ${mib})`, 1, 'prefixed');
    }
    config.memorySize = mib * 1048576;
  }
  const display = optionValue(ctx.args, 'display');
  if (display !== undefined) {
    const m = /^(\d+)x(\d+)(pt|px)?$/.exec(display);
    if (m === null) throw usageError(`The value '${display}' is invalid for '--display <display>'`, 'set');
    config.display = { width: Number(m[1]), height: Number(m[2]), ...(m[3] !== undefined ? { unit: m[3] } : {}) };
  }
  if (ctx.args.flags.has('display-refit')) config.displayRefit = true;
  if (ctx.args.flags.has('no-display-refit')) config.displayRefit = false;
  if (ctx.args.flags.has('random-mac')) config.macAddress = randomMac();
  const diskSize = optionValue(ctx.args, 'disk-size');
  if (diskSize !== undefined) {
    const wanted = Number(diskSize) * 1e9;
    const current = statSync(join(dir, 'disk.img')).size;
    if (wanted < current) {
      throw new TartError(
        `new disk size of ${Number(diskSize)} GB should be larger than the current disk size of ${Math.floor(current / 1e9)} GB`, 1);
    }
    truncateSync(join(dir, 'disk.img'), wanted);
  }
  writeConfig(dir, config);
  return 0;
}
