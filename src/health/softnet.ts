/**
 * Can this host run clones under tart's Softnet (`tart run --net-softnet --net-softnet-allow …`)?
 *
 * What tart needs (tart's Sources/tart/Network/Softnet.swift and release notes):
 * - tart ≥ 2.7.1, the first release with `--net-softnet-allow`;
 * - the `softnet` executable on tart's PATH (`brew install cirruslabs/cli/softnet`); tart looks
 *   it up there and fails `InitializationFailed(why: "softnet not found in PATH")` otherwise;
 * - on macOS, softnet running as root: the executable set-uid root, or allowed by passwordless
 *   sudo. tart offers to set the bit itself only when run from a terminal; the agent runs
 *   without one, so the host must be prepared beforehand.
 */
import { accessSync, constants, realpathSync, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { Exec } from '../sys/exec.ts';
import { timed, type CheckResult } from './check.ts';
import type { HealthVmManager } from './vm-port.ts';

/** The first tart release with `--net-softnet-allow` (tart release notes, 2.7.1). */
export const SOFTNET_ALLOW_MIN_TART = '2.7.1';

export interface SoftnetCheckOptions {
  driver: Pick<HealthVmManager, 'version'>;
  /** Runs `sudo --non-interactive softnet --help` (rejects when sudo wants a password). */
  exec: Pick<Exec, 'run'>;
  /** The PATH tart runs with. */
  searchPath: string;
  /** Default `process.platform`: the set-uid check applies to macOS only. */
  platform?: NodeJS.Platform;
}

/** `a ≥ b` for dotted versions; a dev build (`SNAPSHOT`, not all digits) counts as new. */
export function versionAtLeast(version: string, min: string): boolean {
  if (!/^\d+(\.\d+)*$/.test(version)) return true;
  const a = version.split('.').map(Number);
  const b = min.split('.').map(Number);
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d > 0;
  }
  return true;
}

function findOnPath(name: string, searchPath: string): string | undefined {
  for (const dir of searchPath.split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** The `vm-network` check: every requirement of Softnet, each failure naming its fix. */
export function checkSoftnet(options: SoftnetCheckOptions): Promise<CheckResult<'vm-network'>> {
  return timed('vm-network', async () => {
    const version = await options.driver.version();
    if (!versionAtLeast(version, SOFTNET_ALLOW_MIN_TART)) {
      return { ok: false, detail: `tart ${version} has no --net-softnet-allow (needs tart ≥ ${SOFTNET_ALLOW_MIN_TART})` };
    }
    const softnet = findOnPath('softnet', options.searchPath);
    if (softnet === undefined) {
      return { ok: false, detail: `softnet not found on PATH (${options.searchPath}); tart looks for it there` };
    }
    if ((options.platform ?? process.platform) !== 'darwin') {
      return { ok: true, detail: `softnet at ${softnet}, tart ${version} (not macOS: set-uid not checked)` };
    }
    const real = realpathSync(softnet);
    const st = statSync(real);
    if (st.uid === 0 && (st.mode & 0o4000) !== 0) return { ok: true, detail: `softnet at ${real} is set-uid root, tart ${version}` };
    try {
      await options.exec.run(['sudo', '--non-interactive', real, '--help'], { timeoutMs: 10_000 });
      return { ok: true, detail: `softnet at ${real} runs as root by passwordless sudo, tart ${version}` };
    } catch {
      return {
        ok: false,
        detail: `softnet at ${real} is neither set-uid root nor allowed by passwordless sudo: the agent (no terminal) cannot start isolated VMs`,
      };
    }
  });
}
