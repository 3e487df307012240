/**
 * The fault matrix, agent side: killed mid-build, drained with SIGTERM, aborted with a second
 * signal, a cancel from the controller, and two builds at once with a third waiting.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { sampleValue } from '../support/prom-text.ts';
import { BUSY_SLACK_MS, FINAL, startFarm, type Farm, WAIT, E2E_TEST_TIMEOUT_MS } from '../support/farm.ts';

// Builds on the simulator are slow on a busy machine: see WAIT in test/support/farm.ts.
vi.setConfig({ testTimeout: E2E_TEST_TIMEOUT_MS, hookTimeout: E2E_TEST_TIMEOUT_MS });

let farm: Farm | undefined;
afterEach(async () => {
  await farm?.stop();
  farm = undefined;
});

const clone = (id: string, attempt = 1) => `expo-mac-1-${id}-${attempt}`;

describe('agent lifecycle', () => {
  it('fails a build with worker_lost when the agent is SIGKILLed, and deletes the orphaned clone when it comes back', async () => {
    farm = await startFarm();
    const id = await farm.submit({ steps: [{ name: 'long', run: 'sleep 300' }] });
    await farm.waitBuild(id, (b) => b.status === 'running');
    farm.agents[0]!.signal('SIGKILL');
    await farm.agents[0]!.exited;
    expect(await farm.vms()).toContain(clone(id)); // the VM outlives the agent…
    const b = await farm.waitBuild(id, FINAL);
    expect(b).toMatchObject({ status: 'failed', failureReason: 'worker_lost' });
    const again = await farm.startAgent();
    await again.waitFor('reaped orphaned clones', WAIT.logMs);
    expect(await farm.vms()).toEqual(['base']); // …until the agent is back
    const next = await farm.submit();
    expect(await farm.waitBuild(next, FINAL)).toMatchObject({ status: 'succeeded' });
  });

  it('drains on SIGTERM: the running build finishes, no new build is taken, the agent exits 0', async () => {
    farm = await startFarm();
    const id = await farm.submit({ steps: [{ name: 'work', run: 'sleep 3; echo finished-work' }] });
    await farm.waitBuild(id, (b) => b.status === 'running');
    farm.agents[0]!.signal('SIGTERM');
    await farm.agents[0]!.waitFor('draining', WAIT.logMs);
    const waiting = await farm.submit();
    // The agent tells the controller in its next heartbeat, which leaves at once (or within its floor of 250 ms).
    let status = '';
    for (const t = Date.now(); status !== 'draining' && Date.now() - t < WAIT.logMs; await new Promise((r) => setTimeout(r, 100))) {
      status = (await farm.api('GET', '/api/v1/workers')).body.workers[0].status;
    }
    expect(status).toBe('draining');
    const code = await farm.agents[0]!.exited;
    expect(code, farm.agents[0]!.lines.slice(-15).join('\n')).toBe(0);
    const b = await farm.build(id);
    expect(b, JSON.stringify(b)).toMatchObject({ status: 'succeeded' });
    expect(await farm.log(id)).toContain('finished-work');
    expect(await farm.build(waiting)).toMatchObject({ status: 'queued' });
    expect(await farm.vms()).toEqual(['base']);
  });

  it('aborts running builds on a second signal: reported, VMs deleted, non-zero exit', async () => {
    farm = await startFarm();
    const id = await farm.submit({ steps: [{ name: 'long', run: 'sleep 300' }], maxAttempts: 2 });
    await farm.waitBuild(id, (b) => b.status === 'running');
    farm.agents[0]!.signal('SIGTERM');
    await farm.agents[0]!.waitFor('draining', WAIT.logMs);
    farm.agents[0]!.signal('SIGTERM');
    expect(await farm.agents[0]!.exited).toBe(1);
    // Reported as the worker going away, so it goes back to the queue for another attempt.
    expect(await farm.build(id)).toMatchObject({ status: 'queued', failureReason: 'worker_lost' });
    expect(await farm.vms()).toEqual(['base']);
  });

  it('cancels a running build: the remote step stops within 2 s, long before the next periodic heartbeat, and the build ends cancelled', async () => {
    // Worker heartbeats a minute apart: only the heartbeat the agent keeps waiting at the
    // controller can carry the cancel this fast.
    farm = await startFarm({ heartbeatTimeoutS: 300, agentConfig: { workerHeartbeatS: 60 } });
    const id = await farm.submit({ steps: [{ name: 'long', run: 'echo going; sleep 120; echo SHOULD-NOT-PRINT' }] });
    await farm.waitBuild(id, (b) => b.status === 'running' && b.logBytes > 0);
    const stepRuns = () => farm!.sim.listProcesses().some((p) => p.cmdline.includes('sleep 120'));
    for (const t = Date.now(); !stepRuns() && Date.now() - t < WAIT.logMs; ) await new Promise((r) => setTimeout(r, 25));
    expect(stepRuns(), JSON.stringify(farm.sim.listProcesses().map((p) => p.cmdline))).toBe(true);
    const heartbeats = async () => sampleValue(await (await fetch(`${farm!.controller.url}/metrics`)).text(), 'expo_worker_worker_heartbeats_total', { kind: 'heartbeat' }) ?? 0;
    const heartbeatsBefore = await heartbeats();
    const asked = Date.now();
    await farm.api('POST', `/api/v1/builds/${id}/cancel`);
    while (stepRuns() && Date.now() - asked < WAIT.logMs) await new Promise((r) => setTimeout(r, 25));
    const stoppedMs = Date.now() - asked;
    expect(stepRuns()).toBe(false);
    expect(stoppedMs).toBeLessThan(2000 + BUSY_SLACK_MS);
    const b = await farm.waitBuild(id, FINAL);
    expect(b).toMatchObject({ status: 'cancelled' });
    await farm.agents[0]!.waitFor('build done', WAIT.logMs, (e) => e.buildId === id);
    await new Promise((r) => setTimeout(r, 2000));
    // Carrying the cancel out (its answer repeats until the build ends, then the VM is deleted)
    // never turns the heartbeat into a busy loop: a few a second at most (it was hundreds).
    const seconds = (Date.now() - asked) / 1000;
    expect((await heartbeats()) - heartbeatsBefore).toBeLessThanOrEqual(seconds * 4 + 4);
    expect(await farm.log(id)).not.toContain('SHOULD-NOT-PRINT');
    expect(farm.sim.listProcesses().filter((p) => p.cmdline.includes('sleep 120'))).toEqual([]);
    expect(await farm.vms()).toEqual(['base']);
  });

  it('runs two builds at once on one host while a third waits', async () => {
    farm = await startFarm({ agentConfig: { maxConcurrentBuilds: 2 } });
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push(await farm.submit({ steps: [{ name: 'work', run: 'sleep 4' }] }));
    let sawTwoRunning = false;
    let sawThirdWaiting = false;
    const deadline = Date.now() + WAIT.buildMs;
    while (Date.now() < deadline) {
      const states = await Promise.all(ids.map((id) => farm!.build(id)));
      const active = states.filter((b) => ['assigned', 'preparing', 'running'].includes(b.status)).length;
      expect(active).toBeLessThanOrEqual(2);
      if (states.filter((b) => b.status === 'running').length === 2) {
        sawTwoRunning = true;
        if (states.some((b) => b.status === 'queued')) sawThirdWaiting = true;
      }
      // Never more than two macOS VMs besides the base.
      expect((await farm.vms()).filter((n) => n !== 'base').length).toBeLessThanOrEqual(2);
      if (states.every(FINAL)) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(sawTwoRunning).toBe(true);
    expect(sawThirdWaiting).toBe(true);
    for (const id of ids) {
      const b = await farm.build(id);
      expect(b, JSON.stringify(b)).toMatchObject({ status: 'succeeded' });
    }
  });
});
