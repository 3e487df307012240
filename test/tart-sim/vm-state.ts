/**
 * A VM's run state (spec §3): `running` while a live `tart run` holds the VM's run lock, else
 * `suspended` if `state.vzvmsave` exists, else `stopped`. Also the simulator's knobs and the
 * global faults file, which every command reads.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Home } from './home.ts';
import { isRunProcess, lockHolder, type LockRecord } from './locks.ts';

/** What a `tart run` stores in its lock besides its PID. */
export interface RunInfo {
  /** Marks every process of this run (see procs.ts). */
  token: string;
  /** `starting` until the start checks (VM limit, injected failure) passed. */
  phase: 'starting' | 'started';
  startedAtMs: number;
  ip: string;
  os: string;
  mac: string;
  /** The network `tart run`'s flags asked for (absent: tart's shared NAT). */
  net?: RunNetwork;
}

/** A run's network: `softnet` with its allow/block CIDR lists as given on the command line. */
export interface RunNetwork {
  mode: 'shared' | 'softnet' | 'bridged' | 'host';
  allow?: string[];
  block?: string[];
  bridged?: string[];
}

/** A live run's lock record. */
export type RunRecord = LockRecord & RunInfo;

export type VmState = 'running' | 'suspended' | 'stopped';

export function runLockPath(dir: string): string {
  return join(dir, 'tart-sim-run.lock');
}

/** The live `tart run` of the VM in `dir`, if any. */
export function runHolder(dir: string): RunRecord | undefined {
  return lockHolder(runLockPath(dir), isRunProcess) as RunRecord | undefined;
}

export function vmState(dir: string): VmState {
  if (runHolder(dir) !== undefined) return 'running';
  return existsSync(join(dir, 'state.vzvmsave')) ? 'suspended' : 'stopped';
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

function num(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a number ≥ 0, got ${raw}`);
  return n;
}

/** Environment knobs, documented in README.md. */
export interface Knobs {
  version: string;
  bootDelayS: number;
  sshDelayS: number;
  limitDelayS: number;
  guestStopDelayS: number;
  leaseS: number;
  staleLeases: boolean;
  shuffleKeys: boolean;
  vmLimit: number;
  diskFreeGb: number | undefined;
}

export function readKnobs(env: NodeJS.ProcessEnv): Knobs {
  return {
    version: env.TART_SIM_VERSION ?? '2.32.1',
    bootDelayS: num(env, 'TART_SIM_BOOT_DELAY_S', 0.5),
    sshDelayS: num(env, 'TART_SIM_SSH_DELAY_S', 0),
    limitDelayS: num(env, 'TART_SIM_LIMIT_DELAY_S', 1),
    guestStopDelayS: num(env, 'TART_SIM_GUEST_STOP_DELAY_S', 0.2),
    leaseS: num(env, 'TART_SIM_LEASE_S', 86_400),
    staleLeases: env.TART_SIM_STALE_LEASES !== '0',
    shuffleKeys: env.TART_SIM_SHUFFLE_KEYS === '1',
    vmLimit: num(env, 'TART_SIM_VM_LIMIT', 2),
    diskFreeGb: env.TART_SIM_DISK_FREE_GB === undefined ? undefined : num(env, 'TART_SIM_DISK_FREE_GB', 0),
  };
}
