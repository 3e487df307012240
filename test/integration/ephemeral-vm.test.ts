import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { NodeExec } from '../../src/sys/exec.ts';
import { Ssh2Client } from '../../src/sys/ssh2-client.ts';
import { EphemeralVm, type EphemeralVmConfig } from '../../src/vm/ephemeral-vm.ts';
import { reapOrphans } from '../../src/vm/reaper.ts';
import type { CheckResult } from '../../src/health/check.ts';
import type { SshClient } from '../../src/sys/ssh.ts';
import { VmStartLock } from '../../src/vm/start-lock.ts';
import { TartCli } from '../../src/vm/tart-cli.ts';
import { midway } from '../support/busy.ts';
import { createTartSim, type TartSim } from '../support/tart-sim.ts';

let sim: TartSim;
let driver: TartCli;
let base: Omit<EphemeralVmConfig, 'driver'> & { driver: TartCli };
const acquired: EphemeralVm[] = [];

function simEnv(): Record<string, string> {
  return Object.fromEntries(Object.entries(sim.env).filter(([k]) => k.startsWith('TART_SIM_'))) as Record<string, string>;
}

beforeAll(async () => {
  sim = await createTartSim({ bootDelayS: 0.2, shuffleKeys: true });
  driver = new TartCli({ exec: new NodeExec(), tartPath: sim.tartPath, tartHome: sim.tartHome, env: simEnv(), callTimeoutMs: 10_000, graceMs: 3000 });
  const logDir = join(sim.dir, 'logs');
  mkdirSync(logDir, { recursive: true });
  await sim.createBaseVm('base');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(sim.dir, 'other_key')]);
  base = {
    driver,
    ssh: new Ssh2Client(),
    baseVm: 'base',
    workerId: 'w1',
    logDir,
    sshUser: sim.user,
    sshPrivateKey: readFileSync(sim.sshKeyPath),
    // Generous, for a busy machine: a healthy VM ends these waits as soon as it answers. The tests
    // of a wait that runs out shrink theirs.
    ipWaitS: 30,
    sshReadyTimeoutS: 30,
    sshConnectTimeoutMs: 10_000,
    minFreeDiskGb: 5,
    stopTimeoutS: 2,
    exitWaitMs: 5000,
  };
});
afterEach(async () => {
  await Promise.allSettled(acquired.splice(0).map((vm) => vm.release()));
  await sim.fault('base', 'clear').catch(() => undefined);
});
afterAll(async () => {
  await sim?.cleanup();
});

async function names(): Promise<string[]> {
  return (await driver.list()).filter((v) => v.source === 'local').map((v) => v.name);
}

/** The failed check's result from a `VM_UNHEALTHY` error (acquire times each check itself). */
function failedCheck(err: unknown, name: string): CheckResult<string> | undefined {
  return (err as { details?: { checks?: CheckResult<string>[] } }).details?.checks?.find((c) => c.name === name);
}

