/**
 * Host key pinning, Softnet isolation and the tart run log's fate through the whole farm: real
 * controller, real agent, the tart simulator and real sshd.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { E2E_TEST_TIMEOUT_MS, FINAL, startFarm, WAIT, type Farm } from '../support/farm.ts';

vi.setConfig({ testTimeout: E2E_TEST_TIMEOUT_MS, hookTimeout: E2E_TEST_TIMEOUT_MS });

const FAKE_BIN = join(import.meta.dirname, '..', 'tart-sim', 'fake-bin');
let farm: Farm | undefined;
afterEach(async () => {
  await farm?.stop();
  farm = undefined;
});

const runLog = (f: Farm, id: string): string => join(f.sim.dir, 'agent-logs', `expo-mac-1-${id}-1.log`);
const hostKeyOf = (f: Farm, vm: string): string =>
  execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', join(f.sim.tartHome, 'vms', vm, 'ssh_host_ed25519_key.pub')], { encoding: 'utf8' }).split(' ')[1] as string;

describe('VM isolation through the agent', () => {
  it('builds in a pinned, Softnet-isolated clone and removes its tart run log after the good build', async () => {
    farm = await startFarm({ agent: false, sim: { extraEnv: { PATH: `${FAKE_BIN}:${process.env.PATH ?? ''}` } } });
    await farm.startAgent({ vmHostKey: hostKeyOf(farm, 'base'), vmNetwork: { isolation: 'softnet', allow: ['10.0.0.5/32'] } });
    // The step waits for the test to have looked at the running clone's network.
    const go = join(farm.sim.dir, 'go');
    const id = await farm.submit({ steps: [{ name: 'wait', run: `while [ ! -e ${go} ]; do sleep 0.1; done; echo isolated` }] });
    const running = await farm.waitBuild(id, (x) => x.status === 'running' || FINAL(x));
    expect(running.status, await farm.log(id)).toBe('running');
    const net = await farm.sim.tart(['sim', 'net', `expo-mac-1-${id}-1`]);
    writeFileSync(go, '');
    expect(JSON.parse(net.stdout)).toEqual({ mode: 'softnet', allow: ['10.0.0.5/32', '127.0.0.1/32'] });
    const b = await farm.waitBuild(id, FINAL);
    expect(b.status, await farm.log(id)).toBe('succeeded');
    await farm.agents[0]!.waitFor('build done', WAIT.logMs, (e) => e.buildId === id);
    expect(existsSync(runLog(farm, id))).toBe(false);
    expect(await farm.vms()).toEqual(['base']);
  });

  it('fails a clone answering with another host key than vmHostKey as vm_unhealthy naming both keys, and keeps its run log; old run logs go at start', async () => {
    farm = await startFarm({ agent: false });
    // Logs of failed VMs from earlier runs: the one past vmLogRetentionDays goes when the agent starts.
    const logs = join(farm.sim.dir, 'agent-logs');
    mkdirSync(logs, { recursive: true });
    const old = join(logs, 'expo-mac-1-oldbuild-1.log');
    const recent = join(logs, 'expo-mac-1-recentbuild-1.log');
    for (const [path, ageDays] of [[old, 3], [recent, 1]] as const) {
      writeFileSync(path, 'Error: the virtual machine stopped unexpectedly\n');
      const t = Date.now() / 1000 - ageDays * 86_400;
      utimesSync(path, t, t);
    }
    const pinned = `SHA256:${'A'.repeat(43)}`;
    await farm.startAgent({ vmHostKey: pinned, vmLogRetentionDays: 2 });
    expect([existsSync(old), existsSync(recent)]).toEqual([false, true]);
    const id = await farm.submit({ steps: [{ name: 'never', run: 'echo THIS-STEP-RAN' }] });
    const b = await farm.waitBuild(id, FINAL);
    expect(b).toMatchObject({ status: 'failed', failureReason: 'vm_unhealthy' });
    expect(b.message).toContain(hostKeyOf(farm, 'base'));
    expect(b.message).toContain(pinned);
    expect(await farm.log(id)).not.toContain('THIS-STEP-RAN\n');
    await farm.agents[0]!.waitFor('build done', WAIT.logMs, (e) => e.buildId === id);
    expect(existsSync(runLog(farm, id))).toBe(true);
    expect(await farm.vms()).toEqual(['base']);
  });
});
