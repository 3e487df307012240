/**
 * Host caches on disk (issue 15): each cache of the config keeps its variants under
 * `<cacheDir>/<name>/`, and each build works on a copy of its own.
 *
 * Layout of one cache:
 *
 *   <cacheDir>/<name>/<variant>         a symlink to `.gen/<id>`: the variant's current base
 *   <cacheDir>/<name>/<variant>.json    {key, lastUsedMs, bytes}: for `cache list` and LRU eviction
 *   <cacheDir>/<name>/.gen/<id>/        a base, or one build's writable copy (shared into its VM)
 *
 * A build's copy goes `checked out → promoted | discarded`:
 * - checkout: copy the variant's base (if any: a hit, else a miss) to `.gen/<token>` — on macOS
 *   `cp -c` (APFS clonefile: instant, no space until written), elsewhere `cp -a`. A copy, never
 *   hard links: tools rewrite files in place, which would write through to the base.
 * - promote (a successful build, its VM gone): a new symlink to the copy replaces `<variant>` by
 *   ONE rename (atomic: at every instant `<variant>` is the old base or the new one, and a crash
 *   leaves one of them), then the old base is removed and the cache is trimmed to `maxSizeGb`,
 *   least recently used variant first (never the one just promoted). A plain `<variant>`
 *   directory (an older agent's layout) is moved to `.gen/<variant>-m` first; a crash right
 *   there is repaired by the next sweep, which links it back.
 * - discard (a failed or cancelled build): the copy is removed. The base is as it was.
 * A guest may leave read-only directories in its copy (Go's module cache does): every removal
 * makes the tree writable first ({@link removeTree}).
 * Two builds never write one directory, and neither sees the other's half-written files; of two
 * successful builds of one variant, the later promotion wins. Checkouts and promotions of one
 * cache are serialized in this process ({@link CacheLocks}); copies an agent that died left (no
 * variant links to them) are swept at start ({@link CacheStore.sweep}).
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { chmod, lstat, readdir, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import type { CacheSpec } from './cache-config.ts';

const execFileP = promisify(execFile);

/** Variant ids: a digest of the key value, so any key makes a safe directory name. */
export const DEFAULT_VARIANT = 'default';
const VARIANT_DIR = /^v-[0-9a-f]{16}$/;

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
  /** The copy: shared into the VM. */
  readonly path: string;
}

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

/**
 * Removes a tree, even one whose directories a guest made read-only: `rm -rf` fails there with
 * EACCES (`force` only ignores ENOENT), so on EACCES/EPERM every real directory is made
 * `u+rwx` (found with lstat: a symlink in the tree is never followed out of it) and the removal
 * retried.
 */
export async function removeTree(path: string): Promise<void> {
  try {
    await rm(path, { recursive: true, force: true });
    return;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EPERM') throw err;
  }
  await makeWritable(path);
  await rm(path, { recursive: true, force: true });
}

async function makeWritable(dir: string): Promise<void> {
  let st;
  try {
    st = await lstat(dir);
  } catch {
    return;
  }
  if (!st.isDirectory()) return;
  if ((st.mode & 0o700) !== 0o700) await chmod(dir, (st.mode & 0o7777) | 0o700).catch(() => undefined);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  for (const n of names) await makeWritable(join(dir, n));
}

/** Copies the contents of `src` into the existing directory `dst` (argv only). */
export type CopyTree = (src: string, dst: string) => Promise<void>;

/**
 * `cp -c` (clonefile) on macOS, falling back to a plain copy off APFS; `cp -a` elsewhere. BSD cp
 * copies a directory's contents when the source ends in `/` (cp(1)); GNU cp's idiom is `src/.`.
 */
export const copyTree: CopyTree = async (src, dst) => {
  if (process.platform === 'darwin') {
    try {
      await execFileP('cp', ['-c', '-R', '-p', `${src}/`, dst]);
      return;
    } catch {
      // Not APFS (or clonefile refused): a real copy, into a clean directory.
      await removeTree(dst);
      mkdirSync(dst, { recursive: true });
      await execFileP('cp', ['-R', '-p', `${src}/`, dst]);
      return;
    }
  }
  await execFileP('cp', ['-a', `${src}/.`, dst]);
};

