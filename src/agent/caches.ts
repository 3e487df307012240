/**
 * Host caches on disk (issue 15): each cache of the config keeps its variants under
 * `<cacheDir>/<name>/`, and each build works on a copy of its own.
 *
 * Layout of one cache:
 *
 *   <cacheDir>/<name>/<variant>         a symlink to `.gen/<id>`: the variant's current base
 *   <cacheDir>/<name>/<variant>.json    {key, lastUsedMs, bytes}: for `cache list` and LRU eviction
 *   <cacheDir>/<name>/.gen/<id>/        a base
 *   <cacheDir>/.vm/<vm>/<name>/         a VM's share of the cache, mounted when the VM boots
 *                                       (`tart run --dir`); empty until a build claims the VM
 *
 * The VM's share is fixed at boot (a standby boots before the claim that decides the variant)
 * and is a real directory: the build's copy is made IN it, never linked there, since virtio-fs
 * does not follow a host symlink for the guest.
 *
 * A build's copy goes `checked out → promoted | discarded`:
 * - checkout: copy the variant's base (if any: a hit, else a miss) into the VM's share — on macOS
 *   `cp -c` (APFS clonefile: instant, no space until written), elsewhere `cp -a`. A copy, never
 *   hard links: tools rewrite files in place, which would write through to the base.
 * - promote (a successful build, its VM gone): the copy is renamed into `.gen/<id>` (same
 *   volume: one rename), then a new symlink to it replaces `<variant>` by ONE rename (atomic: at
 *   every instant `<variant>` is the old base or the new one, and a crash leaves one of them).
 *   Only these renames, the metadata and the choice of variants to evict (least recently used
 *   first, never the one just promoted, down to `maxSizeGb`) hold the cache's lock; measuring
 *   the copy before and removing the old base and the evicted ones after do not, so a large
 *   tree never delays another build's checkout. A plain `<variant>` directory (an older agent's
 *   layout) is moved to `.gen/<variant>-m` first; a crash right there is repaired by the next
 *   sweep, which links it back.
 * - discard (a failed or cancelled build): the copy is removed. The base is as it was.
 * When its VM is deleted, the VM's `.vm/<vm>` directory goes (see build-caches.ts).
 * A guest may leave read-only directories in its copy (Go's module cache does): every removal
 * makes the tree writable first ({@link removeTree}).
 * Two builds never write one directory, and neither sees the other's half-written files; of two
 * successful builds of one variant, the later promotion wins. Checkouts and promotions of one
 * cache are serialized in this process ({@link CacheLocks}); copies an agent that died left (no
 * variant links to them, and every VM share) are swept at start (cache-sweep.ts).
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { CacheSpec } from './cache-config.ts';
import { copyTree, emptyDir, makeDirWritable, removeTree, treeBytes, type CopyTree } from './cache-fs.ts';
import { linkTarget, sweepCacheDir, VARIANT_DIR } from './cache-sweep.ts';

/** Variant ids: a digest of the key value, so any key makes a safe directory name. */
export const DEFAULT_VARIANT = 'default';

/** One variant as `cache list` shows it. */
export interface CacheVariantInfo {
  cache: string;
  variant: string;
  /** The key value it was made for (`default` without a key). */
  key: string;
  bytes: number;
  lastUsedMs: number;
}

/** A build's writable copy of one cache. */
export interface CacheCheckout {
  readonly spec: CacheSpec;
  readonly variant: string;
  readonly key: string;
  /** Whether a base existed (the copy starts with the last successful build's files). */
  readonly hit: boolean;
  /** The copy: the VM's share of the cache. */
  readonly path: string;
  /** Its name under `.gen` once promoted. */
  readonly id: string;
}

/** The characters of a VM name (tart's, see vm-name.ts), and never `.` or `..`: it becomes a directory. */
const VM_DIR = /^(?!\.{1,2}$)[A-Za-z0-9._-]{1,200}$/;