describe('EphemeralVm on the tart simulator', () => {
  it('acquires a healthy clone and releases it completely', async () => {
    const vm = await EphemeralVm.acquire(base, { buildId: 'abcdefghijklmnop', attempt: 1 });
    acquired.push(vm);
    expect(vm.name).toBe('expo-w1-abcdefghijklmnop-1');
    expect(vm.ip).toMatch(/^127\.64\./);
    expect(vm.checks.map((c) => [c.name, c.ok])).toEqual([
      ['vm-exists', true],
      ['vm-ip', true],
      ['ssh-alive', true],
      ['disk-space', true],
    ]);
    expect((await vm.session.exec('echo hi')).stdout).toBe('hi\n');
    expect(await names()).toContain(vm.name);
    await vm.release();
    await vm.release(); // idempotent
    expect(await names()).toEqual(['base']);
    expect((await vm.exited).code).toBe(0);
  });

  it('surfaces a crash of tart run through exited', async () => {
    const vm = await EphemeralVm.acquire(base, { buildId: 'crash', attempt: 1 });
    acquired.push(vm);
    await sim.fault(vm.name, 'crash');
    const exit = await vm.exited;
    expect(exit.code).toBe(1);
    expect(exit.error?.code).toBe('VM_EXITED');
    await vm.release();
    expect(await names()).toEqual(['base']);
  });

  it('fails a VM that never gets an IP with vm-ip, quickly, and deletes it', async () => {
    await sim.fault('base', 'no-ip');
    const ipWaitS = 3;
    const err = await EphemeralVm.acquire({ ...base, ipWaitS }, { buildId: 'noip', attempt: 1 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'VM_UNHEALTHY', details: { check: 'vm-ip', checkCode: 'VM_NO_IP' } });
    // Quickly: it gave up after ipWaitS, not after the 120 s default (timed by acquire itself).
    expect(failedCheck(err, 'vm-ip')?.durationMs).toBeLessThan(midway(ipWaitS * 1000, 120_000));
    expect(await names()).toEqual(['base']);
  });

  it('fails low disk with disk-space and deletes the clone', async () => {
    await sim.fault('base', 'disk', '50', '2');
    const err = await EphemeralVm.acquire(base, { buildId: 'lowdisk', attempt: 1 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'VM_UNHEALTHY', details: { check: 'disk-space' } });
    expect(await names()).toEqual(['base']);
  });

  it('hands the VM over once SSH logs in, before ssh-alive and disk-space, on the connection the checks then use', async () => {
    const early: { checks: string[]; echo: Promise<string> }[] = [];
    const vm = await EphemeralVm.acquire(base, {
      buildId: 'early',
      attempt: 1,
      onSshReady: (v) => early.push({ checks: v.checks.map((c) => c.name), echo: v.session.exec('echo early').then((r) => r.stdout) }),
    });
    acquired.push(vm);
    expect(early.map((e) => e.checks)).toEqual([['vm-exists', 'vm-ip']]);
    expect(await early[0]!.echo).toBe('early\n');
    expect(vm.checks.map((c) => [c.name, c.ok])).toEqual([
      ['vm-exists', true],
      ['vm-ip', true],
      ['ssh-alive', true],
      ['disk-space', true],
    ]);
  });

  it('with low disk still fails disk-space and deletes the clone, though work started on the connection beside the checks', async () => {
    await sim.fault('base', 'disk', '50', '2');
    let handed = 0;
    const err = await EphemeralVm.acquire(base, { buildId: 'earlydisk', attempt: 1, onSshReady: () => void handed++ }).catch((e: unknown) => e);
    expect(handed).toBe(1);
    expect(err).toMatchObject({ code: 'VM_UNHEALTHY', details: { check: 'disk-space' } });
    expect(await names()).toEqual(['base']);
  });

  it('reports SSH down as refused within the bound', async () => {
    await sim.fault('base', 'ssh-down');
    const err = await EphemeralVm.acquire({ ...base, sshReadyTimeoutS: 3 }, { buildId: 'sshdown', attempt: 1 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'VM_UNHEALTHY', details: { check: 'ssh-alive', checkCode: 'SSH_REFUSED' } });
    expect(await names()).toEqual(['base']);
  });

  it('reports a wrong key at once as SSH_AUTH_REJECTED', async () => {
    // What each SSH attempt ended with: a slow machine may time an attempt out, never retry a rejection.
    const outcomes: string[] = [];
    const ssh: SshClient = {
      connect: (o) =>
        base.ssh.connect(o).then(
          (session) => (outcomes.push('connected'), session),
          (e: unknown) => {
            outcomes.push((e as { code?: string }).code ?? 'error');
            throw e;
          },
        ),
    };
    const sshReadyTimeoutS = 30;
    const err = await EphemeralVm.acquire({ ...base, ssh, sshPrivateKey: otherKey(), sshReadyTimeoutS }, { buildId: 'wrongkey', attempt: 1 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'VM_UNHEALTHY', details: { check: 'ssh-alive', checkCode: 'SSH_AUTH_REJECTED' } });
    expect(outcomes.at(-1)).toBe('SSH_AUTH_REJECTED');
    expect(outcomes.filter((o) => o === 'SSH_AUTH_REJECTED')).toHaveLength(1);
    // At once: it did not wait out the SSH wait (timed by acquire itself).
    expect(failedCheck(err, 'ssh-alive')?.durationMs).toBeLessThan(midway(0, sshReadyTimeoutS * 1000));
    expect(await names()).toEqual(['base']);
  });

  it('releases on abort', async () => {
    await sim.fault('base', 'no-ip');
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error('cancelled')), 700);
    const err = await EphemeralVm.acquire({ ...base, ipWaitS: 30 }, { buildId: 'abort', attempt: 1, signal: ac.signal }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'VM_ABORTED' });
    expect(await names()).toEqual(['base']);
  });

  it('never starts a third VM: counts VMs running on the host, ours or not', async () => {
    await sim.tart(['clone', 'base', 'other-1']);
    await sim.tart(['clone', 'base', 'other-2']);
    const r1 = sim.startRun('other-1');
    const r2 = sim.startRun('other-2');
    try {
      for (let i = 0; i < 50 && (await driver.list()).filter((v) => v.state === 'running').length < 2; i++) await new Promise((r) => setTimeout(r, 100));
      const err = await EphemeralVm.acquire(base, { buildId: 'third', attempt: 1 }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'VM_LIMIT' });
      expect((await names()).sort()).toEqual(['base', 'other-1', 'other-2']);
    } finally {
      await sim.tart(['stop', 'other-1']);
      await sim.tart(['stop', 'other-2']);
      await Promise.all([r1.exited, r2.exited]);
      await sim.tart(['delete', 'other-1', 'other-2']);
    }
  });

  it('two slots starting at once under one lock run at most 2', async () => {
    const startLock = new VmStartLock();
    const results = await Promise.allSettled(
      ['s1', 's2', 's3'].map((id) => EphemeralVm.acquire({ ...base, startLock }, { buildId: id, attempt: 1 }).then((vm) => (acquired.push(vm), vm))),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(2);
    expect(results.find((r) => r.status === 'rejected')).toMatchObject({ reason: { code: 'VM_LIMIT' } });
  });
});

