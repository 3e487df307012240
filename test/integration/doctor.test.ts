import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { midway } from '../support/busy.ts';
import { createTartSim, type TartSim } from '../support/tart-sim.ts';
import { startTestController, type TestController } from '../controller/support.ts';

// Each doctor run starts Node and a VM cycle on the simulator: slow on a busy machine.
vi.setConfig({ testTimeout: 5 * 60_000, hookTimeout: 2 * 60_000 });

const CLI = join(import.meta.dirname, '..', '..', 'src', 'cli.ts');
let sim: TartSim;
let controller: TestController | undefined;
let controllerUrl = '';
let goodKey = '';
let w2Key = '';

interface Check {
  name: string;
  ok: boolean;
  detail: string;
  durationMs: number;
}

beforeAll(async () => {
  sim = await createTartSim({ bootDelayS: 0.2 });
  await sim.createBaseVm('base');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(sim.dir, 'wrong_key')]);
  // The real controller, with worker w1 (whose key the config carries) and w2.
  controller = await startTestController({ realClock: true });
  controllerUrl = await controller.app.listen({ host: '127.0.0.1', port: 0 });
  goodKey = (await controller.enrol('w1')).apiKey;
  w2Key = (await controller.enrol('w2')).apiKey;
});
afterEach(async () => {
  await sim.fault('base', 'clear');
});
afterAll(async () => {
  await controller?.close();
  await sim?.cleanup();
});

function writeConfig(extra: Record<string, unknown> = {}): string {
  const path = join(sim.dir, 'config.json');
  const config = {
    vmName: 'base',
    vmUser: sim.user,
    vmSshKey: sim.sshKeyPath,
    controllerUrl,
    apiKey: goodKey,
    workerId: 'w1',
    tartPath: sim.tartPath,
    tartHome: sim.tartHome,
    logDir: join(sim.dir, 'logs'),
    // Generous, for a busy machine: a healthy VM ends these waits as soon as it answers. The tests
    // of a wait that runs out shrink theirs.
    vmIpWaitS: 30,
    sshReadyTimeoutS: 30,
    vmStopTimeoutS: 2,
    minFreeDiskGb: 5,
    hostMinFreeDiskGb: 0,
    ...extra,
  };
  writeFileSync(path, JSON.stringify(config));
  return path;
}

function doctor(args: string[], env: NodeJS.ProcessEnv = sim.env): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, 'doctor', ...args], { env, timeout: 180_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
    });
  });
}

async function doctorJson(extra: Record<string, unknown> = {}): Promise<{ code: number; checks: Check[]; byName: Record<string, Check> }> {
  const r = await doctor(['--config', writeConfig(extra), '--json']);
  const checks = (JSON.parse(r.stdout) as { checks: Check[] }).checks;
  return { code: r.code, checks, byName: Object.fromEntries(checks.map((c) => [c.name, c])) };
}

/** The tart run log of the doctor's clone, named in its vm-delete check. */
function runLogOf(checks: Check[]): string {
  const clone = /^(\S+) deleted$/.exec(checks.find((c) => c.name === 'vm-delete')?.detail ?? '')?.[1];
  expect(clone).toBeDefined();
  return join(sim.dir, 'logs', `${clone}.log`);
}

/** The OpenSSH fingerprint of VM `name`'s host key. */
function hostKeyOf(name: string): string {
  return execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', join(sim.tartHome, 'vms', name, 'ssh_host_ed25519_key.pub')], { encoding: 'utf8' }).split(' ')[1] as string;
}

async function vmsLeft(): Promise<string[]> {
  const r = await sim.tart(['list', '--format', 'json', '--source', 'local']);
  return (JSON.parse(r.stdout) as { Name: string }[]).map((v) => v.Name);
}