/** Serializes the disk work of each cache (by name) within one agent process; shared across config reloads. */
export class CacheLocks {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(name) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.tails.set(name, tail);
    void tail.then(() => {
      if (this.tails.get(name) === tail) this.tails.delete(name);
    });
    return next;
  }
}

/** The variant id of a key value. */
export function variantOf(key: string): string {
  return `v-${createHash('sha256').update(key).digest('hex').slice(0, 16)}`;
}

/** The key value a cache uses for a build: its fixed key, `$NAME` from the build's env, or `default`. */
export function keyValueOf(spec: CacheSpec, env: Readonly<Record<string, string>>): string {
  if (spec.key === undefined) return DEFAULT_VARIANT;
  if (!spec.key.startsWith('$')) return spec.key;
  const v = env[spec.key.slice(1)];
  return v === undefined || v === '' ? DEFAULT_VARIANT : v;
}

interface VariantMeta {
  key: string;
  lastUsedMs: number;
  bytes: number;
}

export interface CacheStoreOptions {
  cacheDir: string;
  locks?: CacheLocks;
  copy?: CopyTree;
  now?: () => number;
}

/** The caches under one `cacheDir`. */
export class CacheStore {
  readonly cacheDir: string;
  private readonly locks: CacheLocks;
  private readonly copy: CopyTree;
  private readonly now: () => number;

  constructor(o: CacheStoreOptions) {
    this.cacheDir = o.cacheDir;
    this.locks = o.locks ?? new CacheLocks();
    this.copy = o.copy ?? copyTree;
    this.now = o.now ?? Date.now;
  }

  private dir(name: string): string {
    return join(this.cacheDir, name);
  }

  /** A VM's directory of shares: `<cacheDir>/.vm/<vm>`. */
  vmDir(vmName: string): string {
    if (!VM_DIR.test(vmName)) throw new Error(`not a VM name: ${JSON.stringify(vmName)}`);
    return join(this.cacheDir, '.vm', vmName);
  }

  /** A VM's share of one cache: `<cacheDir>/.vm/<vm>/<name>` (the one place that path is made). */
  vmShare(vmName: string, name: string): string {
    return join(this.vmDir(vmName), name);
  }

  /**
   * Makes the VM's share of each cache, empty, before the VM boots: the directories given to
   * `tart run --dir`. What an earlier VM of that name left there is removed.
   */
  async vmShares(vmName: string, specs: readonly CacheSpec[]): Promise<{ name: string; path: string }[]> {
    const shares = specs.map((s) => ({ name: s.name, path: this.vmShare(vmName, s.name) }));
    for (const s of shares) await emptyDir(s.path);
    return shares;
  }

  /** Removes a VM's shares, whatever they hold; call once the VM is deleted. */
  async removeVm(vmName: string): Promise<void> {
    await removeTree(this.vmDir(vmName));
  }

  /**
   * Copies the build's variant into `into`, the VM's share of the cache (which must exist: the
   * VM booted with it). The share is emptied first, under the lock: whatever landed in it while
   * the VM waited (a standby's guest may write there) is never part of the copy. An abort of
   * `signal` (the build's, or its end) stops the wait for the lock and the copy; the share is
   * then left empty and the checkout rejects.
   */
  checkout(spec: CacheSpec, env: Readonly<Record<string, string>>, token: string, into: string, signal?: AbortSignal): Promise<CacheCheckout> {
    const key = keyValueOf(spec, env);
    const variant = variantOf(key);
    return this.locks.run(spec.name, async () => {
      signal?.throwIfAborted();
      const root = this.dir(spec.name);
      const id = `${token}-${randomBytes(4).toString('hex')}`;
      if (!isRealDir(into)) throw new Error('the VM was booted without this cache\'s share');
      await emptyDir(into);
      const base = join(root, variant);
      const hit = existsSync(base);
      if (hit) {
        try {
          await this.copy(base, into, signal);
        } catch (err) {
          // The share stays (the VM has it mounted), empty: the cache is left out.
          await emptyDir(into).catch(() => undefined);
          throw err;
        }
        this.touch(spec.name, variant, key);
      }
      return { spec, variant, key, hit, path: into, id };
    });
  }

