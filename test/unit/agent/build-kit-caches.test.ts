/**
 * The VM side of the host caches (build-kit.ts' acquireFresh): a VM boots with its empty shares,
 * named as acquire names the clone, and a VM that fails to come up has them removed; shares that
 * cannot be made leave the VM without caches, never without a VM. A fake tart driver, a real
 * cache directory.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AgentConfig } from '../../../src/agent/config.ts';
import { BuildCaches } from '../../../src/agent/build-caches.ts';
import { acquireFresh, type BuildKitContext } from '../../../src/agent/build-kit.ts';
import { CacheStore } from '../../../src/agent/caches.ts';
import { standbyVmShape } from '../../../src/agent/standby.ts';
import { EphemeralVm } from '../../../src/vm/ephemeral-vm.ts';
import { VmStartLock } from '../../../src/vm/start-lock.ts';
import type { VmDirShare } from '../../../src/vm/vm-driver.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'build-kit-caches-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const CONFIG = { vmName: 'base', workerId: 'w1', clonePrefix: 'expo', logDir: '/tmp', vmUser: 'admin', vmHostKey: [], vmNetwork: undefined, minFreeDiskGb: 0 };

/** A context whose `tart run` fails (after recording the shares it was given). */
function ctx(cacheDir: string) {
  const ran: { name: string; dirs: readonly VmDirShare[] | undefined }[] = [];
  const deleted: string[] = [];
  const driver = {
    list: async () => [],
    clone: async () => undefined,
    setRandomMac: async () => undefined,
    run: async (name: string, o: { dirs?: readonly VmDirShare[] }) => {
      ran.push({ name, dirs: o.dirs });
      throw new Error('tart run failed');
    },
    stop: async () => undefined,
    delete: async (name: string) => void deleted.push(name),
  };
  const noop = () => undefined;
  const c = {
    config: CONFIG as unknown as AgentConfig,
    log: pino({ level: 'silent' }),
    metrics: { healthCheck: noop, vmPrepared: noop, vmPreparePhase: noop },
    driver,
    sshPrivateKey: Buffer.from(''),
    startLock: new VmStartLock(),
    caches: new BuildCaches({ store: new CacheStore({ cacheDir }), caches: [{ name: 'pods', guestPath: '~/p', key: undefined, maxSizeGb: 1 }], sharedFilesRoot: '/Volumes/My Shared Files', warn: noop }),
  } as unknown as BuildKitContext;
  return { c, ran, deleted };
}

const REQ = { buildId: 'aaaaaaaaaaaaaaaa', attempt: 2 };

describe('acquireFresh with host caches', () => {
  it('boots the VM with its shares, named as acquire names the clone; a VM that fails to come up has them removed', async () => {
    const k = ctx(dir);
    const notes: string[] = [];
    await expect(acquireFresh(k.c, { ...REQ, signal: new AbortController().signal, onProgress: (l) => notes.push(l) })).rejects.toThrow('tart run failed');
    const name = EphemeralVm.nameFor(CONFIG, REQ);
    expect(k.ran).toEqual([{ name, dirs: [{ name: 'pods', path: join(dir, '.vm', name, 'pods') }] }]);
    expect(k.deleted).toEqual([name]);
    expect(existsSync(join(dir, '.vm', name))).toBe(false);
  });

  it('shares that cannot be made: the VM boots without them, the log says so', async () => {
    // A file where the `.vm` directory should be: no share can be made (as root too).
    writeFileSync(join(dir, '.vm'), '');
    const k = ctx(dir);
    const notes: string[] = [];
    await expect(acquireFresh(k.c, { ...REQ, signal: new AbortController().signal, onProgress: (l) => notes.push(l) })).rejects.toThrow('tart run failed');
    expect(k.ran).toHaveLength(1);
    expect(k.ran[0]!.dirs).toBeUndefined();
    expect(notes.some((l) => l.startsWith('caches left out: their shares could not be made'))).toBe(true);
    expect(readdirSync(dir)).toEqual(['.vm']);
  });
});

describe('standbyVmShape', () => {
  const base = {
    vmName: 'base', vmUser: 'admin', vmSshKey: '/k', vmNetwork: undefined, vmHostKey: [], clonePrefix: 'expo', tartHome: undefined, tartPath: undefined, minFreeDiskGb: 10,
    caches: [{ name: 'pods' }], cacheDir: '/c',
  };

  it('changes with what the VM is made of (image, login, network, caches and where their shares are), not with the rest', () => {
    const shape = standbyVmShape(base);
    expect(standbyVmShape({ ...base })).toBe(shape);
    for (const change of [{ vmName: 'other' }, { vmUser: 'u' }, { vmSshKey: '/k2' }, { vmNetwork: 'softnet' }, { vmHostKey: ['SHA256:x'] }, { clonePrefix: 'x' }, { tartHome: '/t' }, { minFreeDiskGb: 20 }, { caches: [{ name: 'npm' }] }, { caches: [] }, { cacheDir: '/d' }]) {
      expect(standbyVmShape({ ...base, ...change }), JSON.stringify(change)).not.toBe(shape);
    }
    // Without caches, cacheDir is not part of the VM.
    expect(standbyVmShape({ ...base, caches: [], cacheDir: '/d' })).toBe(standbyVmShape({ ...base, caches: [] }));
  });
});
