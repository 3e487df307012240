/**
 * StandbyPool with fakes: when a standby is made, what a claim gets (hit, or a miss after the
 * standby is deleted), staleness by age and base image, and close. The e2e file
 * (test/e2e/standby.test.ts) runs the same paths on the real agent and the tart simulator.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { baseImageFingerprint, StandbyPool, tartHomeOf, type StandbyParts, type StandbyVm } from '../../../src/agent/standby.ts';
import type { VmExit, VmInfo } from '../../../src/vm/vm-driver.ts';
import { FakeSshSession } from '../../support/fake-ssh-session.ts';

const log = pino({ level: 'silent' });

interface FakeVm extends StandbyVm {
  session: FakeSshSession;
  exit: () => void;
  released: number;
}

function fakeVm(name: string): FakeVm {
  let exit!: (e: VmExit) => void;
  const exited = new Promise<VmExit>((r) => (exit = r));
  const vm: FakeVm = {
    name,
    ip: '127.64.0.2',
    session: new FakeSshSession(),
    exited,
    exit: () => exit({ code: 1, signal: null, logTail: 'crashed', error: null }),
    released: 0,
    release: async () => {
      vm.released++;
    },
  };
  return vm;
}

function setup(o: { free?: number; maxAgeMs?: number; vmShape?: string } = {}) {
  const vms: FakeVm[] = [];
  const requests: { buildId: string; signal: AbortSignal }[] = [];
  let fingerprint = 'fp1';
  const listed: VmInfo[] = [];
  const counts = { hit: 0, miss: 0 };
  const removed: string[] = [];
  const pool = new StandbyPool({ log, metrics: { standbyUsed: (r) => counts[r]++ } });
  const parts: StandbyParts = {
    acquire: async (req) => {
      requests.push(req);
      const vm = fakeVm(`expo-w-${req.buildId}-${req.attempt}`);
      vms.push(vm);
      listed.push({ name: vm.name, source: 'local', state: 'running' });
      return vm;
    },
    driver: { list: async () => listed },
    baseFingerprint: () => fingerprint,
    maxAgeMs: o.maxAgeMs ?? 3_600_000,
    vmShape: o.vmShape,
    removed: async (name) => void removed.push(name),
  };
  pool.configure(parts);
  let free = o.free ?? 1;
  pool.start(() => free);
  return {
    pool,
    vms,
    requests,
    counts,
    removed,
    parts,
    setFree: (n: number) => (free = n),
    setFingerprint: (f: string) => (fingerprint = f),
    ready: () => vi.waitFor(() => expect(vms.length).toBeGreaterThan(0)).then(() => new Promise((r) => setImmediate(r))),
  };
}

const never = new AbortController().signal;

afterEach(() => {
  vi.useRealTimers();
});

describe('StandbyPool', () => {
  it('makes one standby while a slot is free, named as a clone of attempt 0, and none without a free slot', async () => {
    const s = setup({ free: 0 });
    s.pool.fill();
    expect(s.requests).toEqual([]);
    s.setFree(2);
    s.pool.fill();
    s.pool.fill();
    expect(s.requests).toHaveLength(1);
    expect(s.requests[0]!.buildId).toMatch(/^standby[a-z0-9]+$/);
    expect(s.pool.owns(s.requests[0]!.buildId)).toBe(true);
    await s.pool.close();
  });

  it('hands a healthy standby to a claim after `echo alive` answers (a hit), and keeps it known until its build releases it', async () => {
    const s = setup();
    await s.ready();
    const vm = s.vms[0]!;
    vm.session.expect('echo alive', { stdout: 'alive\n' });
    const notes: string[] = [];
    const got = await s.pool.take(never, (l) => notes.push(l));
    expect(got?.name).toBe(vm.name);
    expect(notes.join('\n')).toContain(`using the standby VM ${vm.name}`);
    expect(s.counts).toEqual({ hit: 1, miss: 0 });
    vm.session.assertDone();
    const id = s.requests[0]!.buildId;
    expect(s.pool.owns(id)).toBe(true);
    await got!.release();
    expect(s.pool.owns(id)).toBe(false);
    await s.pool.close();
  });

  it('deletes a standby whose tart run exited (its cache shares too) after a long life and makes the next one at once, without waiting for a claim', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const s = setup();
    await s.ready();
    vi.advanceTimersByTime(300_000);
    s.vms[0]!.exit();
    await vi.waitFor(() => expect(s.vms).toHaveLength(2));
    expect(s.vms[0]!.released).toBe(1);
    expect(s.removed).toEqual([s.vms[0]!.name]);
    s.vms[1]!.session.expect('echo alive', { stdout: 'alive\n' });
    expect((await s.pool.take(never, () => undefined))?.name).toBe(s.vms[1]!.name);
    expect(s.counts).toEqual({ hit: 1, miss: 0 });
    await s.pool.close();
  });

  it('a standby that dies soon after boot is replaced only after the retry wait, which keeps growing: never a tight clone-and-boot loop', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const s = setup();
    await s.ready();
    s.vms[0]!.exit();
    await vi.advanceTimersByTimeAsync(29_000);
    expect(s.vms).toHaveLength(1);
    expect(s.removed).toEqual([s.vms[0]!.name]);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(s.vms).toHaveLength(2);
    // Ready again: that alone does not reset the wait.
    await vi.advanceTimersByTimeAsync(20_000);
    s.vms[1]!.exit();
    await vi.advanceTimersByTimeAsync(59_000);
    expect(s.vms).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(s.vms).toHaveLength(3);
    await s.pool.close();
  });

  it('a standby whose deletion fails still has its cache shares removed', async () => {
    const s = setup();
    await s.ready();
    s.vms[0]!.release = async () => {
      throw new Error('tart delete failed');
    };
    await s.pool.close();
    expect(s.removed).toEqual([s.vms[0]!.name]);
  });

  it('tries again after a failed preparation on its own, waiting longer each time', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const pool = new StandbyPool({ log });
    let tries = 0;
    pool.configure({
      acquire: async () => {
        tries++;
        throw new Error('clone failed');
      },
      driver: { list: async () => [] },
      baseFingerprint: () => null,
      maxAgeMs: 3_600_000,
    });
    pool.start(() => 1);
    await vi.waitFor(() => expect(tries).toBe(1));
    await vi.advanceTimersByTimeAsync(29_000);
    expect(tries).toBe(1);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(tries).toBe(2);
    await vi.advanceTimersByTimeAsync(59_000);
    expect(tries).toBe(2);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(tries).toBe(3);
    await pool.close();
    await vi.advanceTimersByTimeAsync(600_000);
    expect(tries).toBe(3);
  });

  it('a reload that leaves the VM as it was keeps the standby; one that changes it replaces it', async () => {
    const s = setup({ vmShape: 'a' });
    await s.ready();
    s.pool.configure({ ...s.parts, vmShape: 'a' });
    s.vms[0]!.session.expect('echo alive', { stdout: 'alive\n' });
    const got = await s.pool.take(never, () => undefined);
    expect(got?.name).toBe(s.vms[0]!.name);
    await vi.waitFor(() => expect(s.vms).toHaveLength(2));
    await new Promise((r) => setImmediate(r));
    s.pool.configure({ ...s.parts, vmShape: 'b' });
    await vi.waitFor(() => expect(s.vms[1]!.released).toBe(1));
    expect(s.removed).toEqual([s.vms[1]!.name]);
    await s.pool.close();
  });

  it('a build claimed before a reload that changed the VM does not get the new standby; the next claim does', async () => {
    const s = setup({ vmShape: 'a' });
    const claimedUnder = s.pool.configure({ ...s.parts, vmShape: 'a' });
    await s.ready();
    const current = s.pool.configure({ ...s.parts, vmShape: 'b' });
    expect(current).not.toBe(claimedUnder);
    await vi.waitFor(() => expect(s.vms).toHaveLength(2));
    await new Promise((r) => setImmediate(r));
    const notes: string[] = [];
    expect(await s.pool.take(never, (l) => notes.push(l), claimedUnder)).toBeNull();
    expect(notes.join('\n')).toMatch(/reloaded since this build was claimed/);
    expect(s.vms[1]!.released).toBe(0);
    s.vms[1]!.session.expect('echo alive', { stdout: 'alive\n' });
    expect((await s.pool.take(never, () => undefined, current))?.name).toBe(s.vms[1]!.name);
    expect(s.counts).toEqual({ hit: 1, miss: 1 });
    await s.pool.close();
  });

  it('deletes a standby whose SSH no longer answers', async () => {
    const s = setup();
    await s.ready();
    s.vms[0]!.session.expect('echo alive', { throws: new Error('connection reset') });
    expect(await s.pool.take(never, () => undefined)).toBeNull();
    expect(s.vms[0]!.released).toBe(1);
    await s.pool.close();
  });

  it('deletes a standby of an older base image, or older than the maximum age', async () => {
    const s = setup({ maxAgeMs: 60_000 });
    await s.ready();
    s.setFingerprint('fp2');
    const notes: string[] = [];
    expect(await s.pool.take(never, (l) => notes.push(l))).toBeNull();
    expect(notes.join('\n')).toContain('the base image changed');
    s.pool.fill();
    await vi.waitFor(() => expect(s.vms).toHaveLength(2));
    await new Promise((r) => setImmediate(r));
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() + 61_000);
    notes.length = 0;
    expect(await s.pool.take(never, (l) => notes.push(l))).toBeNull();
    expect(notes.join('\n')).toContain('older than standbyMaxAgeS');
    expect(s.vms.map((v) => v.released)).toEqual([1, 1]);
    expect(s.counts).toEqual({ hit: 0, miss: 2 });
    await s.pool.close();
  });

  it('close aborts a standby still booting and deletes a ready one', async () => {
    const s = setup();
    await s.ready();
    await s.pool.close();
    expect(s.vms[0]!.released).toBe(1);
    s.pool.fill();
    expect(s.requests).toHaveLength(1);

    const booting = new StandbyPool({ log });
    let aborted = false;
    booting.configure({
      acquire: (req) =>
        new Promise((_, reject) =>
          req.signal.addEventListener('abort', () => {
            aborted = true;
            reject(new Error('aborted'));
          }),
        ),
      driver: { list: async () => [] },
      baseFingerprint: () => null,
      maxAgeMs: 1000,
    });
    booting.start(() => 1);
    await booting.close();
    expect(aborted).toBe(true);
    expect(booting.liveIds()).toEqual([]);
  });
});

describe('baseImageFingerprint', () => {
  it('changes when the base is rewritten and is null for a base that is not a local VM', () => {
    const home = mkdtempSync(join(tmpdir(), 'standby-fp-'));
    try {
      const dir = join(home, 'vms', 'base');
      // As `tart clone NEW base` does: a new directory with new files (here also of new sizes).
      const write = (contents: string) => {
        rmSync(dir, { recursive: true, force: true });
        mkdirSync(dir, { recursive: true });
        for (const f of ['config.json', 'disk.img', 'nvram.bin']) writeFileSync(join(dir, f), `${f}${contents}`);
      };
      write('');
      const before = baseImageFingerprint(home, 'base');
      expect(before).not.toBeNull();
      expect(baseImageFingerprint(home, 'base')).toBe(before);
      write(' provisioned again');
      expect(baseImageFingerprint(home, 'base')).not.toBe(before);
      expect(baseImageFingerprint(home, 'ghcr.io/cirruslabs/macos-sequoia-xcode:latest')).toBeNull();
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});

describe('tartHomeOf', () => {
  it("the config's tartHome, else the agent's TART_HOME (what tart itself uses), else ~/.tart", () => {
    expect(tartHomeOf({ tartHome: '/cfg' }, { TART_HOME: '/env' })).toBe('/cfg');
    expect(tartHomeOf({ tartHome: undefined }, { TART_HOME: '/env' })).toBe('/env');
    expect(tartHomeOf({ tartHome: undefined }, { TART_HOME: '' })).toMatch(/\/\.tart$/);
    expect(tartHomeOf({ tartHome: undefined }, {})).toMatch(/\/\.tart$/);
  });
});
