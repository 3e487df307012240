/**
 * The fault matrix, VM side: real controller, real agent, the tart simulator and real sshd.
 * Each test checks what the user relies on — the build's final state and reason, how fast it is
 * known, and that no clone is left behind.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { BUSY_SLACK_MS, E2E_HEARTBEAT_TIMEOUT_S, FINAL, startFarm, type Farm, WAIT, E2E_TEST_TIMEOUT_MS } from '../support/farm.ts';

// Builds on the simulator are slow on a busy machine: see WAIT in test/support/farm.ts.
vi.setConfig({ testTimeout: E2E_TEST_TIMEOUT_MS, hookTimeout: E2E_TEST_TIMEOUT_MS });

let farm: Farm | undefined;
afterEach(async () => {
  await farm?.sim.hang([]).catch(() => undefined);
  await farm?.stop();
  farm = undefined;
});

const clone = (id: string, attempt = 1) => `expo-mac-1-${id}-${attempt}`;

async function waitRunning(f: Farm, id: string): Promise<void> {
  const b = await f.waitBuild(id, (x) => x.status === 'running' || FINAL(x));
  expect(b.status, await f.log(id)).toBe('running');
}

async function settled(f: Farm, id: string): Promise<void> {
  await f.agents[0]!.waitFor('build done', WAIT.logMs, (e) => e.buildId === id);
  expect(await f.vms()).toEqual(['base']);
}

describe('VM faults', () => {
  it('fails a frozen VM with heartbeat_timeout within the timeout + 1 s, frees the worker, deletes the clone, and runs the next build on a fresh clone', async () => {
    farm = await startFarm();
    const id = await farm.submit({ steps: [{ name: 'long', run: 'echo started; sleep 300' }] });
    await waitRunning(farm, id);
    await farm.waitBuild(id, (b) => b.lastHeartbeatAt !== null && b.progress !== null);
    await farm.sim.fault(clone(id), 'freeze');
    const failed = await farm.waitBuild(id, FINAL);
    expect(failed).toMatchObject({ status: 'failed', failureReason: 'heartbeat_timeout' });
    // On the controller's own clock: never before the timeout, and at most 1 s after it (plus
    // what a busy machine adds to the sweep's timer).
    const silentMs = Date.parse(failed.finishedAt) - Date.parse(failed.lastHeartbeatAt);
    expect(silentMs).toBeGreaterThanOrEqual(E2E_HEARTBEAT_TIMEOUT_S * 1000);
    expect(silentMs).toBeLessThanOrEqual(E2E_HEARTBEAT_TIMEOUT_S * 1000 + 1000 + BUSY_SLACK_MS);
    await settled(farm, id);
    const workers = await farm.api('GET', '/api/v1/workers');
    expect(workers.body.workers[0]).toMatchObject({ id: 'mac-1', status: 'idle' });
    const next = await farm.submit();
    expect(await farm.waitBuild(next, FINAL)).toMatchObject({ status: 'succeeded' });
    expect(await farm.log(next)).toContain(`cloning base → ${clone(next)}`);
  });

  it('reports a crashed VM as vm_crashed at once, without waiting for the watchdog', async () => {
    // A timeout the test would not wait out: the agent's own report must decide.
    farm = await startFarm({ heartbeatTimeoutS: 120 });
    const id = await farm.submit({ steps: [{ name: 'long', run: 'sleep 300' }] });
    await waitRunning(farm, id);
    const crashedAt = Date.now();
    await farm.sim.fault(clone(id), 'crash');
    const b = await farm.waitBuild(id, FINAL);
    expect(b).toMatchObject({ status: 'failed', failureReason: 'vm_crashed' });
    expect(Date.now() - crashedAt).toBeLessThan(5000 + BUSY_SLACK_MS);
    await settled(farm, id);
  });

  it('fails with vm_unhealthy at once when the SSH key is rejected, naming the reason', async () => {
    farm = await startFarm({ agent: false });
    const wrongKey = join(farm.sim.dir, 'wrong_key');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', wrongKey]);
    await farm.startAgent({ vmSshKey: wrongKey, sshReadyTimeoutS: 60 });
    const id = await farm.submit();
    const started = Date.now();
    const b = await farm.waitBuild(id, FINAL);
    expect(b).toMatchObject({ status: 'failed', failureReason: 'vm_unhealthy' });
    expect(b.message).toMatch(/auth|rejected|key/i);
    // Not retried for the whole SSH wait (60 s): a rejected key cannot heal.
    expect(Date.now() - started).toBeLessThan(45_000);
    await settled(farm, id);
  });

  it('fails with vm_unhealthy when SSH never becomes ready', async () => {
    farm = await startFarm({ agentConfig: { sshReadyTimeoutS: 2 } });
    await farm.sim.fault('base', 'ssh-down', 'on');
    const id = await farm.submit();
    const b = await farm.waitBuild(id, FINAL);
    expect(b).toMatchObject({ status: 'failed', failureReason: 'vm_unhealthy' });
    expect(b.message).toMatch(/ssh/i);
    await settled(farm, id);
  });

  it('fails with vm_unhealthy before any step runs when the VM is low on disk', async () => {
    farm = await startFarm({ agentConfig: { minFreeDiskGb: 20 } });
    await farm.sim.fault('base', 'disk', '50', '3');
    const id = await farm.submit({ steps: [{ name: 'never', run: 'echo THIS-STEP-RAN' }] });
    const b = await farm.waitBuild(id, FINAL);
    expect(b).toMatchObject({ status: 'failed', failureReason: 'vm_unhealthy' });
    expect(b.message).toMatch(/disk/i);
    expect(await farm.log(id)).not.toContain('THIS-STEP-RAN');
    await settled(farm, id);
  });

  it('waits out a slow boot', async () => {
    farm = await startFarm();
    await farm.sim.fault('base', 'slow-boot', '3');
    const id = await farm.submit();
    expect(await farm.waitBuild(id, FINAL)).toMatchObject({ status: 'succeeded' });
    await settled(farm, id);
  });

  it("does not count a slow boot against the build's timeoutS: the steps' clock starts when the VM is ready", async () => {
    farm = await startFarm();
    await farm.sim.fault('base', 'slow-boot', '8');
    const id = await farm.submit({ timeoutS: 5, steps: [{ name: 'quick', run: 'sleep 1; echo done' }] });
    const b = await farm.waitBuild(id, FINAL);
    expect(b, await farm.log(id)).toMatchObject({ status: 'succeeded' });
    // The boot really took longer than the build's whole timeout.
    expect(Date.parse(b.startedAt) - Date.parse(b.assignedAt)).toBeGreaterThan(5000);
    await settled(farm, id);
  });

  it('fails a VM not ready within the prepare timeout with prepare_timeout, and retries it on a fresh clone', async () => {
    farm = await startFarm({ controllerArgs: ['--prepare-timeout', '4'], agentConfig: { vmIpWaitS: 120 } });
    await farm.sim.fault('base', 'slow-boot', '600'); // clones inherit it: no attempt gets an IP
    const id = await farm.submit({ maxAttempts: 2, steps: [{ name: 'never', run: 'echo THIS-STEP-RAN' }] });
    const b = await farm.waitBuild(id, FINAL);
    expect(b).toMatchObject({ status: 'failed', failureReason: 'prepare_timeout', attempt: 2 });
    expect(b.message).toContain('prepare timeout of 4 s');
    const log = await farm.log(id);
    expect(log).toContain('===== attempt 2 of 2');
    expect(log).not.toContain('THIS-STEP-RAN');
    await settled(farm, id);
  });

  it('does not trust a stale IP: polls tart until the VM answers at its real address', async () => {
    farm = await startFarm({ agentConfig: { sshReadyTimeoutS: 20 } });
    await farm.sim.fault('base', 'stale-ip', 'on'); // clones inherit it: tart ip first answers an old lease
    const id = await farm.submit();
    await farm.waitBuild(id, (b) => b.status === 'preparing');
    await new Promise((r) => setTimeout(r, 2500));
    await farm.sim.fault(clone(id), 'stale-ip', 'off'); // the lease is renewed
    const b = await farm.waitBuild(id, FINAL);
    expect(b, await farm.log(id)).toMatchObject({ status: 'succeeded' });
    await settled(farm, id);
  });

  it('kills and reports a hanging tart call instead of waiting forever', async () => {
    farm = await startFarm({ agentConfig: { vmIpWaitS: 2, tartTimeoutS: 3 } });
    await farm.sim.hang(['ip']);
    const id = await farm.submit();
    const b = await farm.waitBuild(id, FINAL);
    expect(b).toMatchObject({ status: 'failed', failureReason: 'vm_unhealthy' });
    expect(b.message).toMatch(/ip/);
    await farm.sim.hang([]);
    await settled(farm, id);
  });
});
