/**
 * The fault matrix, controller side: the controller killed and restarted mid-build, and the
 * controller cut off from the agent (and its VMs) for longer than the heartbeat timeout.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { E2E_HEARTBEAT_TIMEOUT_S, FINAL, startFarm, type Farm, WAIT, E2E_TEST_TIMEOUT_MS } from '../support/farm.ts';

// Builds on the simulator are slow on a busy machine: see WAIT in test/support/farm.ts.
vi.setConfig({ testTimeout: E2E_TEST_TIMEOUT_MS, hookTimeout: E2E_TEST_TIMEOUT_MS });

let farm: Farm | undefined;
afterEach(async () => {
  await farm?.stop();
  farm = undefined;
});

describe('controller faults', () => {
  it('finishes a build with its whole log when the controller is SIGKILLed mid-build and restarted', async () => {
    farm = await startFarm();
    const id = await farm.submit({
      steps: [{ name: 'count', run: 'for i in $(seq 1 12); do echo "tick $i"; sleep 0.25; done' }],
    });
    await farm.waitBuild(id, (b) => b.status === 'running' && b.logBytes > 0);
    await farm.restartController();
    const b = await farm.waitBuild(id, FINAL);
    const log = await farm.log(id);
    expect(b, log).toMatchObject({ status: 'succeeded' });
    for (let i = 1; i <= 12; i++) expect(log).toContain(`tick ${i}\n`);
    // Each line exactly once: retried chunks are idempotent.
    expect(log.match(/tick 7\n/g)).toHaveLength(1);
    await farm.agents[0]!.waitFor('build done', WAIT.logMs, (e) => e.buildId === id);
    expect(await farm.vms()).toEqual(['base']);
  });

  it('fails the build when the controller loses the agent for longer than the timeout; the late completion is refused and the agent recycles', async () => {
    farm = await startFarm({ proxy: true });
    const T = E2E_HEARTBEAT_TIMEOUT_S;
    // The step outlasts the timeout, and ends while the controller is still out of reach.
    const id = await farm.submit({ steps: [{ name: 'sleep', run: `echo start; sleep ${T + 3}; echo end` }] });
    await farm.waitBuild(id, (b) => b.status === 'running');
    await farm.proxy!.cut();
    const b = await farm.waitBuild(id, FINAL);
    expect(b.status).toBe('failed');
    expect(['heartbeat_timeout', 'worker_lost']).toContain(b.failureReason);
    await new Promise((r) => setTimeout(r, (T + 3) * 1000)); // the step ends while the controller is still out of reach
    await farm.proxy!.restore();
    await farm.agents[0]!.waitFor('build done', WAIT.logMs, (e) => e.buildId === id);
    expect(farm.agents[0]!.lines.join('\n')).toMatch(/attempt was already over|no longer assigns|LEASE_STALE|BUILD_OVER/);
    expect(await farm.build(id)).toMatchObject({ status: 'failed' });
    expect(await farm.vms()).toEqual(['base']);
    // The worker is back and takes the next build.
    const next = await farm.submit();
    const nb = await farm.waitBuild(next, FINAL);
    expect(nb, `${JSON.stringify(nb)}\n${await farm.log(next)}\n${farm.agents[0]!.lines.slice(-40).join('\n')}`).toMatchObject({ status: 'succeeded' });
  });
});
