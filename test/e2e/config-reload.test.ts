/** SIGHUP reloads the agent's config for builds claimed afterwards; a bad file changes nothing. */
import { readFileSync, writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { FINAL, startFarm, type Farm, WAIT, E2E_TEST_TIMEOUT_MS } from '../support/farm.ts';

// Builds on the simulator are slow on a busy machine: see WAIT in test/support/farm.ts.
vi.setConfig({ testTimeout: E2E_TEST_TIMEOUT_MS, hookTimeout: E2E_TEST_TIMEOUT_MS });

let farm: Farm | undefined;
afterEach(async () => {
  await farm?.stop();
  farm = undefined;
});

describe('config reload', () => {
  it('applies a new config on SIGHUP to the next build, and keeps the old one when the file is bad', async () => {
    farm = await startFarm({ agentConfig: { minFreeDiskGb: 5 } });
    await farm.sim.fault('base', 'disk', '50', '10'); // 10 GiB free: enough for 5, not for 20
    const agent = farm.agents[0]!;

    const config = JSON.parse(readFileSync(farm.configPath, 'utf8')) as Record<string, unknown>;
    writeFileSync(farm.configPath, '{ not json');
    agent.signal('SIGHUP');
    await agent.waitFor('config reload failed', WAIT.logMs);
    const first = await farm.submit();
    expect(await farm.waitBuild(first, FINAL)).toMatchObject({ status: 'succeeded' });

    writeFileSync(farm.configPath, JSON.stringify({ ...config, minFreeDiskGb: 20 }));
    agent.signal('SIGHUP');
    await agent.waitFor('config reloaded', WAIT.logMs);
    const second = await farm.submit();
    const b = await farm.waitBuild(second, FINAL);
    expect(b).toMatchObject({ status: 'failed', failureReason: 'vm_unhealthy' });
    expect(b.message).toMatch(/disk/);

    // A field that identifies the worker needs a restart: refused, the rest of the file too.
    writeFileSync(farm.configPath, JSON.stringify({ ...config, workerId: 'another-mac' }));
    agent.signal('SIGHUP');
    await agent.waitFor('change only when the agent restarts', WAIT.logMs);
    expect(agent.proc.exitCode).toBeNull();
  });
});
