/**
 * The host caches' disk safety (caches.ts) on real temporary directories: copies a guest made
 * read-only are still removed (as a non-root user: root ignores modes), promotion switches a
 * symlink with one rename, and a crash at any point leaves a usable base that sweep keeps.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CacheSpec } from '../../../src/agent/cache-config.ts';
import { CacheStore, variantOf } from '../../../src/agent/caches.ts';

const CACHES_TS = resolve(import.meta.dirname, '../../../src/agent/caches.ts');
const CACHE_FS_TS = resolve(import.meta.dirname, '../../../src/agent/cache-fs.ts');
const NOBODY = 65534;

let dir: string;
let store: CacheStore;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'cache-disk-'));
  store = new CacheStore({ cacheDir: dir });
});
afterEach(() => {
  chmodAll(dir);
  rmSync(dir, { recursive: true, force: true });
});

/** Makes every real directory under `d` writable again (for the test's own cleanup as a non-root user). */
function chmodAll(d: string): void {
  try {
    if (!lstatSync(d).isDirectory()) return;
    chmodSync(d, 0o755);
    for (const n of readdirSync(d)) chmodAll(join(d, n));
  } catch {
    // gone
  }
}

function chownAll(d: string, uid: number): void {
  chownSync(d, uid, uid);
  if (!lstatSync(d).isDirectory()) return;
  for (const n of readdirSync(d)) chownAll(join(d, n), uid);
}

/**
 * Runs `body` (an async function of `m`, the caches and cache-fs modules, and `dir`; `co(store,
 * spec, env, token)` checks out into a new VM's share) in a Node child as a
 * non-root user: as root (a CI container) it is `nobody`, who then owns `dir`, so the
 * permission checks the agent meets on a Mac apply.
 */