  /**
   * Makes the copy the variant's base (renames: the copy into `.gen`, then a symlink over
   * `<variant>`), then removes the old base and trims the cache; the variants evicted. Only the
   * renames, the metadata and the choice of evictions hold the cache's lock.
   */
  async promote(c: CacheCheckout): Promise<{ evicted: string[]; bytes: number }> {
    if (!existsSync(c.path)) throw new Error(`the copy ${c.path} is gone`);
    // The VM is gone: nothing else reads or writes the copy, so it is measured before the lock.
    const bytes = await treeBytes(c.path);
    const trash: string[] = [];
    try {
      return await this.locks.run(c.spec.name, async () => {
        const root = this.dir(c.spec.name);
        const gen = join(root, '.gen');
        const base = join(root, c.variant);
        const dest = join(gen, c.id);
        mkdirSync(gen, { recursive: true });
        // Moving a directory to a new parent rewrites its `..`: the share's root must be writable
        // (a guest may have made it read-only).
        await makeDirWritable(c.path);
        try {
          renameSync(c.path, dest);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
          throw new Error(`${root} is on another volume than ${join(this.cacheDir, '.vm')} (a symlink or a mount?): a build's copy cannot be renamed into it, so nothing is kept; keep every cache directory on cacheDir's volume`, { cause: err });
        }
        try {
          // Metadata first: a crash after the switch never leaves a base without it.
          this.writeMeta(c.spec.name, c.variant, { key: c.key, lastUsedMs: this.now(), bytes });
          let old: string | undefined = this.baseTarget(c.spec.name, c.variant);
          if (old === undefined && isRealDir(base)) {
            // An older agent's plain directory: moved into .gen so one rename can replace the link
            // (a crash right here is repaired by sweep, which links `<variant>-m` back).
            old = join(gen, `${c.variant}-m`);
            await removeTree(old);
            renameSync(base, old);
          }
          const link = join(gen, `link-${randomBytes(6).toString('hex')}`);
          symlinkSync(join('.gen', c.id), link);
          try {
            renameSync(link, base);
          } catch (err) {
            await rm(link, { force: true });
            if (old !== undefined && old.endsWith('-m') && !existsSync(base)) renameSync(old, base);
            throw err;
          }
          // No link leads to the old base any more and no checkout can start from it: removed after the lock.
          if (old !== undefined && old !== dest) trash.push(old);
        } catch (err) {
          if (this.baseTarget(c.spec.name, c.variant) !== dest) trash.push(dest);
          throw err;
        }
        const evicted = this.evict(c.spec, c.variant, trash);
        return { evicted, bytes: this.totalBytes(c.spec.name) };
      });
    } finally {
      for (const t of trash) await removeTree(t).catch(() => undefined);
      // What could not be removed has no link: the next start's sweep takes it.
    }
  }

  /** The `.gen` directory a variant's symlink points at, or undefined (no variant, or a plain directory). */
  private baseTarget(name: string, variant: string): string | undefined {
    return linkTarget(this.dir(name), variant);
  }

  /** Throws the copy away; the base stays as it was. */
  async discard(c: CacheCheckout): Promise<void> {
    await removeTree(c.path);
  }

  /**
   * Unlinks least recently used variants (never `keep`) until the cache fits `maxSizeGb`, by
   * their metadata; their trees go to `trash`, for the caller to remove after the lock.
   */
  private evict(spec: CacheSpec, keep: string, trash: string[]): string[] {
    const limit = spec.maxSizeGb * 1e9;
    const variants = this.list(spec.name).sort((a, b) => a.lastUsedMs - b.lastUsedMs);
    let total = variants.reduce((n, v) => n + v.bytes, 0);
    const evicted: string[] = [];
    for (const v of variants) {
      if (total <= limit) break;
      if (v.variant === keep) continue;
      trash.push(this.unlinkVariant(spec.name, v.variant));
      total -= v.bytes;
      evicted.push(v.variant);
    }
    return evicted;
  }

