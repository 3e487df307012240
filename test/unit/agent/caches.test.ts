/**
 * The host caches' disk side (caches.ts) on a real temporary directory with real `cp`, and the
 * config fields and guest script around it (cache-config.ts, build-caches.ts).
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseAgentConfig } from '../../../src/agent/config.ts';
import { parseCacheConfig, type CacheSpec } from '../../../src/agent/cache-config.ts';
import { BuildCaches, linkScript, type CacheMetrics } from '../../../src/agent/build-caches.ts';
import { CacheStore, keyValueOf, variantOf } from '../../../src/agent/caches.ts';
import type { ExpoError } from '../../../src/protocol/errors.ts';

let dir: string;
let store: CacheStore;
let clock = 1_000;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'caches-'));
  clock = 1_000;
  store = new CacheStore({ cacheDir: dir, now: () => clock++ });
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const B1 = 'aaaaaaaaaaaaaaaa';
const B2 = 'bbbbbbbbbbbbbbbb';
const spec = (o: Partial<CacheSpec> = {}): CacheSpec => ({ name: 'pods', guestPath: '~/Library/Caches/CocoaPods', key: undefined, maxSizeGb: 10, ...o });

/** A checkout as production makes it: into the share of a VM of its own (made as before a boot). */
let vms = 0;
async function co(s: CacheSpec, env: Record<string, string>, token: string) {
  const [share] = await store.vmShares(`vm-${++vms}`, [s]);
  return store.checkout(s, env, token, share!.path);
}

describe('CacheStore', () => {
  it('a miss starts empty; a promoted copy is what the next checkout finds (a hit)', async () => {
    const first = await co(spec(), {}, 'b1-1');
    expect(first.hit).toBe(false);
    expect(readdirSync(first.path)).toEqual([]);
    mkdirSync(join(first.path, 'Specs'));
    writeFileSync(join(first.path, 'Specs', 'React.json'), '{"v":1}');
    await store.promote(first);
    // The copy became the base in place: the variant links to it.
    expect(readlinkSync(join(dir, 'pods', variantOf('default')))).toBe(join('.gen', first.id));
    const second = await co(spec(), {}, 'b2-1');
    expect(second.hit).toBe(true);
    expect(readFileSync(join(second.path, 'Specs', 'React.json'), 'utf8')).toBe('{"v":1}');
    expect(store.list('pods')).toMatchObject([{ cache: 'pods', key: 'default' }]);
  });

  it('two copies at once never see each other; the later promotion wins; the base never holds half a build', async () => {
    const seed = await co(spec(), {}, 'seed-1');
    writeFileSync(join(seed.path, 'shared.txt'), 'base');
    await store.promote(seed);
    const [a, b] = await Promise.all([co(spec(), {}, 'a-1'), co(spec(), {}, 'b-1')]);
    expect(a.path).not.toBe(b.path);
    writeFileSync(join(a.path, 'shared.txt'), 'from a');
    writeFileSync(join(a.path, 'only-a.txt'), 'a');
    expect(readFileSync(join(b.path, 'shared.txt'), 'utf8')).toBe('base');
    expect(existsSync(join(b.path, 'only-a.txt'))).toBe(false);
    const base = join(dir, 'pods', variantOf('default'));
    expect(readFileSync(join(base, 'shared.txt'), 'utf8')).toBe('base');
    await store.promote(a);
    writeFileSync(join(b.path, 'only-b.txt'), 'b');
    await store.promote(b);
    expect(readdirSync(base).sort()).toEqual(['only-b.txt', 'shared.txt']);
    expect(readFileSync(join(base, 'shared.txt'), 'utf8')).toBe('base');
  });

  it('a discarded copy leaves the base as it was', async () => {
    const seed = await co(spec(), {}, 'seed-1');
    writeFileSync(join(seed.path, 'keep.txt'), 'kept');
    await store.promote(seed);
    const failed = await co(spec(), {}, 'f-1');
    writeFileSync(join(failed.path, 'keep.txt'), 'clobbered');
    writeFileSync(join(failed.path, 'junk.txt'), 'junk');
    await store.discard(failed);
    const base = join(dir, 'pods', variantOf('default'));
    expect(readdirSync(base)).toEqual(['keep.txt']);
    expect(readFileSync(join(base, 'keep.txt'), 'utf8')).toBe('kept');
    expect(readdirSync(join(dir, 'pods', '.gen'))).toEqual([basename(readlinkSync(base))]);
  });

  it('keys pick variants; past maxSizeGb the least recently used variant goes, never the one just promoted', async () => {
    const s = spec({ key: '$LOCK_HASH', maxSizeGb: 2500 / 1e9 });
    for (const hash of ['aaa', 'bbb', 'ccc']) {
      const c = await co(s, { LOCK_HASH: hash }, `${hash}-1`);
      writeFileSync(join(c.path, 'blob'), 'x'.repeat(1000));
      await store.promote(c);
    }
    // 3 × 1000 bytes > 2500: the oldest (aaa) went.
    expect(store.list('pods').map((v) => v.key).sort()).toEqual(['bbb', 'ccc']);
    const again = await co(s, { LOCK_HASH: 'bbb' }, 'bbb-2'); // bbb is now the most recently used
    await store.discard(again);
    const d = await co(s, { LOCK_HASH: 'ddd' }, 'ddd-1');
    writeFileSync(join(d.path, 'blob'), 'x'.repeat(1000));
    await store.promote(d);
    expect(store.list('pods').map((v) => v.key).sort()).toEqual(['bbb', 'ddd']);
    const huge = await co(s, { LOCK_HASH: 'eee' }, 'eee-1');
    writeFileSync(join(huge.path, 'blob'), 'x'.repeat(5000));
    await store.promote(huge);
    expect(store.list('pods').map((v) => v.key)).toEqual(['eee']);
  });

  it('clear removes every variant; sweep removes copies an earlier agent left', async () => {
    const c = await co(spec(), {}, 'x-1');
    await store.promote(c);
    const left = await co(spec(), {}, 'y-1');
    expect(await store.clear('pods')).toBe(1);
    expect(store.list()).toEqual([]);
    await store.sweep();
    expect(existsSync(left.path)).toBe(false);
  });

  it('key values: none → default, a fixed string, $NAME from the env (unset → default)', () => {
    expect(keyValueOf(spec(), { A: '1' })).toBe('default');
    expect(keyValueOf(spec({ key: 'xcode-16' }), {})).toBe('xcode-16');
    expect(keyValueOf(spec({ key: '$A' }), { A: '1' })).toBe('1');
    expect(keyValueOf(spec({ key: '$A' }), {})).toBe('default');
  });
});

