/**
 * The four VM health checks, each on the narrowest port it needs.
 */
import type { SshSession } from '../sys/ssh.ts';
import { timed, type CheckResult } from './check.ts';
import { parseDf } from './df.ts';
import type { HealthVmManager } from './vm-port.ts';

/** `vm-exists`: `tart list` shows the VM, running. */
export function checkVmExists(driver: Pick<HealthVmManager, 'list'>, name: string): Promise<CheckResult<'vm-exists'>> {
  return timed('vm-exists', async () => {
    const vm = (await driver.list()).find((v) => v.name === name && v.source === 'local');
    if (vm === undefined) return { ok: false, detail: `tart list does not show ${name}`, code: 'VM_NOT_FOUND' };
    if (vm.state !== 'running') return { ok: false, detail: `${name} is ${vm.state}, not running`, code: 'VM_NOT_RUNNING' };
    return { ok: true, detail: `${name} is running` };
  });
}

/** `vm-ip`: `tart ip` answers with an address within `waitS` seconds. */
export function checkVmIp(
  driver: Pick<HealthVmManager, 'ip'>,
  name: string,
  options: { waitS: number; signal?: AbortSignal },
): Promise<CheckResult<'vm-ip'>> {
  return timed('vm-ip', async () => {
    const ip = await driver.ip(name, { waitS: options.waitS, signal: options.signal });
    return { ok: true, detail: ip };
  });
}

/** `ssh-alive`: `echo alive` over SSH prints `alive`. */
export function checkSshAlive(session: Pick<SshSession, 'exec'>, options: { timeoutMs: number }): Promise<CheckResult<'ssh-alive'>> {
  return timed('ssh-alive', async () => {
    const r = await session.exec('echo alive', { timeoutMs: options.timeoutMs });
    if (r.exitCode === 0 && r.stdout.trim() === 'alive') return { ok: true, detail: 'alive' };
    return {
      ok: false,
      detail: `echo alive exited ${r.exitCode ?? r.signal} and printed ${JSON.stringify(r.stdout.trim().slice(0, 80))}`,
    };
  });
}

/** `disk-space`: `df -h /` in the VM shows at least `minFreeDiskGb` GiB available. */
export function checkDiskSpace(
  session: Pick<SshSession, 'exec'>,
  options: { minFreeDiskGb: number; timeoutMs: number },
): Promise<CheckResult<'disk-space'>> {
  return timed('disk-space', async () => {
    const r = await session.exec('df -h /', { timeoutMs: options.timeoutMs });
    const usage = r.exitCode === 0 ? parseDf(r.stdout) : null;
    if (usage === null) {
      return { ok: false, detail: `df -h / failed (exit ${r.exitCode ?? r.signal}): ${(r.stderr || r.stdout).trim().slice(0, 200)}` };
    }
    const free = `${usage.availGb.toFixed(1)} GiB free of ${usage.sizeGb.toFixed(1)} GiB`;
    if (usage.availGb < options.minFreeDiskGb) {
      return { ok: false, detail: `${free} on /, below the ${options.minFreeDiskGb} GiB minimum`, code: 'VM_UNHEALTHY' };
    }
    return { ok: true, detail: free };
  });
}
