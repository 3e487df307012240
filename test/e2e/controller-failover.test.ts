/**
 * Agent failover with the real agent, the real controller and vm-monitor.sh in a simulated VM:
 * one controller behind two TCP proxies, A and B (two controllers would need PostgreSQL), and
 * an agent whose `controllerUrl` (and so its VMs' `vmControllerUrl`) lists both. A is cut while
 * a build runs: the build must finish through B with its whole log, and the monitor's heartbeats
 * must follow — the step outlasts the heartbeat timeout, so a monitor stuck on A fails it.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'undici';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { E2E_HEARTBEAT_TIMEOUT_S, E2E_TEST_TIMEOUT_MS, FINAL, startFarm, WAIT, type Farm } from '../support/farm.ts';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.ts';

vi.setConfig({ testTimeout: E2E_TEST_TIMEOUT_MS, hookTimeout: E2E_TEST_TIMEOUT_MS });

let farm: Farm | undefined;
const proxies: TcpProxy[] = [];
afterEach(async () => {
  await farm?.stop();
  farm = undefined;
  for (const p of proxies.splice(0)) await p.close();
});

describe('agent failover between controllers', () => {
  it('finishes a build through B with its whole log when A is cut mid-build, heartbeats included', async () => {
    farm = await startFarm({ agent: false });
    const a = await startTcpProxy(farm.controller.port);
    const b = await startTcpProxy(farm.controller.port);
    proxies.push(a, b);
    const agent = await farm.startAgent({ controllerUrl: [a.url, b.url] });
    const ticks = 2 * E2E_HEARTBEAT_TIMEOUT_S;
    const id = await farm.submit({
      steps: [{ name: 'count', run: `for i in $(seq 1 ${ticks}); do echo "tick $i ✓"; sleep 1; done` }],
    });
    await farm.waitBuild(id, (x) => x.status === 'running' && x.logBytes > 0);
    await a.cut();

    const done = await farm.waitBuild(id, FINAL);
    const log = await farm.log(id);
    expect(done, `${log}\n${agent.lines.slice(-30).join('\n')}`).toMatchObject({ status: 'succeeded' });
    // Every line exactly once: chunks retried on B were not doubled, none was dropped.
    for (let i = 1; i <= ticks; i++) expect(log.match(new RegExp(`^tick ${i} ✓$`, 'gm'))).toHaveLength(1);
    const switched = await agent.waitFor('controller unreachable, switching to', WAIT.logMs);
    expect(switched).toMatchObject({ from: a.url, to: b.url });
    const metricsUrl = String((await agent.waitFor('status server listening', WAIT.logMs)).url);
    const metrics = await (await request(`${metricsUrl}/metrics`)).body.text();
    expect(Number(/^expo_worker_agent_controller_switches_total (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(1);
    await agent.waitFor('build done', WAIT.logMs, (e) => e.buildId === id);
    expect(await farm.vms()).toEqual(['base']);

    // The agent keeps polling through B: the next build runs too.
    const next = await farm.submit();
    expect(await farm.waitBuild(next, FINAL)).toMatchObject({ status: 'succeeded' });

    // SIGHUP: the same list (a new array, read again) reloads; another list needs a restart.
    const config = JSON.parse(readFileSync(farm.configPath, 'utf8')) as Record<string, unknown>;
    writeFileSync(farm.configPath, JSON.stringify({ ...config, stepStopGraceS: 3 }));
    agent.signal('SIGHUP');
    await agent.waitFor('config reloaded', WAIT.logMs);
    writeFileSync(farm.configPath, JSON.stringify({ ...config, controllerUrl: [b.url, a.url] }));
    agent.signal('SIGHUP');
    expect(await agent.waitFor('change only when the agent restarts', WAIT.logMs)).toMatchObject({ fields: ['controllerUrl'] });
  });
});
