/** Artifacts end to end: collected from the VM after the steps, stored by the controller, downloadable intact. */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { request } from 'undici';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { artifactsMain, statusMain, type CliIo } from '../../src/client/commands.ts';
import { ADMIN, FINAL, startFarm, type Farm, E2E_TEST_TIMEOUT_MS, WAIT } from '../support/farm.ts';

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
    expect(log).toContain('artifact missing/*.zip was not stored: no_match');
    const list = (await farm.api('GET', `/api/v1/builds/${id}/artifacts`)).body.artifacts as { name: string; sizeBytes: number; sha256: string }[];
    expect(list.map((a) => a.name)).toEqual(['out/App.ipa', 'out/report.txt']);
    expect(list[0]).toMatchObject({ sizeBytes: 2_000_000, sha256: inVm });
    const res = await request(`${farm.controller.url}/api/v1/builds/${id}/artifacts/out/App.ipa`, { headers: { authorization: `Bearer ${ADMIN}` } });
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

  it('keeps two files with one base name from two folders, records a pattern that matched nothing and a file past the size cap, and fails a build whose required artifact is missing', async () => {
    farm = await startFarm({ controllerArgs: ['--max-artifact-mb', '1'] });
    const long = `${'l'.repeat(150)}.txt`;
    const id = await farm.submit({
      steps: [
        {
          name: 'build',
          run: `mkdir -p ios/build android/build deep && echo ios > ios/build/App.ipa && echo android > android/build/App.ipa && echo long > deep/${long} && echo spaced > 'deep/my app.txt'`,
        },
      ],
      artifacts: ['*/build/App.ipa', './deep/*', 'missing/*.zip'],
    });
    const b = await farm.waitBuild(id, FINAL);
    const log = await farm.log(id);
    // A pattern matching nothing is no reason to fail a build whose steps passed — but it is recorded and shown.
    expect(b, log).toMatchObject({
      status: 'succeeded',
      artifactProblems: [{ pattern: 'missing/*.zip', reason: 'no_match', required: false, message: expect.any(String) }],
    });
    const got = (await farm.api('GET', `/api/v1/builds/${id}/artifacts`)).body as { artifacts: { name: string }[]; problems: unknown[] };
    expect(got.artifacts.map((a) => a.name)).toEqual(['android/build/App.ipa', `deep/${long}`, 'deep/my app.txt', 'ios/build/App.ipa']);
    expect(got.problems).toEqual(b.artifactProblems);

    // The CLI shows the problem and downloads every artifact at its relative path.
    const home = mkdtempSync(join(tmpdir(), 'expo-e2e-cli-'));
    try {
      const out: string[] = [];
      const io: CliIo = { stdout: (t) => void out.push(String(t)), stderr: () => undefined, env: {}, home };
      const conn = ['--url', farm.controller.url, '--key', ADMIN];
      expect(await artifactsMain([id, '--download', join(home, 'dl'), ...conn], io)).toBe(0);
      expect(out.join('')).toContain('NOT STORED missing/*.zip\tno_match');
      expect(readFileSync(join(home, 'dl', 'ios/build/App.ipa'), 'utf8')).toBe('ios\n');
      expect(readFileSync(join(home, 'dl', 'android/build/App.ipa'), 'utf8')).toBe('android\n');
      expect(readFileSync(join(home, 'dl', 'deep', long), 'utf8')).toBe('long\n');
      expect(readFileSync(join(home, 'dl', 'deep/my app.txt'), 'utf8')).toBe('spaced\n');
      out.length = 0;
      expect(await statusMain([...conn], io)).toBe(0);
      expect(out.join('')).toContain(`${id}  NOT STORED missing/*.zip\tno_match`);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }

    const required = await farm.submit({
      steps: [{ name: 'build', run: 'mkdir -p out && echo ok > out/report.txt && head -c 1100000 /dev/zero > out/big.bin' }],
      artifacts: ['out/report.txt', 'out/big.bin', { path: 'out/*.ipa', required: true }],
    });
    const r = await farm.waitBuild(required, FINAL);
    expect(r, await farm.log(required)).toMatchObject({
      status: 'failed',
      failureReason: 'artifact_missing',
      attempt: 1,
      message: expect.stringContaining('out/*.ipa (no_match)'),
      artifactProblems: [
        // Past the controller's --max-artifact-mb: refused, recorded, the build not failed for it (not required).
        { pattern: 'out/big.bin', name: 'out/big.bin', reason: 'too_large', required: false, message: expect.stringContaining('API_BODY_TOO_LARGE') },
        { pattern: 'out/*.ipa', reason: 'no_match', required: true, message: expect.any(String) },
      ],
    });
    // What could be collected still was.
    expect(((await farm.api('GET', `/api/v1/builds/${required}/artifacts`)).body.artifacts as { name: string }[]).map((a) => a.name)).toEqual(['out/report.txt']);
  });

  it('retries an upload the controller failed with a 5xx and stores it; records one that keeps failing as upload_failed and fails the build when it was required', async () => {
    farm = await startFarm({ agent: false });
    // The controller cannot write a build's artifacts while a file stands where its directory
    // goes: every upload of that build answers 500 until the file is removed.
    const artifactsDir = join(dirname(farm.dbPath), 'artifacts');
    mkdirSync(artifactsDir, { recursive: true });
    const step = { name: 'build', run: 'mkdir -p out && echo ipa > out/App.ipa' };
    const transient = await farm.submit({ steps: [step], artifacts: [{ path: 'out/App.ipa', required: true }] });
    writeFileSync(join(artifactsDir, transient), 'in the way');
    const agent = await farm.startAgent();
    await agent.waitFor('artifact upload failed; retrying', WAIT.buildMs, (e) => e.buildId === transient);
    rmSync(join(artifactsDir, transient));
    const t = await farm.waitBuild(transient, FINAL);
    const tLog = await farm.log(transient);
    expect(t, tLog).toMatchObject({ status: 'succeeded', artifactProblems: [] });
    expect(tLog).toMatch(/artifact out\/App\.ipa: upload 1 failed \(.*500.*\); retrying/);
    expect(((await farm.api('GET', `/api/v1/builds/${transient}/artifacts`)).body.artifacts as { name: string }[]).map((a) => a.name)).toEqual(['out/App.ipa']);

    const lasting = await farm.submit({ steps: [step], artifacts: [{ path: 'out/App.ipa', required: true }] });
    writeFileSync(join(artifactsDir, lasting), 'in the way');
    const l = await farm.waitBuild(lasting, FINAL);
    expect(l, await farm.log(lasting)).toMatchObject({
      status: 'failed',
      failureReason: 'artifact_missing',
      attempt: 1,
      artifactProblems: [{ pattern: 'out/App.ipa', name: 'out/App.ipa', reason: 'upload_failed', required: true, message: expect.stringContaining('500') }],
    });
  });
});
