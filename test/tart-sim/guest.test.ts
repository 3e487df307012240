/**
 * The simulated guest: real SSH into the VM's sshd, the VM's own home and `df`, SFTP, and each
 * fault (freeze, crash, ssh-down, slow boot, disk, hang, start failure) — with no process
 * outliving its VM.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTartSim, type TartSim } from '../support/tart-sim.ts';
import { bootVm, ssh, stateOf, waitUntil } from './test-helpers.ts';

let sim: TartSim;
beforeEach(async () => {
  sim = await createTartSim({ bootDelayS: 0.1 });
  await sim.createBaseVm('base');
});
afterEach(async () => {
  await sim.cleanup();
});

const guestProcesses = (): string[] =>
  sim.listProcesses().map((p) => p.cmdline).filter((c) => !c.includes('main.ts'));

describe('SSH into the simulated VM', () => {
  it('runs commands in the VM home, with the configured df, also from login shells', async () => {
    await sim.tart(['clone', 'base', 'vm']); // the clone inherits the authorized key
    const { ip } = await bootVm(sim, 'vm');
    expect(await ssh(sim, ip, 'echo alive')).toMatchObject({ code: 0, stdout: 'alive\n' });
    expect((await ssh(sim, ip, 'pwd')).stdout).toBe(`${join(sim.tartHome, 'vms', 'vm', 'guest')}\n`);
    const df = 'Filesystem      Size  Used Avail Use% Mounted on\n/dev/vda1        50G   20G   30G  40% /\n';
    expect((await ssh(sim, ip, 'df -h /')).stdout).toBe(df);
    expect((await ssh(sim, ip, "bash -lc 'df -h /'")).stdout).toBe(df);
    expect((await ssh(sim, ip, 'exit 7')).code).toBe(7);
    const bg = await ssh(sim, ip, 'nohup sh -c "sleep 0.2; echo done > bg.txt" >/dev/null 2>&1 & echo started');
    expect(bg.stdout).toBe('started\n');
    await waitUntil('background job', async () => (await ssh(sim, ip, 'cat bg.txt')).stdout === 'done\n');
  });

  it('accepts SFTP uploads into the VM home', async () => {
    const { ip } = await bootVm(sim, 'base');
    const local = join(sim.dir, 'upload.sh');
    writeFileSync(local, 'echo uploaded\n');
    const sftp = await new Promise<number | null>((resolve) => {
      const args = sim.sshArgs(ip).slice(0, -1);
      const child = execFile('sftp', [...args, '-b', '-', `${sim.user}@${ip}`], { timeout: 10_000 }, (err) => {
        resolve(err === null ? 0 : ((err as { code?: number }).code ?? null));
      });
      child.stdin?.end(`put ${local} upload.sh\n`);
    });
    expect(sftp).toBe(0);
    expect((await ssh(sim, ip, 'sh upload.sh')).stdout).toBe('uploaded\n');
  });

  it('rejects a key that is not authorized', async () => {
    await sim.createBaseVm('nokey', { authorizeKey: false });
    const { run } = { run: sim.startRun('nokey') };
    const ip = (await sim.tart(['ip', 'nokey', '--wait', '5'])).stdout.trim();
    await waitUntil('sshd', async () => (await ssh(sim, ip, 'true', 3000)).stderr.includes('Permission denied'));
    await sim.tart(['stop', 'nokey']);
    await run.exited;
  });
});

describe('faults', () => {
  it('freeze hangs new connections', async () => {
    const { ip } = await bootVm(sim, 'base');
    await sim.fault('base', 'freeze');
    const states = sim.listProcesses().filter((p) => !p.cmdline.includes('main.ts')).map((p) => p.state);
    expect(states.length).toBeGreaterThan(0);
    expect(new Set(states)).toEqual(new Set(['T']));
    const hung = await ssh(sim, ip, 'echo alive', 1500);
    expect(hung.signal).toBe('SIGKILL'); // killed by our timeout: it hung
  });

  it('crash ends the run with exit 1 and kills the VM', async () => {
    const { ip, run } = await bootVm(sim, 'base');
    await ssh(sim, ip, 'nohup sleep 300 >/dev/null 2>&1 &');
    await sim.fault('base', 'crash');
    const r = await run.exited;
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^Error: /);
    expect(guestProcesses()).toEqual([]);
    expect(await stateOf(sim, 'base')).toBe('stopped');
  });

  it('ssh-down refuses connections while ip answers; ssh-down off restores SSH', async () => {
    const { ip } = await bootVm(sim, 'base');
    await sim.fault('base', 'ssh-down');
    expect((await sim.tart(['ip', 'base'])).stdout).toBe(`${ip}\n`);
    expect((await ssh(sim, ip, 'true', 5000)).stderr).toMatch(/Connection refused/);
    await sim.fault('base', 'ssh-down', 'off');
    await waitUntil('sshd back', async () => (await ssh(sim, ip, 'true', 3000)).code === 0);
  });

  it('slow-boot is inherited by clones and delays ip and SSH', async () => {
    const bootS = 1.5;
    await sim.fault('base', 'slow-boot', String(bootS));
    await sim.tart(['clone', 'base', 'vm']);
    const t = Date.now();
    sim.startRun('vm');
    const ip = (await sim.tart(['ip', 'vm', '--wait', '30'])).stdout.trim();
    expect(Date.now() - t).toBeGreaterThanOrEqual(bootS * 1000 - 100);
    await waitUntil('ssh', async () => (await ssh(sim, ip, 'true', 10_000)).code === 0, 60_000);
  });

  it('disk sets what df reports, live', async () => {
    const { ip } = await bootVm(sim, 'base');
    await sim.fault('base', 'disk', '100', '2.5');
    expect((await ssh(sim, ip, 'df -h /')).stdout.split('\n')[1]).toBe('/dev/vda1       100G   98G  2.5G  98% /');
    expect((await ssh(sim, ip, 'df -k /')).stdout.split('\n')[0]).toBe('Filesystem     1K-blocks      Used Available Use% Mounted on');
  });

  it('hang makes a subcommand hang until killed', async () => {
    await sim.hang(['ip', 'list']);
    const r = await sim.tart(['ip', 'base'], { timeoutMs: 1500 });
    expect(r.signal).toBe('SIGKILL');
    await sim.hang([]);
    expect((await sim.tart(['list', '-q'])).stdout).toBe('base\n');
  });

  it('start-fail makes run exit 1 after taking the lock', async () => {
    await sim.fault('base', 'start-fail', 'The virtual machine failed to start.');
    expect(await sim.tart(['run', 'base'])).toMatchObject({ code: 1, stderr: 'The virtual machine failed to start.\n' });
    await sim.fault('base', 'clear');
    await bootVm(sim, 'base');
  });
});
