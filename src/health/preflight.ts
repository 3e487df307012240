/**
 * Host preflight: can this Mac run a build VM at all? tart found and answering `--version`, the
 * base snapshot present, enough free disk where tart keeps its VMs, and fewer than 2 macOS VMs
 * running (Apple's limit, counted across every tool on the host, not just ours).
 */
import { statfs } from 'node:fs/promises';
import { dirname } from 'node:path';
import { timed, type CheckResult, type PreflightCheckName } from './check.ts';
import type { HealthVmManager, VmListing } from './vm-port.ts';

/** Apple's limit of concurrently running macOS guests per host. */
export const MAX_RUNNING_MACOS_VMS = 2;

/** Free bytes of the filesystem holding `path`. */
export type FreeBytes = (path: string) => Promise<number>;

export interface PreflightOptions {
  driver: Pick<HealthVmManager, 'version' | 'list'>;
  /** The base snapshot clones are made from. */
  baseVm: string;
  /** Where tart keeps VMs (TART_HOME, default `~/.tart`); its filesystem is measured. */
  tartHome: string;
  /** Least free space on the host, in GiB. */
  minHostFreeDiskGb: number;
  /** Default {@link MAX_RUNNING_MACOS_VMS}. */
  maxRunningVms?: number;
  /** Default: `statfs` of the nearest existing ancestor of the path. */
  freeBytes?: FreeBytes;
}

/** `statfs` of `path`, or of its nearest existing ancestor (TART_HOME may not exist yet). */
export const statfsFreeBytes: FreeBytes = async (path) => {
  for (let p = path; ; p = dirname(p)) {
    try {
      const s = await statfs(p);
      return s.bavail * s.bsize;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || dirname(p) === p) throw err;
    }
  }
};

/** Runs the four preflight checks in order; stops after `tart-found` fails (nothing else can run). */
export async function runPreflight(options: PreflightOptions): Promise<CheckResult<PreflightCheckName>[]> {
  const results: CheckResult<PreflightCheckName>[] = [];
  const tart = await timed('tart-found', async () => ({ ok: true, detail: `tart ${await options.driver.version()}` }));
  results.push(tart);
  if (!tart.ok) return results;

  let vms: readonly VmListing[] | undefined;
  results.push(
    await timed('base-vm-exists', async () => {
      vms = await options.driver.list();
      const base = vms.find((v) => v.name === options.baseVm);
      if (base === undefined) return { ok: false, detail: `no VM named ${options.baseVm} in tart list`, code: 'VM_NOT_FOUND' };
      return { ok: true, detail: `${options.baseVm} (${base.source}, ${base.state})` };
    }),
  );

  results.push(
    await timed('host-disk', async () => {
      const freeGb = (await (options.freeBytes ?? statfsFreeBytes)(options.tartHome)) / 1024 ** 3;
      const detail = `${freeGb.toFixed(1)} GiB free at ${options.tartHome}`;
      if (freeGb < options.minHostFreeDiskGb) return { ok: false, detail: `${detail}, below ${options.minHostFreeDiskGb} GiB` };
      return { ok: true, detail };
    }),
  );

  results.push(
    await timed('vm-limit', async () => {
      const max = options.maxRunningVms ?? MAX_RUNNING_MACOS_VMS;
      const running = (vms ?? (await options.driver.list())).filter((v) => v.source === 'local' && v.state === 'running');
      const names = running.map((v) => v.name).join(', ') || 'none';
      if (running.length >= max) {
        return { ok: false, detail: `${running.length} VMs already running (${names}); the host allows ${max}`, code: 'VM_LIMIT' };
      }
      return { ok: true, detail: `${running.length} of ${max} running (${names})` };
    }),
  );
  return results;
}