describe('expo-worker doctor', () => {
  it('passes every check on a healthy setup (JSON)', async () => {
    const { code, checks } = await doctorJson();
    expect(checks.map((c) => [c.name, c.ok])).toEqual([
      ['config', true],
      ['tart-found', true],
      ['base-vm-exists', true],
      ['host-disk', true],
      ['vm-limit', true],
      ['vm-start', true],
      ['vm-exists', true],
      ['vm-ip', true],
      ['ssh-alive', true],
      ['disk-space', true],
      ['vm-host-key', true],
      ['vm-delete', true],
      ['controller-reachable', true],
      ['controller-auth', true],
      ['controller-liveness', true],
    ]);
    for (const c of checks) expect(Object.keys(c).sort()).toEqual(['detail', 'durationMs', 'name', 'ok']);
    expect(code).toBe(0);
    // A clean cycle leaves no tart run log behind.
    expect(existsSync(runLogOf(checks))).toBe(false);
    expect(await vmsLeft()).toEqual(['base']);
  });

  it('prints a table with ✓ and timings, progress on stderr', async () => {
    const r = await doctor(['--config', writeConfig()]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/✓ ssh-alive\s+\d+(\.\d)? m?s\s+alive/);
    expect(r.stdout).toContain('all 15 checks passed');
    expect(r.stdout).toMatch(/✓ controller-liveness .*controller heartbeat timeout 120 s, long poll at most 25 s, prepare timeout 600 s\n\s+worker heartbeat every 15 s\n/);
    expect(r.stderr).toContain('doctor: waiting up to 30 s for');
  });

  it('diagnoses a wrong SSH key at once, with a fix hint', async () => {
    const sshReadyTimeoutS = 30;
    const { code, byName } = await doctorJson({ vmSshKey: join(sim.dir, 'wrong_key'), sshReadyTimeoutS });
    expect(code).toBe(1);
    expect(byName['ssh-alive']).toMatchObject({ ok: false, detail: expect.stringContaining('authentication rejected') });
    expect(byName['disk-space']?.detail).toBe('skipped: ssh-alive failed');
    expect(byName['vm-delete']?.ok).toBe(true);
    // A failed cycle keeps its tart run log for diagnosis.
    expect(existsSync(runLogOf(Object.values(byName)))).toBe(true);
    // At once: not the whole SSH wait of a retry loop (as doctor timed the check itself).
    expect(byName['ssh-alive']?.durationMs).toBeLessThan(midway(0, sshReadyTimeoutS * 1000));
    const table = await doctor(['--config', writeConfig({ vmSshKey: join(sim.dir, 'wrong_key') })]);
    expect(table.stdout).toMatch(/✗ ssh-alive/);
    expect(table.stdout).toContain('fix: authorize the public key');
    expect(await vmsLeft()).toEqual(['base']);
  });

  it('diagnoses a full disk', async () => {
    await sim.fault('base', 'disk', '50', '1');
    const { code, byName } = await doctorJson();
    expect(code).toBe(1);
    expect(byName['disk-space']).toMatchObject({ ok: false, detail: expect.stringMatching(/GiB free .* below the 5 GiB minimum/) });
    expect(byName['ssh-alive']?.ok).toBe(true);
    expect(await vmsLeft()).toEqual(['base']);
  });

  it('diagnoses a VM that never gets an IP', async () => {
    await sim.fault('base', 'no-ip');
    const vmIpWaitS = 3;
    const { code, byName } = await doctorJson({ vmIpWaitS });
    expect(code).toBe(1);
    expect(byName['vm-ip']).toMatchObject({ ok: false, detail: expect.stringContaining('no IP address found') });
    expect(byName['ssh-alive']?.detail).toBe('skipped: vm-ip failed');
    // It gave up after vmIpWaitS, not after the 120 s default (as doctor timed the check itself).
    expect(byName['vm-ip']?.durationMs).toBeLessThan(midway(vmIpWaitS * 1000, 120_000));
    expect(await vmsLeft()).toEqual(['base']);
  });

  it('diagnoses a rejected or foreign API key and a missing base VM', async () => {
    expect((await doctorJson({ apiKey: 'ewk_unknown-key-0000000000000000' })).byName['controller-auth']).toMatchObject({ ok: false, detail: expect.stringContaining('401') });
    expect((await doctorJson({ apiKey: w2Key })).byName['controller-auth']).toMatchObject({ ok: false, detail: expect.stringContaining('another worker') });
    const missing = await doctorJson({ vmName: 'nope' });
    expect(missing.byName['base-vm-exists']?.ok).toBe(false);
    expect(missing.byName['vm-start']?.detail).toBe('skipped: base-vm-exists failed');
  });

  it('checks each controller of a controllerUrl list and says which answer', async () => {
    // A port nothing listens on: a controller that was there a moment ago.
    const gone = await startTestController({ realClock: true });
    const deadUrl = await gone.app.listen({ host: '127.0.0.1', port: 0 });
    await gone.close();
    // No base VM: the VM cycle is skipped, only the controllers are asked.
    const some = await doctorJson({ controllerUrl: [deadUrl, controllerUrl], vmName: 'nope' });
    expect(some.byName['controller-reachable']).toMatchObject({ ok: true, detail: expect.stringContaining('1 of 2 controllers answer') });
    expect(some.byName['controller-reachable']?.detail).toMatch(new RegExp(`✗ ${deadUrl}: .*ECONNREFUSED`));
    expect(some.byName['controller-reachable']?.detail).toContain(`✓ ${controllerUrl}: answers (status ok)`);
    expect(some.byName['controller-reachable']?.detail).toContain('warning: 1 of 2 controllers do not answer');
    expect(some.byName['controller-auth']).toMatchObject({ ok: true, detail: `✓ ${controllerUrl}: key accepted for worker w1` });
    expect(some.byName['controller-liveness']?.ok).toBe(true);
    const none = await doctorJson({ controllerUrl: [deadUrl, `${deadUrl}/other`], vmName: 'nope' });
    expect(none.code).toBe(1);
    expect(none.byName['controller-reachable']).toMatchObject({ ok: false, detail: expect.stringContaining('no controller answers') });
    expect(none.byName['controller-auth']?.detail).toBe('skipped: controller-reachable failed');
  });

  it("shows the intervals the agent will use against a shrunk timeout, and fails a timeout too short for vm-monitor", async () => {
    for (const [timeoutMs, ok] of [[6000, true], [2000, false]] as const) {
      const short = await startTestController({ realClock: true, heartbeatTimeoutMs: timeoutMs });
      try {
        const url = await short.app.listen({ host: '127.0.0.1', port: 0 });
        const key = (await short.enrol('w1')).apiKey;
        // No base VM: the VM cycle is skipped, only the controller is asked.
        const r = await doctor(['--config', writeConfig({ controllerUrl: url, apiKey: key, vmName: 'nope' })]);
        const out = r.stdout;
        expect(out).toContain(`controller heartbeat timeout ${timeoutMs / 1000} s, long poll at most ${timeoutMs / 2000} s`);
        expect(out).toContain(`worker heartbeat every ${timeoutMs / 4000} s (configured 15 s; capped at a quarter of the timeout)`);
        expect(out).toContain('warning: workerHeartbeatS (15 s) is not shorter than');
        if (ok) {
          expect(out).toMatch(/✓ controller-liveness/);
          expect(out).toContain('vm-monitor beat every 1 s (configured 30 s');
          expect(out).not.toContain('too short for vm-monitor.sh');
        } else {
          expect(out).toMatch(/✗ controller-liveness/);
          expect(out).toContain('too short for vm-monitor.sh');
          expect(out).toContain("fix: raise the controller's --heartbeat-timeout to at least 4 s");
        }
        expect(r.code).toBe(1); // the base VM is missing
      } finally {
        await short.close();
      }
    }
  });

  it('warns that the host key is not pinned, naming the key the base image answers with', async () => {
    const { code, byName } = await doctorJson();
    expect(code).toBe(0);
    expect(byName['vm-host-key']).toMatchObject({ ok: true, detail: expect.stringContaining(`warning: not pinned`) });
    expect(byName['vm-host-key']?.detail).toContain(`"vmHostKey": "${hostKeyOf('base')}"`);
  });

  it('--learn-host-key pins the base image key into the config file (mode and other fields kept); the next run checks it', async () => {
    const path = writeConfig();
    chmodSync(path, 0o600);
    const learnt = await doctor(['--config', path, '--json', '--learn-host-key']);
    expect(learnt.code).toBe(0);
    const saved = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    expect(saved.vmHostKey).toBe(hostKeyOf('base'));
    expect(saved.apiKey).toBe(goodKey);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const again = await doctor(['--config', path, '--json']);
    const byName = Object.fromEntries((JSON.parse(again.stdout) as { checks: Check[] }).checks.map((c) => [c.name, c]));
    expect(again.code).toBe(0);
    expect(byName['vm-host-key']).toMatchObject({ ok: true, detail: `${hostKeyOf('base')} matches vmHostKey` });
  });

  it('--learn-host-key writes through a symlinked config to its target, keeping the link, the mode and (as root) the owner', async () => {
    const target = join(sim.dir, 'real-config.json');
    renameSync(writeConfig(), target);
    chmodSync(target, 0o640);
    const link = join(sim.dir, 'linked-config.json');
    rmSync(link, { force: true });
    symlinkSync(target, link);
    // Run as root on a file of another user (the agent's), the file stays that user's.
    const asRoot = process.getuid?.() === 0;
    if (asRoot) chownSync(target, 4321, 4322);
    const learnt = await doctor(['--config', link, '--json', '--learn-host-key']);
    expect(learnt.code, learnt.stdout + learnt.stderr).toBe(0);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readlinkSync(link)).toBe(target);
    const saved = JSON.parse(readFileSync(target, 'utf8')) as Record<string, unknown>;
    expect(saved).toMatchObject({ vmHostKey: hostKeyOf('base'), apiKey: goodKey });
    const st = statSync(target);
    expect(st.mode & 0o777).toBe(0o640);
    if (asRoot) expect([st.uid, st.gid]).toEqual([4321, 4322]);
    expect(readdirSync(sim.dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('--learn-host-key leaves a vmHostKey list (rotation) that holds the seen key unchanged instead of cutting it to one key', async () => {
    const other = `SHA256:${'B'.repeat(43)}`;
    const path = writeConfig({ vmHostKey: [other, hostKeyOf('base')] });
    const before = readFileSync(path, 'utf8');
    const learnt = await doctor(['--config', path, '--json', '--learn-host-key']);
    expect(learnt.code, learnt.stdout + learnt.stderr).toBe(0);
    expect(readFileSync(path, 'utf8')).toBe(before);
    const check = (JSON.parse(learnt.stdout) as { checks: Check[] }).checks.find((c) => c.name === 'vm-host-key');
    expect(check).toMatchObject({ ok: true, detail: `${hostKeyOf('base')} is already pinned (vmHostKey, one of 2: ${other}, ${hostKeyOf('base')}); ${path} left unchanged` });
  });

  it('--learn-host-key replaces a vmHostKey list without the seen key, naming what was there', async () => {
    const old = [`SHA256:${'B'.repeat(43)}`, `SHA256:${'C'.repeat(43)}`];
    const path = writeConfig({ vmHostKey: old });
    const learnt = await doctor(['--config', path, '--json', '--learn-host-key']);
    expect(learnt.code, learnt.stdout + learnt.stderr).toBe(0);
    expect((JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>).vmHostKey).toBe(hostKeyOf('base'));
    const check = (JSON.parse(learnt.stdout) as { checks: Check[] }).checks.find((c) => c.name === 'vm-host-key');
    expect(check?.detail).toBe(`pinned ${hostKeyOf('base')}: wrote "vmHostKey" to ${path} (was ${old.join(', ')})`);
  });

  it('a clone answering with another host key than vmHostKey fails ssh-alive and vm-host-key, naming both keys', async () => {
    const pinned = `SHA256:${'A'.repeat(43)}`;
    const { code, byName } = await doctorJson({ vmHostKey: pinned });
    expect(code).toBe(1);
    expect(byName['ssh-alive']).toMatchObject({ ok: false });
    expect(byName['vm-host-key']?.ok).toBe(false);
    expect(byName['vm-host-key']?.detail).toContain(`host key ${hostKeyOf('base')}, not the pinned ${pinned}`);
    expect(byName['vm-delete']?.ok).toBe(true);
    const table = await doctor(['--config', writeConfig({ vmHostKey: pinned })]);
    expect(table.stdout).toContain('fix: the clone answered with another host key than vmHostKey');
    expect(await vmsLeft()).toEqual(['base']);
  });

  it('checks what Softnet isolation needs: softnet on PATH, then runs the clone isolated', async () => {
    const vmNetwork = { isolation: 'softnet', allow: ['10.0.0.5/32'] };
    const missing = await doctorJson({ vmNetwork });
    expect(missing.code).toBe(1);
    expect(missing.byName['vm-network']).toMatchObject({ ok: false, detail: expect.stringContaining('softnet not found on PATH') });
    expect(missing.byName['vm-start']).toMatchObject({ ok: false, detail: expect.stringContaining('softnet not found in PATH') });
    expect(await vmsLeft()).toEqual(['base']);

    const fakeBin = join(import.meta.dirname, '..', 'tart-sim', 'fake-bin');
    const r = await doctor(['--config', writeConfig({ vmNetwork }), '--json'], { ...sim.env, PATH: `${fakeBin}:${sim.env.PATH ?? ''}` });
    const byName = Object.fromEntries((JSON.parse(r.stdout) as { checks: Check[] }).checks.map((c) => [c.name, c]));
    expect(byName['vm-network']).toMatchObject({ ok: true, detail: expect.stringContaining('10.0.0.5/32') });
    expect(byName['vm-network']?.detail).toContain('127.0.0.1/32'); // the controller, allowed by itself
    expect(byName['ssh-alive']?.ok).toBe(true);
    expect(r.code).toBe(0);
  });

  it('names every bad config field and exits 1; 64 on bad arguments', async () => {
    const path = join(sim.dir, 'bad.json');
    writeFileSync(path, JSON.stringify({ vmName: 'base', maxConcurrentBuilds: 5 }));
    const r = await doctor(['--config', path]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('vmUser: is required');
    expect(r.stdout).toContain('maxConcurrentBuilds: must be');
    expect((await doctor(['--bogus'])).code).toBe(64);
  });
});
