/**
 * Claims a loopback /24 (`127.64.N`) for one tart-sim harness, so simulators in parallel test
 * workers never hand out the same address (every VM's sshd binds `<ip>:22`). A claim is a file
 * `<tmpdir>/tart-sim-subnets/N` created exclusively and holding the owner's PID; a claim whose
 * owner is dead is taken over.
 */
import { mkdirSync, openSync, closeSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A claimed subnet; `prefix` is e.g. `127.64.7` and goes into TART_SIM_SUBNET. */
export interface SubnetClaim {
  readonly prefix: string;
  release(): void;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function tryCreate(file: string): boolean {
  try {
    const fd = openSync(file, 'wx');
    writeSync(fd, `${process.pid}\n`);
    closeSync(fd);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return false;
  }
}

function tryClaim(file: string): boolean {
  if (tryCreate(file)) return true;
  let owner = 0;
  try {
    owner = Number(readFileSync(file, 'utf8').trim());
  } catch {
    // released meanwhile
  }
  // Several harnesses may live in one process, so only a dead owner's claim is stale.
  if (Number.isInteger(owner) && owner > 0 && alive(owner)) return false;
  rmSync(file, { force: true });
  return tryCreate(file);
}

/** Claims a free `127.64.N` (N in 1..250; N = 0 is the simulator's default, left to manual use). */
export function claimSubnet(): SubnetClaim {
  const dir = join(tmpdir(), 'tart-sim-subnets');
  mkdirSync(dir, { recursive: true });
  const start = process.pid % 250;
  for (let i = 0; i < 250; i++) {
    const n = 1 + ((start + i) % 250);
    const file = join(dir, String(n));
    if (!tryClaim(file)) continue;
    let released = false;
    return {
      prefix: `127.64.${n}`,
      release() {
        if (released) return;
        released = true;
        rmSync(file, { force: true });
      },
    };
  }
  throw new Error('tart-sim: no free loopback subnet 127.64.1-250 (stale claims in tart-sim-subnets?)');
}