/** Bytes of the files under `dir` (apparent sizes; a symlink counts as itself, directories as nothing: the same on every filesystem). */
export async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true, recursive: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    if (e.isDirectory()) continue;
    try {
      total += (await lstat(join(e.parentPath, e.name))).size;
    } catch {
      // removed meanwhile
    }
  }
  return total;
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

  /** Copies the build's variant into a fresh directory of its own. */
  checkout(spec: CacheSpec, env: Readonly<Record<string, string>>, token: string): Promise<CacheCheckout> {
    const key = keyValueOf(spec, env);
    const variant = variantOf(key);
    return this.locks.run(spec.name, async () => {
      const root = this.dir(spec.name);
      const path = join(root, '.gen', `${token}-${randomBytes(4).toString('hex')}`);
      mkdirSync(path, { recursive: true });
      const base = join(root, variant);
      const hit = existsSync(base);
      if (hit) {
        try {
          await this.copy(base, path);
        } catch (err) {
          await removeTree(path);
          throw err;
        }
        this.touch(spec.name, variant, key);
      }
      return { spec, variant, key, hit, path };
    });
  }

  /** Makes the copy the variant's base (one rename of a symlink), removes the old one, trims the cache; the variants evicted. */
  promote(c: CacheCheckout): Promise<{ evicted: string[]; bytes: number }> {
    return this.locks.run(c.spec.name, async () => {
      const root = this.dir(c.spec.name);
      const gen = join(root, '.gen');
      const base = join(root, c.variant);
      if (!existsSync(c.path)) throw new Error(`the copy ${c.path} is gone`);
      // Metadata first: a crash after the switch never leaves a base without it.
      const bytes = await treeBytes(c.path);
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
      symlinkSync(join('.gen', basename(c.path)), link);
      try {
        renameSync(link, base);
      } catch (err) {
        await rm(link, { force: true });
        if (old !== undefined && old.endsWith('-m') && !existsSync(base)) renameSync(old, base);
        throw err;
      }
      if (old !== undefined && old !== c.path) await removeTree(old);
      const evicted = await this.evict(c.spec, c.variant);
      return { evicted, bytes: this.totalBytes(c.spec.name) };
    });
  }

  /** The `.gen` directory a variant's symlink points at, or undefined (no variant, or a plain directory). */
  private baseTarget(name: string, variant: string): string | undefined {
    try {
      return join(this.dir(name), readlinkSync(join(this.dir(name), variant)));
    } catch {
      return undefined;
    }
  }

  /** Throws the copy away; the base stays as it was. */
  async discard(c: CacheCheckout): Promise<void> {
    await removeTree(c.path);
  }

  /** Removes least recently used variants (never `keep`) until the cache fits `maxSizeGb`. */
  private async evict(spec: CacheSpec, keep: string): Promise<string[]> {
    const limit = spec.maxSizeGb * 1e9;
    const variants = this.list(spec.name).sort((a, b) => a.lastUsedMs - b.lastUsedMs);
    let total = variants.reduce((n, v) => n + v.bytes, 0);
    const evicted: string[] = [];
    for (const v of variants) {
      if (total <= limit) break;
      if (v.variant === keep) continue;
      await this.removeVariant(spec.name, v.variant);
      total -= v.bytes;
      evicted.push(v.variant);
    }
    return evicted;
  }

  private async removeVariant(name: string, variant: string): Promise<void> {
    const root = this.dir(name);
    const base = join(root, variant);
    const target = this.baseTarget(name, variant);
    if (target !== undefined) {
      await rm(base, { force: true }); // the link only
      await removeTree(target);
    } else {
      await removeTree(base);
    }
    await rm(join(root, `${variant}.json`), { force: true });
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

  /**
   * Removes the copies an earlier agent left: every `.gen` entry no variant links to (and the
   * older `.work`/`.trash`); links back a base a crash left half-migrated. Never throws: what
   * could not be removed is returned, for a warning.
   */
  async sweep(): Promise<{ path: string; error: Error }[]> {
    const failed: { path: string; error: Error }[] = [];
    const remove = async (path: string) => {
      try {
        await removeTree(path);
      } catch (err) {
        failed.push({ path, error: err as Error });
      }
    };
    for (const n of this.cacheNames()) {
      const root = this.dir(n);
      for (const sub of ['.work', '.trash']) await remove(join(root, sub));
      let entries: string[];
      try {
        entries = readdirSync(join(root, '.gen'));
      } catch {
        continue;
      }
      const live = new Set<string>();
      for (const f of readdirSync(root)) {
        if (!VARIANT_DIR.test(f)) continue;
        const t = this.baseTarget(n, f);
        if (t !== undefined) live.add(basename(t));
      }
      for (const e of entries) {
        const v = e.replace(/-m$/, '');
        if (e.endsWith('-m') && VARIANT_DIR.test(v) && !existsSync(join(root, v))) {
          try {
            renameSync(join(root, '.gen', e), join(root, v));
            continue;
          } catch (err) {
            failed.push({ path: join(root, '.gen', e), error: err as Error });
            continue;
          }
        }
        if (!live.has(e)) await remove(join(root, '.gen', e));
      }
    }
    return failed;
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
