/**
 * The fault matrix, controller side: the controller killed and restarted mid-build, and the
 * controller cut off from the agent (and its VMs) for longer than the heartbeat timeout.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { FINAL, startFarm, type Farm } from '../support/farm.ts';

let farm: Farm | undefined;
afterEach(async () => {
  await farm?.stop();
  farm = undefined;
});

describe('controller faults', () => {
  it('finishes a build with its whole log when the controller is SIGKILLed mid-build and restarted', async () => {
    farm = await startFarm({ heartbeatTimeoutS: 5 });
    const id = await farm.submit({
      steps: [{ name: 'count', run: 'for i in $(seq 1 12); do echo "tick $i"; sleep 0.25; done' }],
    });
    await farm.waitBuild(id, (b) => b.status === 'running' && b.logBytes > 0, 30_000);
    await farm.restartController();
    const b = await farm.waitBuild(id, FINAL, 40_000);
    const log = await farm.log(id);
    expect(b, log).toMatchObject({ status: 'succeeded' });
    for (let i = 1; i <= 12; i++) expect(log).toContain(`tick ${i}\n`);
    // Each line exactly once: retried chunks are idempotent.
    expect(log.match(/tick 7\n/g)).toHaveLength(1);
    await farm.agents[0]!.waitFor('build done', 20_000, (e) => e.buildId === id);
    expect(await farm.vms()).toEqual(['base']);
  });

  it('fails the build when the controller loses the agent for longer than the timeout; the late completion is refused and the agent recycles', async () => {
    farm = await startFarm({ heartbeatTimeoutS: 3, proxy: true });
    const id = await farm.submit({ steps: [{ name: 'sleep', run: 'echo start; sleep 8; echo end' }] });
    await farm.waitBuild(id, (b) => b.status === 'running', 30_000);
    await farm.proxy!.cut();
    const b = await farm.waitBuild(id, FINAL, 15_000);
    expect(b.status).toBe('failed');
    expect(['heartbeat_timeout', 'worker_lost']).toContain(b.failureReason);
    await new Promise((r) => setTimeout(r, 6000)); // the step ends while the controller is still out of reach
    await farm.proxy!.restore();
    await farm.agents[0]!.waitFor('build done', 30_000, (e) => e.buildId === id);
    expect(farm.agents[0]!.lines.join('\n')).toMatch(/attempt was already over|no longer assigns|LEASE_STALE|BUILD_OVER/);
    expect(await farm.build(id)).toMatchObject({ status: 'failed' });
    expect(await farm.vms()).toEqual(['base']);
    // The worker is back and takes the next build.
    const next = await farm.submit();
    const nb = await farm.waitBuild(next, FINAL, 30_000);
    expect(nb, `${JSON.stringify(nb)}\n${await farm.log(next)}\n${farm.agents[0]!.lines.slice(-40).join('\n')}`).toMatchObject({ status: 'succeeded' });
  });
});
