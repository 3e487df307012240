/** Infrastructure failures are retried on a fresh clone when maxAttempts allows; build failures never are. */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { FINAL, startFarm, type Farm, WAIT, E2E_TEST_TIMEOUT_MS } from '../support/farm.ts';

// Builds on the simulator are slow on a busy machine: see WAIT in test/support/farm.ts.
vi.setConfig({ testTimeout: E2E_TEST_TIMEOUT_MS, hookTimeout: E2E_TEST_TIMEOUT_MS });

let farm: Farm | undefined;
afterEach(async () => {
  await farm?.stop();
  farm = undefined;
});

describe('retries', () => {
  it('retries a crashed VM on a fresh clone and succeeds on the second attempt', async () => {
    farm = await startFarm();
    // The first attempt's step outlasts the crash however slow the machine (the step's work dir
    // names its attempt); the second one finishes at once.
    const id = await farm.submit({ steps: [{ name: 'work', run: 'echo attempt-output; case "$EXPO_BUILD_DIR" in *-1) sleep 300 ;; esac' }], maxAttempts: 2 });
    await farm.waitBuild(id, (b) => b.status === 'running');
    await farm.sim.fault(`expo-mac-1-${id}-1`, 'crash');
    const b = await farm.waitBuild(id, (x) => FINAL(x) || x.attempt === 2);
    expect(b.attempt).toBe(2);
    const done = await farm.waitBuild(id, FINAL);
    const log = await farm.log(id);
    expect(done, log).toMatchObject({ status: 'succeeded', attempt: 2 });
    expect(log).toContain('===== attempt 2 of 2 on worker mac-1 =====');
    expect(log).toContain(`cloning base → expo-mac-1-${id}-2`);
    await farm.agents[0]!.waitFor('build done', WAIT.logMs, (e) => e.buildId === id && (e.outcome as any)?.body?.status === 'succeeded');
    expect(await farm.vms()).toEqual(['base']);
  });

  it('never retries a build that failed on its own', async () => {
    farm = await startFarm();
    const id = await farm.submit({ steps: [{ name: 'fail', run: 'echo failing; exit 3' }], maxAttempts: 3 });
    const b = await farm.waitBuild(id, FINAL);
    expect(b).toMatchObject({ status: 'failed', failureReason: 'build_failed', exitCode: 3, attempt: 1 });
    await new Promise((r) => setTimeout(r, 1500));
    expect(await farm.build(id)).toMatchObject({ status: 'failed', attempt: 1 });
  });
});
