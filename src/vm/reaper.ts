/**
 * The orphan reaper: deletes this worker's clones that no live build owns — left behind by a
 * crash, a kill -9 or a host reboot. Only names of the form `<prefix>-<workerId>-<id>-<attempt>`
 * are touched, so another worker's clones (and the base snapshot) are never deleted. A running
 * orphan is stopped first.
 */
import { isExpoError } from '../protocol/errors.ts';
import type { VmDriver } from './vm-driver.ts';
import { parseCloneName } from './vm-name.ts';

export interface ReapOptions {
  driver: Pick<VmDriver, 'list' | 'stop' | 'delete'>;
  workerId: string;
  /** Default `expo`. */
  clonePrefix?: string;
  /** Build ids whose clones must stay. */
  liveBuildIds: ReadonlySet<string>;
  /** Also keeps a clone whose id this says is in use, asked after the list (so a clone made meanwhile is known). */
  keep?: (buildId: string) => boolean;
  /** `tart stop --timeout` for a running orphan, in seconds. Default 10. */
  stopTimeoutS?: number;
}

export interface ReapReport {
  /** Clones deleted. */
  deleted: string[];
  /** Clones that could not be deleted, with why. */
  failed: { name: string; error: Error }[];
}

export async function reapOrphans(options: ReapOptions): Promise<ReapReport> {
  const { driver } = options;
  const prefix = options.clonePrefix ?? 'expo';
  const report: ReapReport = { deleted: [], failed: [] };
  for (const vm of await driver.list()) {
    if (vm.source !== 'local') continue;
    const parts = parseCloneName(vm.name, prefix, options.workerId);
    if (parts === null || options.liveBuildIds.has(parts.buildId) || options.keep?.(parts.buildId) === true) continue;
    try {
      if (vm.state === 'running') {
        await driver.stop(vm.name, { timeoutS: options.stopTimeoutS ?? 10 }).catch((err: unknown) => {
          if (!isExpoError(err, 'VM_NOT_RUNNING')) throw err;
        });
      }
      await driver.delete(vm.name).catch((err: unknown) => {
        if (!isExpoError(err, 'VM_NOT_FOUND')) throw err;
      });
      report.deleted.push(vm.name);
    } catch (err) {
      report.failed.push({ name: vm.name, error: err instanceof Error ? err : new Error(String(err)) });
    }
  }
  return report;
}