describe('BuildCaches', () => {
  const VM1 = 'expo-w-standbyabc-0';
  const VM2 = 'expo-w-b2-1';
  // A guest where every command works (the link script says it linked the one cache, pods).
  const exec0 = (ran: string[] = []) => ({ exec: async (cmd: string) => (ran.push(cmd), { exitCode: 0, signal: null, stdout: 'linked pods\n', stderr: '', durationMs: 1 }) });
  const never = new AbortController().signal;

  it('makes each VM\'s shares empty before it boots, copies the variant into them at the claim, promotes on success, discards on failure, removes the VM\'s shares', async () => {
    const seen: string[] = [];
    const metrics: CacheMetrics = { cacheLookup: (c, r) => seen.push(`${c}:${r}`), cacheBytes: (c, b) => seen.push(`${c}=${b}`) };
    const caches = new BuildCaches({ store, caches: [spec()], sharedFilesRoot: '/Volumes/My Shared Files', metrics, warn: () => undefined });
    const notes: string[] = [];
    // Both VMs boot before either claim (a standby and a second slot's VM).
    const shares1 = await caches.shares(VM1);
    const shares2 = await caches.shares(VM2);
    expect(shares1).toEqual([{ name: 'pods', path: join(dir, '.vm', VM1, 'pods') }]);
    expect(readdirSync(shares1[0]!.path)).toEqual([]);
    const one = caches.open({ id: B1, attempt: 1, env: {} }, VM1, (l) => notes.push(l));
    await one.checkout(never);
    writeFileSync(join(shares1[0]!.path, 'f'), 'abc');
    const ran: string[] = [];
    await one.link(exec0(ran), never);
    await one.settle!(exec0(ran), never);
    expect(ran[1]).toBe('sync');
    await one.end(true);
    expect(existsSync(join(dir, '.vm', VM1))).toBe(false);
    // The VM booted before the first build's promotion still gets its files, at its claim.
    const two = caches.open({ id: B2, attempt: 1, env: {} }, VM2, (l) => notes.push(l));
    await two.checkout(never);
    expect(readFileSync(join(shares2[0]!.path, 'f'), 'utf8')).toBe('abc');
    writeFileSync(join(shares2[0]!.path, 'f'), 'broken');
    await two.end(false);
    expect(existsSync(join(dir, '.vm', VM2))).toBe(false);
    expect(seen).toEqual(['pods:miss', 'pods=3', 'pods:hit']);
    expect(notes).toEqual(['cache pods: miss (starts empty)', 'cache pods: hit']);
    expect(readFileSync(join(dir, 'pods', variantOf('default'), 'f'), 'utf8')).toBe('abc');
  });

  it('a succeeded build whose guest was not synced (sync failed, or never ran) is not promoted', async () => {
    const caches = new BuildCaches({ store, caches: [spec()], sharedFilesRoot: '/Volumes/My Shared Files', warn: () => undefined });
    const notes: string[] = [];
    const [share] = await caches.shares(VM1);
    const one = caches.open({ id: B1, attempt: 1, env: {} }, VM1, (l) => notes.push(l));
    await one.checkout(never);
    writeFileSync(join(share!.path, 'f'), 'half');
    await one.link(exec0(), never);
    await one.settle!({ exec: async () => ({ exitCode: 1, signal: null, stdout: '', stderr: 'io error', durationMs: 1 }) }, never);
    await one.end(true);
    await caches.shares(VM2);
    const two = caches.open({ id: B2, attempt: 1, env: {} }, VM2, () => undefined);
    await two.checkout(never);
    await two.end(true);
    expect(store.list('pods')).toEqual([]);
    expect(readdirSync(join(dir, '.vm'))).toEqual([]);
    expect(existsSync(join(dir, 'pods', '.gen')) ? readdirSync(join(dir, 'pods', '.gen')) : []).toEqual([]);
    expect(notes).toContain('caches will not be kept: sync in the VM failed (exit 1)');
  });

  it('a VM booted without the shares (before caches were configured) runs its build without them', async () => {
    const seen: string[] = [];
    const caches = new BuildCaches({ store, caches: [spec()], sharedFilesRoot: '/Volumes/My Shared Files', metrics: { cacheLookup: (c, r) => seen.push(`${c}:${r}`), cacheBytes: () => undefined }, warn: () => undefined });
    const notes: string[] = [];
    const s = caches.open({ id: B1, attempt: 1, env: {} }, VM1, (l) => notes.push(l));
    await s.checkout(never);
    const ran: string[] = [];
    await s.link(exec0(ran), never);
    await s.end(true);
    expect(ran).toEqual([]);
    expect(seen).toEqual(['pods:error']);
    expect(notes).toEqual(["cache pods left out: the VM was booted without this cache's share"]);
  });

  it('a failed link counts unlinked, leaves the build without its caches and never promotes the copy', async () => {
    const seen: string[] = [];
    const caches = new BuildCaches({ store, caches: [spec()], sharedFilesRoot: '/Volumes/My Shared Files', metrics: { cacheLookup: (c, r) => seen.push(`${c}:${r}`), cacheBytes: () => undefined }, warn: () => undefined });
    const notes: string[] = [];
    await caches.shares(VM1);
    const s = caches.open({ id: B1, attempt: 1, env: {} }, VM1, (l) => notes.push(l));
    await s.checkout(never);
    await s.link({ exec: async () => ({ exitCode: 1, signal: null, stdout: '', stderr: 'share pods not mounted', durationMs: 1 }) }, never);
    await s.settle!(exec0(), never);
    await s.end(true);
    // The (empty, on a miss) copy never becomes the base: later builds would log a hit of nothing.
    expect(store.list('pods')).toEqual([]);
    expect(seen).toEqual(['pods:miss', 'pods:unlinked']);
    expect(notes.at(-1)).toBe('cache pods could not be linked in the VM (exit 1): share pods not mounted');
  });

  it('the link waits for an unfinished copy (a guest never links half a copy); end during the copy stops it and leaves no share', async () => {
    // A base to copy, then a copy that finishes only when the test says so.
    const seed = await co(spec(), {}, 'seed-1');
    writeFileSync(join(seed.path, 'f'), 'base');
    await store.promote(seed);
    let release!: () => void;
    let onStart!: () => void;
    let started = new Promise<void>((r) => (onStart = r));
    const copyAborts: boolean[] = [];
    const slow = new CacheStore({
      cacheDir: dir,
      copy: async (src, dst, signal) => {
        const go = new Promise<void>((r) => (release = r));
        onStart();
        await go;
        copyAborts.push(signal?.aborted ?? false);
        writeFileSync(join(dst, 'f'), readFileSync(join(src, 'f')));
      },
    });
    const caches = new BuildCaches({ store: slow, caches: [spec()], sharedFilesRoot: '/Volumes/My Shared Files', warn: () => undefined });
    await caches.shares(VM1);
    const one = caches.open({ id: B1, attempt: 1, env: {} }, VM1, () => undefined);
    const copied = one.checkout(never);
    const ran: string[] = [];
    await started;
    const linking = one.link({ exec: async (cmd: string) => (ran.push(cmd), { exitCode: 0, signal: null, stdout: 'linked pods\n', stderr: '', durationMs: 1 }) }, never);
    // The copy is running: give the link every chance to run early.
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    const linkedBeforeCopy = ran.length > 0;
    release();
    await copied;
    await linking;
    expect(linkedBeforeCopy).toBe(false);
    expect(ran).toHaveLength(1);
    expect(readFileSync(join(slow.vmShare(VM1, 'pods'), 'f'), 'utf8')).toBe('base');
    await one.end(false);

    // end while the copy runs: the copy is told to stop, nothing of the VM is left.
    await caches.shares(VM2);
    const two = caches.open({ id: B2, attempt: 1, env: {} }, VM2, () => undefined);
    started = new Promise<void>((r) => (onStart = r));
    void two.checkout(never);
    await started;
    const ending = two.end(false);
    release();
    await ending;
    expect(copyAborts).toEqual([false, true]);
    expect(existsSync(join(dir, '.vm', VM2))).toBe(false);
    expect(readFileSync(join(dir, 'pods', variantOf('default'), 'f'), 'utf8')).toBe('base');
  });

  it('an abort during a real copy kills cp and leaves the share empty; the cache is left out', async () => {
    const seed = await co(spec(), {}, 'seed-1');
    for (let i = 0; i < 50; i++) writeFileSync(join(seed.path, `f${i}`), 'x'.repeat(1000));
    await store.promote(seed);
    const [share] = await store.vmShares(VM1, [spec()]);
    const ac = new AbortController();
    ac.abort(new Error('cancelled'));
    await expect(store.checkout(spec(), {}, 'c-1', share!.path, ac.signal)).rejects.toThrow('cancelled');
    expect(readdirSync(share!.path)).toEqual([]);
  });

  it('the share is emptied before the copy: what a waiting guest wrote there is never kept', async () => {
    const caches = new BuildCaches({ store, caches: [spec()], sharedFilesRoot: '/Volumes/My Shared Files', warn: () => undefined });
    const [share] = await caches.shares(VM1);
    writeFileSync(join(share!.path, 'spotlight-junk'), 'j');
    const s = caches.open({ id: B1, attempt: 1, env: {} }, VM1, () => undefined);
    await s.checkout(never);
    expect(readdirSync(share!.path)).toEqual([]);
    writeFileSync(join(share!.path, 'f'), 'built');
    await s.link({ exec: async () => ({ exitCode: 0, signal: null, stdout: 'linked pods\n', stderr: '', durationMs: 1 }) }, never);
    await s.settle!(exec0(), never);
    await s.end(true);
    expect(readdirSync(join(dir, 'pods', variantOf('default')))).toEqual(['f']);
  });

  it('of two caches, only the one linked is promoted; the other counts as unlinked', async () => {
    const seen: string[] = [];
    const npm = spec({ name: 'npm', guestPath: '~/.npm' });
    const caches = new BuildCaches({ store, caches: [spec(), npm], sharedFilesRoot: '/Volumes/My Shared Files', metrics: { cacheLookup: (c, r) => seen.push(`${c}:${r}`), cacheBytes: () => undefined }, warn: () => undefined });
    const notes: string[] = [];
    const shares = await caches.shares(VM1);
    const s = caches.open({ id: B1, attempt: 1, env: {} }, VM1, (l) => notes.push(l));
    await s.checkout(never);
    for (const sh of shares) writeFileSync(join(sh.path, 'f'), sh.name);
    await s.link({ exec: async () => ({ exitCode: 1, signal: null, stdout: 'linked pods\n', stderr: 'share npm not mounted', durationMs: 1 }) }, never);
    await s.settle!(exec0(), never);
    await s.end(true);
    expect(seen).toEqual(['pods:miss', 'npm:miss', 'npm:unlinked']);
    expect(notes.at(-1)).toBe('cache npm could not be linked in the VM (exit 1): share npm not mounted');
    expect(store.list().map((v) => v.cache)).toEqual(['pods']);
    expect(existsSync(join(dir, 'npm', '.gen')) ? readdirSync(join(dir, 'npm', '.gen')) : []).toEqual([]);
  });

  it('an id that is not a build id (it would become a host path) gets no caches', async () => {
    const caches = new BuildCaches({ store, caches: [spec()], sharedFilesRoot: '/Volumes/My Shared Files', warn: () => undefined });
    const notes: string[] = [];
    const s = caches.open({ id: '../../x', attempt: 1, env: {} }, VM1, (l) => notes.push(l));
    await s.checkout(never);
    await s.end(false);
    expect(notes).toEqual(['caches left out: the build id "../../x" is not a valid id']);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('refuses a VM name that is not one (it becomes a host path)', async () => {
    const caches = new BuildCaches({ store, caches: [spec()], sharedFilesRoot: '/Volumes/My Shared Files', warn: () => undefined });
    await expect(caches.shares('..')).rejects.toThrow('not a VM name');
    await expect(caches.shares('a/b')).rejects.toThrow('not a VM name');
  });

  it('links each guest path to its share, quoting paths, ~ under $HOME', () => {
    const script = linkScript('~/My Shared Files', [spec({ name: 'npm', guestPath: "/Users/admin/it's npm/" })]);
    expect(script).toBe(
      [
        'set -e',
        `i=0; while [ ! -d "$HOME"/'My Shared Files/npm' ] && [ $i -lt 60 ]; do sleep 0.5; i=$((i+1)); done`,
        `test -d "$HOME"/'My Shared Files/npm' || { echo share npm not mounted at "$HOME"/'My Shared Files/npm' >&2; exit 1; }`,
        `mkdir -p "$(dirname '/Users/admin/it'\\''s npm')"`,
        `rm -rf '/Users/admin/it'\\''s npm'`,
        `ln -s "$HOME"/'My Shared Files/npm' '/Users/admin/it'\\''s npm'`,
        'echo linked npm',
      ].join('\n'),
    );
  });
});

describe('cache config', () => {
  const expand = (p: string) => p.replace(/^~/, '/home/u');
  const parse = (raw: Record<string, unknown>) => {
    const problems: string[] = [];
    const c = parseCacheConfig(raw, (f, w) => problems.push(`${f}: ${w}`), expand);
    return { c, problems };
  };

  it('defaults: no caches, ~/.expo-worker/caches, /Volumes/My Shared Files', () => {
    expect(parse({}).c).toEqual({ caches: [], cacheDir: '/home/u/.expo-worker/caches', vmSharedFilesRoot: '/Volumes/My Shared Files' });
  });

  it('names every bad field', () => {
    const { problems } = parse({
      caches: [
        { name: 'pods', guestPath: '~/Library/Caches/CocoaPods', key: '$PODFILE_LOCK', maxSizeGb: 0.5 },
        { name: '../x', guestPath: 'relative', key: '$1bad', maxSizeGb: 0 },
        { name: 'pods', guestPath: '/a/../b', extra: 1 },
      ],
      cacheDir: '/tmp/a:b',
      vmSharedFilesRoot: 'Volumes',
    });
    expect(problems).toEqual([
      'caches[1].name: must match [A-Za-z0-9][A-Za-z0-9_-]{0,39}',
      'caches[1].guestPath: must be absolute or start with ~/',
      'caches[1].key: must be a fixed string (≤ 200 characters) or $NAME (an env variable of the build)',
      'caches[1].maxSizeGb: must be a number > 0 (GB; fractions allowed)',
      'caches[2].extra: unknown field (name, guestPath, key, maxSizeGb)',
      'caches[2].name: "pods" is listed twice',
      'caches[2].guestPath: must not contain . or .. components',
      "cacheDir: must not contain ':' or ',' (tart's --dir separators): /tmp/a:b",
      'vmSharedFilesRoot: must be absolute or start with ~/',
    ]);
  });

  it('reaches the agent config: CFG_INVALID names the field', () => {
    const seed = { vmName: 'b', vmUser: 'u', vmSshKey: '/k', controllerUrl: 'http://127.0.0.1:1', apiKey: 'k' };
    const ok = parseAgentConfig({ ...seed, caches: [{ name: 'npm', guestPath: '~/.npm' }] }, { checkFiles: false, home: '/home/u' });
    expect(ok.caches).toEqual([{ name: 'npm', guestPath: '~/.npm', key: undefined, maxSizeGb: 10 }]);
    expect(ok.cacheDir).toBe('/home/u/.expo-worker/caches');
    try {
      parseAgentConfig({ ...seed, caches: [{ name: 'npm' }] }, { checkFiles: false });
      expect.unreachable();
    } catch (err) {
      expect((err as ExpoError).code).toBe('CFG_INVALID');
      expect((err as ExpoError).message).toContain('caches[0].guestPath: is required');
    }
  });
});
