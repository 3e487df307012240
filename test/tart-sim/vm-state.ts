/**
 * A VM's run state (spec §3): `running` while a live `tart run` holds the VM's run lock, else
 * `stopped` (suspend is not simulated, so never `suspended`). The lock file also carries the
 * run's details, which `ip`, `stop` and `tart sim` read.
 */
import { join } from 'node:path';
import { isRunProcess, lockHolder, type LockRecord } from './locks.ts';
import type { RunNetwork } from './network.ts';

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
  /** The network `tart run`'s flags asked for. */
  net: RunNetwork;
}

/** A live run's lock record. */
export type RunRecord = LockRecord & RunInfo;

export type VmState = 'running' | 'stopped';

export function runLockPath(dir: string): string {
  return join(dir, 'tart-sim-run.lock');
}

/** The live `tart run` of the VM in `dir`, if any. */
export function runHolder(dir: string): RunRecord | undefined {
  return lockHolder(runLockPath(dir), isRunProcess) as RunRecord | undefined;
}

export function vmState(dir: string): VmState {
  return runHolder(dir) === undefined ? 'stopped' : 'running';
}
