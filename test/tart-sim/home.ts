/**
 * TART_HOME layout (spec §3): `vms/NAME/{config.json,disk.img,nvram.bin}`, `cache/`, `tmp/`.
 * The simulator adds, per VM, `ssh_host_ed25519_key{,.pub}`, `authorized_keys` and `sim.json`
 * (fault settings) which clones inherit, and runtime files (`tart-sim-run.lock`, `guest/`);
 * and globally `sim/` (leases, global lock, `faults.json`).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { TartError, vmMissing } from './errors.ts';

/** The three files that make a directory a VM. */
export const VM_FILES = ['config.json', 'disk.img', 'nvram.bin'] as const;
/** Files the simulator copies on clone besides VM_FILES (the guest's identity and faults). */
export const SIM_INHERITED_FILES = ['ssh_host_ed25519_key', 'ssh_host_ed25519_key.pub', 'authorized_keys', 'sim.json'];

/** config.json as tart writes it (the fields a driver or the simulator reads). */
export interface VmConfig {
  version: number;
  os: 'darwin' | 'linux';
  arch: string;
  cpuCountMin: number;
  cpuCount: number;
  memorySizeMin: number;
  memorySize: number;
  macAddress: string;
  display: { width: number; height: number; unit?: string };
  displayRefit?: boolean;
  diskFormat: string;
  ecid?: string;
  hardwareModel?: string;
}

/** Per-VM fault settings (`sim.json`), inherited by clones. */
export interface VmSettings {
  noIp?: boolean;
  staleIp?: boolean;
  sshDown?: boolean;
  bootDelayS?: number;
  diskTotalGb?: number;
  diskFreeGb?: number;
  startFailure?: string;
}

/** Paths of one TART_HOME. */
export interface Home {
  root: string;
  vms: string;
  tmp: string;
  cache: string;
  sim: string;
}

/** Resolves TART_HOME (default `~/.tart`) and creates `cache/`, `tmp/`, `vms/`, `sim/` (tart makes the first two on every call). */
export function openHome(env: NodeJS.ProcessEnv): Home {
  const root = resolve(env.TART_HOME !== undefined && env.TART_HOME !== '' ? env.TART_HOME : join(homedir(), '.tart'));
  const home: Home = { root, vms: join(root, 'vms'), tmp: join(root, 'tmp'), cache: join(root, 'cache'), sim: join(root, 'sim') };
  try {
    for (const dir of [home.cache, home.tmp, home.vms, home.sim]) mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw new TartError(`TART_HOME is invalid: ${(err as Error).message}`, 1, 'prefixed');
  }
  return home;
}

export function vmDir(home: Home, name: string): string {
  return join(home.vms, name);
}

/** Whether `dir` holds a complete VM, an incomplete one, or nothing. */
export function vmDirState(dir: string): 'ok' | 'incomplete' | 'missing' {
  if (!existsSync(dir)) return 'missing';
  return VM_FILES.every((f) => existsSync(join(dir, f))) ? 'ok' : 'incomplete';
}

/** The VM's dir; throws tart's "does not exist" (exit 2) or "missing some of its files" (exit 1). */
export function requireVm(home: Home, name: string): string {
  const dir = vmDir(home, name);
  const state = vmDirState(dir);
  if (state === 'missing') throw vmMissing(name);
  if (state === 'incomplete') throw new TartError('VM is missing some of its files (config.json, disk.img or nvram.bin)', 1);
  return dir;
}

/** Local VM names, sorted in plain string order. */
export function localVmNames(home: Home): string[] {
  let names: string[];
  try {
    names = readdirSync(home.vms);
  } catch {
    return [];
  }
  return names.filter((n) => vmDirState(vmDir(home, n)) === 'ok').sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

export function readConfig(dir: string): VmConfig {
  return JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as VmConfig;
}

export function writeConfig(dir: string, config: VmConfig): void {
  writeFileSync(join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
}

export function readSettings(dir: string): VmSettings {
  try {
    return JSON.parse(readFileSync(join(dir, 'sim.json'), 'utf8')) as VmSettings;
  } catch {
    return {};
  }
}

export function writeSettings(dir: string, settings: VmSettings): void {
  writeFileSync(join(dir, 'sim.json'), `${JSON.stringify(settings, null, 2)}\n`);
}

/** Simulator-wide faults, `sim/faults.json`. */
export interface GlobalFaults {
  /** Subcommands that hang forever (e.g. `ip`, `stop`). */
  hang?: string[];
}

export function readGlobalFaults(home: Home): GlobalFaults {
  try {
    return JSON.parse(readFileSync(join(home.sim, 'faults.json'), 'utf8')) as GlobalFaults;
  } catch {
    return {};
  }
}

export function writeGlobalFaults(home: Home, faults: GlobalFaults): void {
  writeFileSync(join(home.sim, 'faults.json'), `${JSON.stringify(faults, null, 2)}\n`);
}

/** A random locally administered unicast MAC, lower-case (what VZMACAddress generates). */
export function randomMac(): string {
  const b = randomBytes(6);
  b[0] = ((b[0] ?? 0) & 0xfc) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** Disk size in GB (10^9) from disk.img's apparent size. */
export function diskSizeGb(dir: string): number {
  return Math.floor(statSync(join(dir, 'disk.img')).size / 1e9);
}

/** Bumps the VM dir's access date, as tart does whenever a command opens a VM. */
export function touchAccess(dir: string): void {
  try {
    const st = statSync(dir);
    utimesSync(dir, new Date(), st.mtime);
  } catch {
    // the access date is informational
  }
}
