/**
 * The simulated bootpd: `sim/leases.json` maps each MAC to a stable loopback address (a
 * "binding", allocated from `<subnet>.2` upward) and records granted leases with their expiry.
 * A VM's sshd listens on its binding from `tart run` on; the lease is granted once the guest has
 * "booted". As on macOS, a lease outlives the VM (86,400 s by default), which is what makes
 * `tart ip` answer with a stale address after a stop or before a restarted guest has booted.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Home } from './home.ts';
import { lock, unlock } from './locks.ts';

/** One granted lease. */
export interface Lease {
  ip: string;
  grantedAtMs: number;
  expiresAtMs: number;
}

interface LeaseTable {
  bindings: Record<string, string>;
  leases: Record<string, Lease>;
}

/** The subnet prefix, e.g. `127.64.0` (TART_SIM_SUBNET; must stay inside 127.0.0.0/8). */
function subnetPrefix(env: NodeJS.ProcessEnv): string {
  const prefix = env.TART_SIM_SUBNET ?? '127.64.0';
  if (!/^127\.\d{1,3}\.\d{1,3}$/.test(prefix)) throw new Error(`TART_SIM_SUBNET must look like 127.X.Y, got ${prefix}`);
  return prefix;
}

function tablePath(home: Home): string {
  return join(home.sim, 'leases.json');
}

function read(home: Home): LeaseTable {
  try {
    return JSON.parse(readFileSync(tablePath(home), 'utf8')) as LeaseTable;
  } catch {
    return { bindings: {}, leases: {} };
  }
}

async function update<T>(home: Home, fn: (t: LeaseTable) => T): Promise<T> {
  const lockPath = join(home.sim, 'leases.lock');
  await lock(lockPath);
  try {
    const table = read(home);
    const result = fn(table);
    // Write-then-rename, so a reader that does not lock never sees a half-written table.
    writeFileSync(`${tablePath(home)}.new`, `${JSON.stringify(table, null, 2)}\n`);
    renameSync(`${tablePath(home)}.new`, tablePath(home));
    return result;
  } finally {
    unlock(lockPath);
  }
}

/** The MAC's stable address, allocating the lowest free `<subnet>.N` (N ≥ 2) on first use. */
export function bindAddress(home: Home, mac: string, env: NodeJS.ProcessEnv): Promise<string> {
  const prefix = subnetPrefix(env);
  return update(home, (t) => {
    const known = t.bindings[mac];
    if (known !== undefined) return known;
    const used = new Set(Object.values(t.bindings));
    for (let n = 2; n <= 254; n++) {
      const ip = `${prefix}.${n}`;
      if (!used.has(ip)) {
        t.bindings[mac] = ip;
        return ip;
      }
    }
    throw new Error(`address pool ${prefix}.2-254 exhausted`);
  });
}

/** Grants (or renews) the MAC's lease on its bound address. */
export function grantLease(home: Home, mac: string, ip: string, leaseS: number): Promise<void> {
  return update(home, (t) => {
    const now = Date.now();
    t.bindings[mac] = ip;
    t.leases[mac] = { ip, grantedAtMs: now, expiresAtMs: now + leaseS * 1000 };
  });
}

/** The MAC's unexpired lease, if any (reading never blocks, like tart's lease-file parse). */
export function findLease(home: Home, mac: string): Lease | undefined {
  const lease = read(home).leases[mac];
  return lease !== undefined && lease.expiresAtMs > Date.now() ? lease : undefined;
}
