/**
 * The "hypervisor" of one simulated VM run, started detached by `tart run`:
 *
 *   booting ──boot delay──▶ booted (lease granted, sshd up) ⇄ sshd down (ssh-down fault)
 *
 * It keeps sshd up or down as the VM's settings say, and — its one hard duty — kills every
 * process of the VM when the run process disappears by any path, SIGKILL included: its stdin is
 * a pipe from the run process, so EOF means the run process is gone (a PID poll backs this up).
 *
 * argv: <vmDir> <token> <ip> <mac> <runPid>
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync } from 'node:fs';
import { join } from 'node:path';
import { openHome, readSettings } from './home.ts';
import { grantLease } from './leases.ts';
import { findVmProcesses, isAlive, killProcesses } from './procs.ts';
import { LEASE_S, readKnobs } from './knobs.ts';
import { writeGuestFiles } from './guest-files.ts';

const [vmDir = '', token = '', ip = '', mac = '', runPidArg = '0'] = process.argv.slice(2);
const runPid = Number(runPidArg);
const env = process.env;
const home = openHome(env);
const knobs = readKnobs(env);
const settings = readSettings(vmDir);
const bootDelayMs = (settings.bootDelayS ?? knobs.bootDelayS) * 1000;
const sshReadyAtMs = Date.now() + bootDelayMs;
const files = writeGuestFiles(vmDir, { ip, token, env });

let sshd: ChildProcess | undefined;
let lastStartMs = 0;
let tearingDown = false;

/** Kills every process of the VM, repeating until none is left (sessions may fork meanwhile). */
function killVm(): void {
  for (let i = 0; i < 50; i++) {
    const procs = findVmProcesses(token, files.sshdConfig);
    if (procs.length === 0) return;
    killProcesses(procs.map((p) => p.pid), 'SIGKILL');
  }
}

function teardown(): never {
  tearingDown = true;
  killVm();
  process.exit(0);
}

function startSshd(): void {
  lastStartMs = Date.now();
  let log: number | 'ignore' = 'ignore';
  try {
    log = openSync(join(files.runtimeDir, 'sshd.log'), 'a');
  } catch {
    // the VM dir was deleted or replaced under a running VM (tart allows both)
  }
  const [cmd = '', ...args] = files.sshdArgv;
  // Its own session, so a terminal's signals to the run process's group never reach the guest.
  const child = spawn(cmd, args, {
    env: { ...env, TART_SIM_VM_TOKEN: token },
    stdio: ['ignore', log, log],
    detached: true,
  });
  child.on('exit', () => {
    if (sshd === child) sshd = undefined;
  });
  sshd = child;
}

function stopSshd(): void {
  // Only the listener: like turning Remote Login off, open sessions stay.
  sshd?.kill('SIGKILL');
  sshd = undefined;
}

process.stdin.on('end', teardown);
process.stdin.on('close', teardown);
process.stdin.on('error', teardown);
process.stdin.resume();
process.on('SIGTERM', teardown);
process.on('SIGINT', teardown);

setTimeout(() => {
  if (!tearingDown) void grantLease(home, mac, ip, LEASE_S);
}, bootDelayMs);

setInterval(() => {
  if (!isAlive(runPid)) teardown();
  const wantSshd = Date.now() >= sshReadyAtMs && readSettings(vmDir).sshDown !== true;
  // An sshd that died (or failed to bind) is restarted, at most once a second.
  if (wantSshd && sshd === undefined && Date.now() - lastStartMs > 1000) startSshd();
  else if (!wantSshd && sshd !== undefined) stopSshd();
}, 100);