/** The OpenSSH fingerprint of VM `name`'s host key (what `doctor` learns and `vmHostKey` pins). */
function hostKeyOf(name: string): string {
  const out = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', join(sim.tartHome, 'vms', name, 'ssh_host_ed25519_key.pub')], { encoding: 'utf8' });
  return out.split(' ')[1] as string;
}

describe('EphemeralVm: host key, network, run log', () => {
  it('a clone answering with the pinned host key is healthy', async () => {
    const vm = await EphemeralVm.acquire({ ...base, hostKey: { kind: 'pinned', fingerprints: [hostKeyOf('base')] } }, { buildId: 'pinned', attempt: 1 });
    acquired.push(vm);
    expect(vm.session.hostKeyFingerprint).toBe(hostKeyOf('base'));
    expect(vm.checks.every((c) => c.ok)).toBe(true);
  });

  it('a clone answering with another host key than the pinned one is unhealthy, naming both fingerprints, at once', async () => {
    // An image whose clones answer with another key: the pinned one is the base's.
    await sim.tart(['clone', 'base', 'imposter']);
    await sim.fault('imposter', 'rekey');
    const pinned = hostKeyOf('base');
    const presented = hostKeyOf('imposter');
    expect(presented).not.toBe(pinned);
    const sshReadyTimeoutS = 30;
    try {
      const err = await EphemeralVm.acquire(
        { ...base, baseVm: 'imposter', sshReadyTimeoutS, hostKey: { kind: 'pinned', fingerprints: [pinned] } },
        { buildId: 'imposter', attempt: 1 },
      ).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'VM_UNHEALTHY', details: { check: 'ssh-alive', checkCode: 'SSH_HOST_KEY_MISMATCH' } });
      const message = (err as Error).message;
      expect(message).toContain(presented);
      expect(message).toContain(`not the pinned ${pinned}`);
      expect(message).toContain('refused before authenticating');
      // At once: a mismatch is not waited out like a VM still booting.
      expect(failedCheck(err, 'ssh-alive')?.durationMs).toBeLessThan(midway(0, sshReadyTimeoutS * 1000));
      expect(await names()).toEqual(['base', 'imposter']);
    } finally {
      await sim.tart(['delete', 'imposter']);
    }
  });

  it("a good build's VM takes its tart run log along; a failed one's stays", async () => {
    const good = await EphemeralVm.acquire(base, { buildId: 'goodlog', attempt: 1 });
    const kept = await EphemeralVm.acquire(base, { buildId: 'keptlog', attempt: 1 });
    acquired.push(good, kept);
    expect(existsSync(good.logPath)).toBe(true);
    await good.release({ removeLog: true });
    await kept.release();
    expect(existsSync(good.logPath)).toBe(false);
    expect(existsSync(kept.logPath)).toBe(true);
    rmSync(kept.logPath);
  });

  it('runs an isolated clone under Softnet with the allowed CIDRs', async () => {
    const fakeBin = join(import.meta.dirname, '..', 'tart-sim', 'fake-bin');
    const softnetDriver = new TartCli({
      exec: new NodeExec(),
      tartPath: sim.tartPath,
      tartHome: sim.tartHome,
      env: { ...simEnv(), PATH: `${fakeBin}:${process.env.PATH ?? ''}` },
      callTimeoutMs: 10_000,
      graceMs: 3000,
    });
    const vm = await EphemeralVm.acquire(
      { ...base, driver: softnetDriver, network: { isolation: 'softnet', allow: ['10.0.0.5/32'] } },
      { buildId: 'softnet', attempt: 1 },
    );
    acquired.push(vm);
    const net = await sim.tart(['sim', 'net', vm.name]);
    expect(JSON.parse(net.stdout)).toEqual({ mode: 'softnet', allow: ['10.0.0.5/32'] });
  });

  it('a host without softnet fails the start with the reason tart gives', async () => {
    const err = await EphemeralVm.acquire({ ...base, network: { isolation: 'softnet', allow: [] } }, { buildId: 'nosoftnet', attempt: 1 }).catch((e: unknown) => e);
    expect((err as Error).message).toContain('softnet not found in PATH');
    expect(await names()).toEqual(['base']);
  });
});

describe('reaper', () => {
  it("deletes this worker's orphans only, stopping running ones", async () => {
    for (const n of ['expo-w1-deadbuild-1', 'expo-w1-livebuild-1', 'expo-w2-deadbuild-1', 'expo-w1-x-deadbuild-1']) await sim.tart(['clone', 'base', n]);
    const run = sim.startRun('expo-w1-deadbuild-1');
    for (let i = 0; i < 50 && !(await driver.list()).some((v) => v.state === 'running'); i++) await new Promise((r) => setTimeout(r, 100));
    const report = await reapOrphans({ driver, workerId: 'w1', liveBuildIds: new Set(['livebuild']), stopTimeoutS: 2 });
    expect(report).toEqual({ deleted: ['expo-w1-deadbuild-1'], failed: [] });
    await run.exited;
    expect((await names()).sort()).toEqual(['base', 'expo-w1-livebuild-1', 'expo-w1-x-deadbuild-1', 'expo-w2-deadbuild-1']);
    await sim.tart(['delete', 'expo-w1-livebuild-1', 'expo-w1-x-deadbuild-1', 'expo-w2-deadbuild-1']);
  });
});

function otherKey(): string {
  return readFileSync(join(sim.dir, 'other_key'), 'utf8');
}
