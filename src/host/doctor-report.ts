/**
 * The doctor's output: a table with ✓/✗, timings and a one-line fix hint under each failure,
 * or `{"checks": [...]}` for `--json`.
 */
import type { CheckResult } from '../health/check.ts';

/** What the hints may mention. */
export interface HintContext {
  vmName: string;
  vmUser: string;
  vmSshKey: string;
  logDir: string;
  configPath: string;
  cloneName?: string;
}

const hostKeyHint =
  'the clone answered with another host key than vmHostKey: if the base image was rebuilt, pin its new key (expo-worker doctor --learn-host-key); otherwise another machine answers at that address (stale DHCP lease?): check tart ip and /var/db/dhcpd_leases';

/** A one-line fix for a failed check, chosen by check name and error code. */
export function fixHint(check: CheckResult, ctx: HintContext): string {
  switch (check.name) {
    case 'config':
      return `fix the fields named above in ${ctx.configPath}`;
    case 'tart-found':
      return 'install tart (brew install cirruslabs/cli/tart) or set tartPath in the config';
    case 'base-vm-exists':
      return `create the base snapshot (tart clone <image> ${ctx.vmName}) or fix vmName`;
    case 'host-disk':
      return 'free disk on the host (tart prune --entries caches, delete unused VMs) or lower hostMinFreeDiskGb';
    case 'vm-limit':
      return 'stop the other running VMs (tart list; tart stop NAME): macOS runs at most 2';
    case 'ssh-key':
      return `make vmSshKey point at a readable private key (${ctx.vmSshKey})`;
    case 'vm-start':
    case 'vm-exists':
      return `read the run log in ${ctx.logDir}; check that the base VM starts: tart run ${ctx.vmName} --no-graphics`;
    case 'vm-ip':
      return "the VM got no IP address: check the image's network settings (shared NAT) or raise vmIpWaitS";
    case 'ssh-alive':
      switch (check.code) {
        case 'SSH_AUTH_REJECTED':
          return `authorize the public key of ${ctx.vmSshKey} for ${ctx.vmUser} in the base image (~/.ssh/authorized_keys), or fix vmUser/vmSshKey`;
        case 'SSH_REFUSED':
          return 'enable Remote Login in the base image: sudo systemsetup -setremotelogin on';
        case 'SSH_HOST_KEY_MISMATCH':
          return hostKeyHint;
        case 'SSH_TIMEOUT':
          return `the VM never answered SSH: check that it boots (tart run ${ctx.vmName}) or raise sshReadyTimeoutS`;
        default:
          return `check SSH by hand: ssh -i ${ctx.vmSshKey} ${ctx.vmUser}@$(tart ip ${ctx.cloneName ?? ctx.vmName}) echo alive`;
      }
    case 'vm-host-key':
      return hostKeyHint;
    case 'vm-network':
      return 'install softnet (brew install cirruslabs/cli/softnet) where the agent\'s PATH finds it, make it set-uid root (sudo chown root "$(realpath "$(which softnet)")"; sudo chmod u+s "$(realpath "$(which softnet)")"), upgrade tart if it is older than 2.7.1 — or set vmNetwork.isolation to "shared"';
    case 'disk-space':
      return `free space in the base image or grow its disk (tart set ${ctx.vmName} --disk-size N, then grow the partition), or lower minFreeDiskGb`;
    case 'vm-delete':
      return `delete the clone by hand: tart stop ${ctx.cloneName ?? '<name>'}; tart delete ${ctx.cloneName ?? '<name>'}`;
    case 'controller-liveness':
      return "raise the controller's --heartbeat-timeout to at least 4 s (vm-monitor beats every second at the fastest)";
    case 'controller-reachable':
      return 'check controllerUrl and that the controller is running and reachable from this host';
    case 'controller-auth':
      if (check.code === 'AUTH_FORBIDDEN') return "the apiKey belongs to another worker: set workerId to that worker's id, or use this worker's key";
      return 'the controller does not know this apiKey: create the worker (POST /api/v1/workers) and copy its key into apiKey';
    default:
      return 'see the detail above';
  }
}

function formatMs(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** The human table. */
export function formatTable(checks: readonly CheckResult[], ctx: HintContext): string {
  const width = Math.max(...checks.map((c) => c.name.length));
  const lines: string[] = [];
  for (const c of checks) {
    // A detail of several lines keeps them under its first, aligned.
    const [first, ...more] = c.detail.split('\n');
    lines.push(`${c.ok ? '✓' : '✗'} ${c.name.padEnd(width)}  ${formatMs(c.durationMs).padStart(8)}  ${first}`);
    for (const m of more) lines.push(`  ${' '.repeat(width)}  ${' '.repeat(8)}  ${m}`);
    if (!c.ok && !c.detail.startsWith('skipped')) lines.push(`  ${' '.repeat(width)}  ${' '.repeat(8)}  fix: ${fixHint(c, ctx)}`);
  }
  const failed = checks.filter((c) => !c.ok).length;
  lines.push('', failed === 0 ? `all ${checks.length} checks passed` : `${failed} of ${checks.length} checks failed`);
  return lines.join('\n');
}

/** The `--json` document. */
export function formatJson(checks: readonly CheckResult[]): string {
  return JSON.stringify({ checks: checks.map(({ name, ok, detail, durationMs }) => ({ name, ok, detail, durationMs })) }, null, 2);
}
