import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkSoftnet, versionAtLeast } from '../../../src/health/softnet.ts';
import { FakeExec } from '../../support/fake-exec.ts';

const dir = mkdtempSync(join(tmpdir(), 'softnet-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const bin = join(dir, 'bin');
mkdirSync(bin);
const softnet = join(bin, 'softnet');
writeFileSync(softnet, '#!/bin/sh\nexit 0\n');
chmodSync(softnet, 0o755);

const driver = (version: string) => ({ version: async () => version });
const isRoot = process.getuid?.() === 0;

describe('checkSoftnet', () => {
  it('refuses a tart without --net-softnet-allow (older than 2.7.1)', async () => {
    const r = await checkSoftnet({ driver: driver('2.7.0'), exec: new FakeExec(), searchPath: bin, platform: 'linux' });
    expect(r).toMatchObject({ name: 'vm-network', ok: false, detail: 'tart 2.7.0 has no --net-softnet-allow (needs tart ≥ 2.7.1)' });
    expect(versionAtLeast('2.32.1', '2.7.1')).toBe(true);
    expect(versionAtLeast('SNAPSHOT', '2.7.1')).toBe(true);
  });

  it('refuses when softnet is not on the PATH tart runs with', async () => {
    const r = await checkSoftnet({ driver: driver('2.32.1'), exec: new FakeExec(), searchPath: join(dir, 'nothing'), platform: 'darwin' });
    expect(r).toMatchObject({ ok: false, detail: expect.stringContaining('softnet not found on PATH') });
  });

  it('on macOS, a softnet that is neither set-uid root nor allowed by passwordless sudo cannot serve the agent', async () => {
    chmodSync(softnet, 0o755);
    const exec = new FakeExec().expect(['sudo', '--non-interactive', softnet, '--help'], { exitCode: 1, stderr: 'sudo: a password is required' });
    const r = await checkSoftnet({ driver: driver('2.32.1'), exec, searchPath: bin, platform: 'darwin' });
    expect(r).toMatchObject({ ok: false, detail: expect.stringContaining('neither set-uid root nor allowed by passwordless sudo') });
    exec.assertDone();
  });

  it('on macOS, passwordless sudo will do', async () => {
    chmodSync(softnet, 0o755);
    const exec = new FakeExec().expect(['sudo', '--non-interactive', softnet, '--help']);
    const r = await checkSoftnet({ driver: driver('2.32.1'), exec, searchPath: bin, platform: 'darwin' });
    expect(r).toMatchObject({ ok: true, detail: expect.stringContaining('passwordless sudo') });
  });

  it.runIf(isRoot)('on macOS, a set-uid root softnet will do without asking sudo', async () => {
    chmodSync(softnet, 0o4755);
    const r = await checkSoftnet({ driver: driver('2.32.1'), exec: new FakeExec(), searchPath: bin, platform: 'darwin' });
    expect(r).toMatchObject({ ok: true, detail: expect.stringContaining('set-uid root') });
    chmodSync(softnet, 0o755);
  });
});