function runAsUser(body: string): string {
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    chmodSync(dir, 0o755);
    chownAll(dir, NOBODY);
  }
  const script = `const m = { ...(await import(${JSON.stringify(CACHES_TS)})), ...(await import(${JSON.stringify(CACHE_FS_TS)})) }; let vms = 0; const co = async (store, spec, env, token) => { const [sh] = await store.vmShares('vm-' + ++vms, [spec]); return store.checkout(spec, env, token, sh.path); }; const dir = process.argv[1]; const out = await (${body})(m, dir); console.log(JSON.stringify(out ?? null));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, dir], { encoding: 'utf8', timeout: 60_000, ...(asRoot ? { uid: NOBODY, gid: NOBODY } : {}) });
  if (r.status !== 0) throw new Error(`child failed (${r.status}): ${r.stderr}`);
  return r.stdout.trim();
}

const spec = (o: Partial<CacheSpec> = {}): CacheSpec => ({ name: 'gomod', guestPath: '~/go/pkg/mod', key: undefined, maxSizeGb: 10, ...o });

/** A checkout as production makes it: into the share of a VM of its own (made as before a boot). */
let vms = 0;
async function co(s: CacheSpec, env: Record<string, string>, token: string) {
  const [share] = await store.vmShares(`vm-${++vms}`, [s]);
  return store.checkout(s, env, token, share!.path);
}

/** A Go-module-cache-like tree: read-only directories with files in them. */
function readOnlyTree(root: string): void {
  mkdirSync(join(root, 'mod', 'example.com', 'x@v1'), { recursive: true });
  writeFileSync(join(root, 'mod', 'example.com', 'x@v1', 'go.mod'), 'module x');
  chmodSync(join(root, 'mod', 'example.com', 'x@v1'), 0o555);
  chmodSync(join(root, 'mod', 'example.com'), 0o555);
}

describe('removing a copy a guest made read-only', () => {
  it('removeTree removes read-only directories and never follows a symlink out of the copy', () => {
    const copy = join(dir, 'copy');
    readOnlyTree(copy);
    const outside = join(dir, 'outside');
    mkdirSync(join(outside, 'ro'), { recursive: true });
    writeFileSync(join(outside, 'ro', 'keep'), 'keep');
    chmodSync(join(outside, 'ro'), 0o555);
    symlinkSync(join(outside, 'ro'), join(copy, 'link'));
    runAsUser(`async (m, dir) => m.removeTree(dir + '/copy')`);
    expect(existsSync(copy)).toBe(false);
    expect(readFileSync(join(outside, 'ro', 'keep'), 'utf8')).toBe('keep');
    expect(statSync(join(outside, 'ro')).mode & 0o777).toBe(0o555);
  });

  it('discard, promotion over a read-only base, and the start-up sweep all remove read-only copies', () => {
    const out = runAsUser(`async (m, dir) => {
      const store = new m.CacheStore({ cacheDir: dir });
      const spec = ${JSON.stringify(spec())};
      const { mkdirSync, writeFileSync, chmodSync } = await import('node:fs');
      const ro = (p) => { mkdirSync(p + '/mod/x', { recursive: true }); writeFileSync(p + '/mod/x/f', 'v'); chmodSync(p + '/mod/x', 0o555); chmodSync(p + '/mod', 0o555); };
      const first = await co(store, spec, {}, 'a-1');
      ro(first.path);
      chmodSync(first.path, 0o555); // the share's root too: its move into .gen rewrites its '..'
      await store.promote(first);
      const failed = await co(store, spec, {}, 'b-1');
      await store.discard(failed);
      const second = await co(store, spec, {}, 'c-1');
      writeFileSync(second.path + '/new', 'n');
      await store.promote(second);
      const left = await co(store, spec, {}, 'd-1');
      ro(left.path + '/more');
      const swept = await store.sweep();
      return { swept: swept.length, failedGone: !(await import('node:fs')).existsSync(failed.path), leftGone: !(await import('node:fs')).existsSync(left.path) };
    }`);
    expect(JSON.parse(out)).toEqual({ swept: 0, failedGone: true, leftGone: true });
    // Only the current base is left.
    const base = join(dir, 'gomod', variantOf('default'));
    expect(readdirSync(join(dir, 'gomod', '.gen'))).toEqual([basename(readlinkSync(base))]);
    expect(readFileSync(join(base, 'new'), 'utf8')).toBe('n');
  });

  it('a copy that cannot be removed is reported by sweep, which does not throw', async () => {
    const root = join(dir, 'gomod', '.gen');
    mkdirSync(join(root, 'orphan'), { recursive: true });
    const out = runAsUser(`async (m, dir) => {
      const { chmodSync } = await import('node:fs');
      chmodSync(dir + '/gomod/.gen', 0o555); // the sweep cannot unlink in here (not its copy)
      const failed = await new m.CacheStore({ cacheDir: dir }).sweep();
      chmodSync(dir + '/gomod/.gen', 0o755);
      return failed.map((f) => f.path);
    }`);
    // As a non-root user the removal fails and is returned; root would have removed it.
    expect(JSON.parse(out)).toEqual([join(root, 'orphan')]);
  });
});

describe('atomic promotion', () => {
  it('the base is a symlink to a .gen directory, switched by one rename; the old one is removed', async () => {
    const a = await co(spec(), {}, 'a-1');
    writeFileSync(join(a.path, 'f'), 'a');
    await store.promote(a);
    const base = join(dir, 'gomod', variantOf('default'));
    expect(lstatSync(base).isSymbolicLink()).toBe(true);
    expect(readlinkSync(base)).toBe(join('.gen', a.id));
    const b = await co(spec(), {}, 'b-1');
    writeFileSync(join(b.path, 'f'), 'b');
    await store.promote(b);
    expect(readlinkSync(base)).toBe(join('.gen', b.id));
    expect(existsSync(join(dir, 'gomod', '.gen', a.id))).toBe(false);
    expect(readFileSync(join(base, 'f'), 'utf8')).toBe('b');
    expect(store.list('gomod')).toMatchObject([{ key: 'default', bytes: 1 }]);
  });

  it("an older agent's plain base directory is migrated on its first promotion", async () => {
    const base = join(dir, 'gomod', variantOf('default'));
    mkdirSync(base, { recursive: true });
    writeFileSync(join(base, 'old'), 'old');
    const c = await co(spec(), {}, 'a-1');
    expect(c.hit).toBe(true);
    expect(readFileSync(join(c.path, 'old'), 'utf8')).toBe('old');
    writeFileSync(join(c.path, 'new'), 'new');
    await store.promote(c);
    expect(lstatSync(base).isSymbolicLink()).toBe(true);
    expect(readdirSync(base).sort()).toEqual(['new', 'old']);
    expect(readdirSync(join(dir, 'gomod', '.gen'))).toEqual([c.id]);
  });

  it('a crash before the switch keeps the old base; a crash mid-migration is linked back by sweep', async () => {
    const base = join(dir, 'gomod', variantOf('default'));
    const a = await co(spec(), {}, 'a-1');
    writeFileSync(join(a.path, 'f'), 'a');
    await store.promote(a);
    // Crash 1: a copy checked out (and a stray link made) but never switched in.
    const b = await co(spec(), {}, 'b-1');
    writeFileSync(join(b.path, 'f'), 'half');
    symlinkSync(join('.gen', b.id), join(dir, 'gomod', '.gen', 'link-000000000000'));
    expect(await store.sweep()).toEqual([]);
    expect(readFileSync(join(base, 'f'), 'utf8')).toBe('a');
    expect(readdirSync(join(dir, 'gomod', '.gen'))).toEqual([a.id]);
    // Crash 2: an older plain base moved aside for migration, no link yet.
    rmSync(base);
    rmSync(join(dir, 'gomod', '.gen'), { recursive: true });
    mkdirSync(join(dir, 'gomod', '.gen', `${variantOf('default')}-m`), { recursive: true });
    writeFileSync(join(dir, 'gomod', '.gen', `${variantOf('default')}-m`, 'f'), 'plain');
    expect(await store.sweep()).toEqual([]);
    const c = await co(spec(), {}, 'c-1');
    expect(c.hit).toBe(true);
    expect(readFileSync(join(c.path, 'f'), 'utf8')).toBe('plain');
  });

  it('a promotion that fails after its copy was moved into .gen leaves the base as it was, and no trace of the copy', () => {
    const out = runAsUser(`async (m, dir) => {
      const store = new m.CacheStore({ cacheDir: dir });
      const spec = ${JSON.stringify(spec())};
      const { writeFileSync, chmodSync, existsSync } = await import('node:fs');
      const a = await co(store, spec, {}, 'a-1');
      writeFileSync(a.path + '/f', 'a');
      await store.promote(a);
      const b = await co(store, spec, {}, 'b-1');
      writeFileSync(b.path + '/f', 'b');
      // The rename into .gen works; the metadata beside the variant cannot be written.
      chmodSync(dir + '/gomod', 0o555);
      let error = '';
      try {
        await store.promote(b);
      } catch (err) {
        error = err.code;
      }
      chmodSync(dir + '/gomod', 0o755);
      await store.discard(b);
      return { error, shareGone: !existsSync(b.path), a: a.id, b: b.id };
    }`);
    const r = JSON.parse(out) as { error: string; shareGone: boolean; a: string; b: string };
    expect(r).toMatchObject({ error: 'EACCES', shareGone: true });
    const base = join(dir, 'gomod', variantOf('default'));
    expect(readFileSync(join(base, 'f'), 'utf8')).toBe('a');
    expect(readdirSync(join(dir, 'gomod', '.gen'))).toEqual([r.a]);
  });

  it('a cache directory on another volume than cacheDir: the promotion says so (EXDEV), the base stays', async () => {
    const other = mkdtempSync(join('/dev/shm', 'cache-other-'));
    try {
      if (statSync(other).dev === statSync(dir).dev) return; // one volume here: nothing to show
      mkdirSync(join(other, 'gomod'));
      symlinkSync(join(other, 'gomod'), join(dir, 'gomod'));
      const c = await co(spec(), {}, 'a-1');
      writeFileSync(join(c.path, 'f'), 'a');
      await expect(store.promote(c)).rejects.toThrow(/is on another volume than .*keep every cache directory on cacheDir's volume/);
      expect(store.list('gomod')).toEqual([]);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  it('the start-up sweep removes every VM share, read-only trees included', () => {
    const out = runAsUser(`async (m, dir) => {
      const store = new m.CacheStore({ cacheDir: dir });
      const spec = ${JSON.stringify(spec())};
      const { mkdirSync, chmodSync, existsSync } = await import('node:fs');
      const c = await co(store, spec, {}, 'a-1');
      mkdirSync(c.path + '/mod/x', { recursive: true });
      chmodSync(c.path + '/mod', 0o555);
      await store.vmShares('standby-1', [spec]);
      const failed = await store.sweep();
      return { failed: failed.length, vm: existsSync(dir + '/.vm') };
    }`);
    expect(JSON.parse(out)).toEqual({ failed: 0, vm: false });
  });

  it('a variant whose metadata is missing is still listed (and so evictable and cleared)', async () => {
    const c = await co(spec(), {}, 'a-1');
    await store.promote(c);
    rmSync(join(dir, 'gomod', `${variantOf('default')}.json`));
    expect(store.list('gomod')).toMatchObject([{ variant: variantOf('default'), key: '?' }]);
    expect(await store.clear('gomod')).toBe(1);
    expect(readdirSync(join(dir, 'gomod', '.gen'))).toEqual([]);
  });
});
