/** Artifacts end to end: collected from the VM after the steps, stored by the controller, downloadable intact. */
import { createHash } from 'node:crypto';
import { request } from 'undici';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ADMIN, FINAL, startFarm, type Farm, E2E_TEST_TIMEOUT_MS } from '../support/farm.ts';

// Builds on the simulator are slow on a busy machine: see WAIT in test/support/farm.ts.
vi.setConfig({ testTimeout: E2E_TEST_TIMEOUT_MS, hookTimeout: E2E_TEST_TIMEOUT_MS });

let farm: Farm | undefined;
afterEach(async () => {
  await farm?.stop();
  farm = undefined;
});

describe('artifacts', () => {
  it('collects the declared files from the VM and serves them byte for byte', async () => {
    farm = await startFarm();
    const id = await farm.submit({
      steps: [{ name: 'build', run: 'mkdir -p out && head -c 2000000 /dev/urandom > out/App.ipa && sha256sum out/App.ipa && echo report > out/report.txt' }],
      artifacts: ['out/*.ipa', 'out/report.txt', 'missing/*.zip'],
    });
    const b = await farm.waitBuild(id, FINAL);
    const log = await farm.log(id);
    expect(b, log).toMatchObject({ status: 'succeeded' });
    const inVm = /([0-9a-f]{64})\s+out\/App\.ipa/.exec(log)?.[1];
    expect(inVm).toBeDefined();
    expect(log).toContain('nothing matches missing/*.zip');
    const list = (await farm.api('GET', `/api/v1/builds/${id}/artifacts`)).body.artifacts as { name: string; sizeBytes: number; sha256: string }[];
    expect(list.map((a) => a.name)).toEqual(['App.ipa', 'report.txt']);
    expect(list[0]).toMatchObject({ sizeBytes: 2_000_000, sha256: inVm });
    const res = await request(`${farm.controller.url}/api/v1/builds/${id}/artifacts/App.ipa`, { headers: { authorization: `Bearer ${ADMIN}` } });
    const bytes = Buffer.from(await res.body.arrayBuffer());
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(inVm);
  });

  it("collects a failed build's artifacts too", async () => {
    farm = await startFarm();
    const id = await farm.submit({ steps: [{ name: 'test', run: 'echo "1 test failed" > junit.xml; exit 1' }], artifacts: ['junit.xml'] });
    expect(await farm.waitBuild(id, FINAL)).toMatchObject({ status: 'failed', failureReason: 'build_failed' });
    const list = (await farm.api('GET', `/api/v1/builds/${id}/artifacts`)).body.artifacts as { name: string }[];
    expect(list.map((a) => a.name)).toEqual(['junit.xml']);
  });
});
