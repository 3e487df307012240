/**
 * The `VmDriver` port: what the agent needs from a VM manager (tart). Names are tart VM names;
 * every failure is an `ExpoError` with a `VM_*` code (see `tart-errors.ts` for how tart's
 * output maps onto them).
 */
import type { ExpoError } from '../protocol/errors.ts';

/**
 * A VM's state as tart reports it. `unknown` only for tart ≤ 1.1, whose `list` has neither
 * `State` nor `Running`; it counts as not running.
 */
export type VmState = 'running' | 'suspended' | 'stopped' | 'unknown';

/** One entry of `tart list`. */
export interface VmInfo {
  name: string;
  /** `local` for a VM, `oci` for an entry of the OCI image cache. */
  source: 'local' | 'oci';
  state: VmState;
  /** Apparent disk size in GB (tart ≥ 2.6.1), when reported. */
  diskGb?: number;
  /** Allocated size in GB, when reported. */
  sizeGb?: number;
  /** Last access, ISO-8601 (tart ≥ 2.31), when reported. */
  accessedAt?: string;
}

/** `tart get`: one VM's configuration. Fields missing from older tart versions are absent. */
export interface VmDetails {
  os?: string;
  cpuCount?: number;
  memoryMib?: number;
  diskGb?: number;
  state: VmState;
}

/** How a `tart run` process ended. */
export interface VmExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The end of the run log (why it failed to start, or `guest has stopped…`). */
  logTail: string;
  /** The classified reason for a non-zero exit or a signal (`VM_LIMIT`, `VM_EXITED`…); null for exit 0. */
  error: ExpoError | null;
}

/** A running `tart run` child, in its own process group. */
export interface VmRunHandle {
  readonly pid: number;
  readonly logPath: string;
  /** Resolves when the run process exits — the VM is gone. Never rejects. */
  readonly exited: Promise<VmExit>;
  /** True until the run process has exited. */
  isRunning(): boolean;
  /** Signals the run process group (SIGINT = tart's hard power-off and clean exit). */
  kill(signal: NodeJS.Signals): void;
}

/**
 * A clone's network: `shared` is tart's default NAT (the VM reaches whatever its host reaches);
 * `softnet` runs it through tart's Softnet packet filter (`--net-softnet`), which lets the VM
 * reach globally routable addresses and the host's gateway only, plus the `allow` CIDRs
 * (`--net-softnet-allow`, tart ≥ 2.7.1: `SOFTNET_ALLOW_MIN_TART` in `src/health/softnet.ts`, whose
 * `vm-network` check holds the host to it).
 */
export type VmNetwork = { readonly isolation: 'shared' } | { readonly isolation: 'softnet'; readonly allow: readonly string[] };

/** An IPv4 CIDR (`10.0.0.5/32`) in canonical form, or null. A bare address is not accepted. */
export function parseCidr(s: string): string | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(s.trim());
  if (m === null) return null;
  const octets = m.slice(1, 5).map(Number);
  const bits = Number(m[5]);
  if (octets.some((o) => o > 255) || bits > 32) return null;
  return `${octets.join('.')}/${bits}`;
}

/**
 * A host directory shared into the VM (`tart run --dir NAME:PATH[:ro]`); a macOS guest mounts
 * it at `/Volumes/My Shared Files/NAME`. `name` is a safe word (`[A-Za-z0-9_-]`), `path`
 * absolute without `:` or `,` (tart's separators).
 */
export interface VmDirShare {
  readonly name: string;
  readonly path: string;
  readonly readOnly?: boolean;
}

/** Which of tart's IP resolvers to use (default `dhcp`). */
export type IpResolver = 'dhcp' | 'arp' | 'agent';

/** The VM manager port. */
export interface VmDriver {
  /** `tart --version`, e.g. `2.32.1`. */
  version(): Promise<string>;
  /** Local VMs and OCI cache entries. */
  list(): Promise<VmInfo[]>;
  /** One VM's configuration; `VM_NOT_FOUND` if missing. */
  get(name: string): Promise<VmDetails>;
  /** Clones `source` (a local name or an OCI reference) to `name`, silently replacing `name`. */
  clone(source: string, name: string, options?: { signal?: AbortSignal }): Promise<void>;
  /** Gives the VM a new random MAC address (takes effect at the next run). */
  setRandomMac(name: string): Promise<void>;
  /** Starts `tart run NAME --no-graphics` (plus the network's flags and one `--dir` per share) as a long-lived child logging to `logPath`. */
  run(name: string, options: { logPath: string; network?: VmNetwork; dirs?: readonly VmDirShare[] }): Promise<VmRunHandle>;
  /** The VM's IPv4 address, waiting up to `waitS` seconds; `VM_NO_IP` if none. */
  ip(name: string, options: { waitS: number; resolver?: IpResolver; signal?: AbortSignal }): Promise<string>;
  /** Stops a running VM (SIGINT, then SIGKILL after `timeoutS`); `VM_NOT_RUNNING` if stopped. */
  stop(name: string, options: { timeoutS: number }): Promise<void>;
  /** Deletes a VM; `VM_IS_RUNNING` if it runs, `VM_NOT_FOUND` if missing. */
  delete(name: string): Promise<void>;
}