  /** Takes a variant out of the cache (its link, or its plain directory moved into `.gen`, and its metadata); the tree to remove. */
  private unlinkVariant(name: string, variant: string): string {
    const root = this.dir(name);
    const base = join(root, variant);
    let tree = this.baseTarget(name, variant);
    if (tree !== undefined) {
      rmSync(base, { force: true }); // the link only
    } else {
      tree = join(root, '.gen', `evicted-${randomBytes(6).toString('hex')}`);
      mkdirSync(dirname(tree), { recursive: true });
      renameSync(base, tree);
    }
    rmSync(join(root, `${variant}.json`), { force: true });
    return tree;
  }

  private async removeVariant(name: string, variant: string): Promise<void> {
    await removeTree(this.unlinkVariant(name, variant));
  }

  /** Bytes of every variant of a cache (from their metadata). */
  totalBytes(name: string): number {
    return this.list(name).reduce((n, v) => n + v.bytes, 0);
  }

  /** The variants of one cache, or of every cache directory under `cacheDir`. */
  list(name?: string): CacheVariantInfo[] {
    const names = name !== undefined ? [name] : this.cacheNames();
    const out: CacheVariantInfo[] = [];
    for (const n of names) {
      let files: string[];
      try {
        files = readdirSync(this.dir(n));
      } catch {
        continue;
      }
      // By the variants themselves, not their metadata: a base whose `.json` is missing is still
      // listed, evictable and cleared.
      for (const variant of files) {
        if (!VARIANT_DIR.test(variant) || !existsSync(join(this.dir(n), variant))) continue;
        const meta = this.readMeta(n, variant) ?? { key: '?', lastUsedMs: 0, bytes: 0 };
        out.push({ cache: n, variant, ...meta });
      }
    }
    return out;
  }

  /** The cache directories under `cacheDir`. */
  cacheNames(): string[] {
    try {
      return readdirSync(this.cacheDir, { withFileTypes: true })
        .filter((d) => d.isDirectory() && /^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$/.test(d.name))
        .map((d) => d.name)
        .sort();
    } catch {
      return [];
    }
  }

  /** Removes every variant of a cache (its bases; a build's copy in use is left to finish). */
  async clear(name: string): Promise<number> {
    return this.locks.run(name, async () => {
      const variants = this.list(name);
      for (const v of variants) await this.removeVariant(name, v.variant);
      return variants.length;
    });
  }

  /** Removes the copies an earlier agent left (see {@link sweepCacheDir}); never throws: what could not be removed is returned, for a warning. */
  sweep(): Promise<{ path: string; error: Error }[]> {
    return sweepCacheDir(this.cacheDir, this.cacheNames());
  }

  private touch(name: string, variant: string, key: string): void {
    const meta = this.readMeta(name, variant);
    this.writeMeta(name, variant, { key, bytes: meta?.bytes ?? 0, lastUsedMs: this.now() });
  }

  private readMeta(name: string, variant: string): VariantMeta | undefined {
    try {
      const m = JSON.parse(readFileSync(join(this.dir(name), `${variant}.json`), 'utf8')) as Partial<VariantMeta>;
      return { key: String(m.key ?? '?'), lastUsedMs: Number(m.lastUsedMs ?? 0), bytes: Number(m.bytes ?? 0) };
    } catch {
      return undefined;
    }
  }

  private writeMeta(name: string, variant: string, meta: VariantMeta): void {
    const file = join(this.dir(name), `${variant}.json`);
    // Written beside and renamed over, so `cache list` never reads half a file.
    const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(meta)}\n`);
    renameSync(tmp, file);
  }
}

function isRealDir(path: string): boolean {
  try {
    return lstatSync(path).isDirectory();
  } catch {
    return false;
  }
}
