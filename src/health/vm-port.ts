/**
 * What the health checks need of a VM manager, declared here so that `src/health/` imports
 * nothing of `src/vm/`: `vm` runs the checks on its clones (it imports health), so health seeing
 * vm's types would close a cycle between the two folders. `src/vm/vm-driver.ts`'s `VmDriver`
 * satisfies this port as it is (structurally), and so does any fake a test hands a check.
 */

/** One entry of the VM manager's list, as far as the checks read it. */
export interface VmListing {
  name: string;
  /** `local` for a VM, `oci` for an entry of an image cache (never a running VM). */
  source: 'local' | 'oci';
  /** `running`, or any other state the manager reports (only `running` counts as running). */
  state: string;
}

/** The VM manager, narrowed to the calls the health checks make. */
export interface HealthVmManager {
  /** The manager's version (`tart --version`, e.g. `2.32.1`). */
  version(): Promise<string>;
  /** Local VMs and image cache entries. */
  list(): Promise<readonly VmListing[]>;
  /** The VM's IPv4 address, waiting up to `waitS` seconds; rejects if it has none. */
  ip(name: string, options: { waitS: number; signal?: AbortSignal }): Promise<string>;
}
