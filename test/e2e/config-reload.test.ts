/** SIGHUP reloads the agent's config for builds claimed afterwards; a bad file changes nothing. */
import { readFileSync, writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { FINAL, startFarm, type Farm } from '../support/farm.ts';

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
    await agent.waitFor('config reload failed', 10_000);
    const first = await farm.submit();
    expect(await farm.waitBuild(first, FINAL, 30_000)).toMatchObject({ status: 'succeeded' });

    writeFileSync(farm.configPath, JSON.stringify({ ...config, minFreeDiskGb: 20 }));
    agent.signal('SIGHUP');
    await agent.waitFor('config reloaded', 10_000);
    const second = await farm.submit();
    const b = await farm.waitBuild(second, FINAL, 30_000);
    expect(b).toMatchObject({ status: 'failed', failureReason: 'vm_unhealthy' });
    expect(b.message).toMatch(/disk/);

    // A field that identifies the worker needs a restart: refused, the rest of the file too.
    writeFileSync(farm.configPath, JSON.stringify({ ...config, workerId: 'another-mac' }));
    agent.signal('SIGHUP');
    await agent.waitFor('change only when the agent restarts', 10_000);
    expect(agent.proc.exitCode).toBeNull();
  });
});
