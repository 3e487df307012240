/**
 * The hidden `tart sim <action> …` subcommand: creates base VMs and injects the faults the
 * tests, script/demo and bench use (see README.md). Runtime faults act on the running VM and
 * return once they took effect; settings faults are stored in the VM's `sim.json`, which clones
 * inherit.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { out, sleep } from './context.ts';
import { TartError } from './errors.ts';
import {
  randomMac, readGlobalFaults, readSettings, requireVm, vmDir, writeConfig, writeGlobalFaults, writeSettings, type Home,
  type VmSettings,
} from './home.ts';
import { sshdConfigPath } from './guest-files.ts';
import { findVmProcesses, killProcesses } from './procs.ts';
import { runHolder, type RunRecord } from './vm-state.ts';

const USAGE = 'usage: tart sim create|freeze|crash|no-ip|stale-ip|ssh-down|slow-boot|disk|start-fail|clear|rekey|net|hang …';

function bad(message: string): TartError {
  return new TartError(`${message}\n${USAGE}`, 64);
}

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}

function seconds(value: string | undefined): number {
  const n = Number(value);
  if (value === undefined || !Number.isFinite(n) || n < 0) throw bad(`expected seconds, got ${value ?? 'nothing'}`);
  return n;
}

function onOff(value: string | undefined): boolean {
  if (value === undefined || value === 'on') return true;
  if (value === 'off') return false;
  throw bad(`expected on|off, got ${value}`);
}

function running(dir: string, name: string): RunRecord {
  const r = runHolder(dir);
  if (r === undefined) throw new TartError(`VM "${name}" is not running`, 2);
  return r;
}

/** SIGSTOPs every process of the VM until the set stops growing (sessions may fork). */
function freeze(r: RunRecord, dir: string): void {
  const done = new Set<number>();
  for (let i = 0; i < 20; i++) {
    const fresh = findVmProcesses(r.token, sshdConfigPath(dir)).filter((p) => !done.has(p.pid));
    if (fresh.length === 0) break;
    killProcesses(fresh.map((p) => p.pid), 'SIGSTOP');
    for (const p of fresh) done.add(p.pid);
  }
}

async function waitFor(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
  return true;
}

function sshdListening(r: RunRecord, dir: string): boolean {
  return findVmProcesses(r.token, sshdConfigPath(dir)).some((p) => p.cmdline.includes('[listener]'));
}

function create(home: Home, name: string, args: string[]): void {
  const dir = vmDir(home, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const os = flag(args, 'os') ?? 'darwin';
  if (os !== 'darwin' && os !== 'linux') throw bad(`--os must be darwin or linux, got ${os}`);
  const cpu = Number(flag(args, 'cpu') ?? 4);
  const memoryMib = Number(flag(args, 'memory') ?? 8192);
  writeConfig(dir, {
    version: 1,
    os,
    arch: 'arm64',
    ...(os === 'darwin' ? { ecid: 'c2ltdWxhdGVkLWVjaWQ=', hardwareModel: 'c2ltdWxhdGVkLWhhcmR3YXJlLW1vZGVs' } : {}),
    cpuCountMin: cpu,
    cpuCount: cpu,
    memorySizeMin: memoryMib * 1048576,
    memorySize: memoryMib * 1048576,
    macAddress: randomMac(),
    display: { width: 1024, height: 768 },
    diskFormat: 'raw',
  });
  closeSync(openSync(join(dir, 'disk.img'), 'w'));
  truncateSync(join(dir, 'disk.img'), Number(flag(args, 'disk-size') ?? 50) * 1e9);
  writeFileSync(join(dir, 'nvram.bin'), Buffer.alloc(128 * 1024));
  hostKey(dir, name);
  const key = flag(args, 'authorize');
  writeFileSync(join(dir, 'authorized_keys'), key === undefined ? '' : readFileSync(key, 'utf8'));
  const free = flag(args, 'disk-free');
  writeSettings(dir, free === undefined ? {} : { diskFreeGb: Number(free) });
}

/** A new SSH host key for the VM (and so for every later clone of it). */
function hostKey(dir: string, name: string): void {
  rmSync(join(dir, 'ssh_host_ed25519_key'), { force: true });
  rmSync(join(dir, 'ssh_host_ed25519_key.pub'), { force: true });
  const keygen = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `tart-sim-${name}`, '-f', join(dir, 'ssh_host_ed25519_key')]);
  if (keygen.status !== 0) throw new TartError(`ssh-keygen failed: ${keygen.stderr.toString()}`, 1);
}

function setSetting(dir: string, patch: Partial<VmSettings>): void {
  const s: VmSettings = { ...readSettings(dir), ...patch };
  for (const k of Object.keys(s) as Array<keyof VmSettings>) if (s[k] === undefined || s[k] === false) delete s[k];
  writeSettings(dir, s);
}

/** Runs `tart sim <action> [NAME] [args…]`. */
export async function cmdSim(home: Home, argv: string[]): Promise<number> {
  const [action, name = '', ...args] = argv;
  if (action === 'hang') {
    const commands = [name, ...args].filter((c) => c !== '' && c !== '--none');
    writeGlobalFaults(home, { ...readGlobalFaults(home), hang: commands });
    return 0;
  }
  if (action === 'create') {
    if (name === '') throw bad('missing NAME');
    create(home, name, args);
    return 0;
  }
  const dir = requireVm(home, name);
  switch (action) {
    case 'freeze':
      freeze(running(dir, name), dir);
      return 0;
    case 'crash':
      // The run process's SIGUSR2 handler is the crash (cmd-run.ts).
      process.kill(running(dir, name).pid, 'SIGUSR2');
      if (!(await waitFor(() => runHolder(dir) === undefined, 10_000))) throw new TartError(`VM "${name}" did not stop`, 1);
      return 0;
    case 'no-ip':
      setSetting(dir, { noIp: onOff(args[0]) });
      return 0;
    case 'stale-ip':
      setSetting(dir, { staleIp: onOff(args[0]) });
      return 0;
    case 'ssh-down': {
      const down = onOff(args[0]);
      setSetting(dir, { sshDown: down });
      const r = runHolder(dir);
      if (r !== undefined && down) await waitFor(() => !sshdListening(r, dir), 5000);
      return 0;
    }
    case 'slow-boot':
      setSetting(dir, { bootDelayS: seconds(args[0]) });
      return 0;
    case 'disk': {
      const [total, free] = [Number(args[0]), Number(args[1])];
      if (!(total > 0) || !(free >= 0) || free > total) throw bad('disk TOTAL_GB FREE_GB with 0 <= FREE <= TOTAL');
      setSetting(dir, { diskTotalGb: total, diskFreeGb: free });
      return 0;
    }
    case 'start-fail':
      setSetting(dir, { startFailure: args[0] ?? 'VZErrorDomain Code=1 "The virtual machine failed to start."' });
      return 0;
    case 'clear':
      writeSettings(dir, {});
      return 0;
    case 'rekey':
      // From its next start on the VM answers with another key: a rebuilt image, or another
      // machine at the address.
      hostKey(dir, name);
      return 0;
    case 'net':
      // The network the running VM was started with, as JSON (what `tart run`'s flags asked for).
      out(JSON.stringify(running(dir, name).net));
      return 0;
    default:
      throw bad(`unknown action ${action ?? ''}`);
  }
}
