/**
 * The simulator's environment knobs (README.md § Environment knobs): timings a test shrinks and
 * switches for fidelity checks. Read once per call; a bad value fails the call.
 */

/** What `tart --version` prints: the tart release the simulator follows. */
export const TART_VERSION = '2.32.1';

/** Concurrent `darwin` VMs Virtualization.framework allows. */
export const MACOS_VM_LIMIT = 2;

/** How long a granted DHCP lease lasts, in seconds (macOS bootpd's default). */
export const LEASE_S = 86_400;

export interface Knobs {
  /** `tart run` → lease granted (`tart ip` answers), then sshd starts. TART_SIM_BOOT_DELAY_S, default 0.5. */
  bootDelayS: number;
  /** How long a 3rd macOS VM holds its lock before failing. TART_SIM_LIMIT_DELAY_S, default 1. */
  limitDelayS: number;
  /** Shuffle `--format json` key order per call. TART_SIM_SHUFFLE_KEYS=1, default off. */
  shuffleKeys: boolean;
  /** Ignore `hang` faults (the harness's cleanup). TART_SIM_NO_HANG=1, default off. */
  noHang: boolean;
}

function seconds(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a number ≥ 0, got ${raw}`);
  return n;
}

export function readKnobs(env: NodeJS.ProcessEnv): Knobs {
  return {
    bootDelayS: seconds(env, 'TART_SIM_BOOT_DELAY_S', 0.5),
    limitDelayS: seconds(env, 'TART_SIM_LIMIT_DELAY_S', 1),
    shuffleKeys: env.TART_SIM_SHUFFLE_KEYS === '1',
    noHang: env.TART_SIM_NO_HANG === '1',
  };
}
