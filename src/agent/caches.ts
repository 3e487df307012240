/**
 * Host caches on disk (issue 15): each cache of the config keeps its variants under
 * `<cacheDir>/<name>/`, and each build works on a copy of its own.
 *
 * Layout of one cache:
 *
 *   <cacheDir>/<name>/<variant>/        a variant's current base (what the next build starts from)
 *   <cacheDir>/<name>/<variant>.json    {key, lastUsedMs, bytes}: for `cache list` and LRU eviction
 *   <cacheDir>/<name>/.work/<token>/    one build's writable copy (shared into its VM)
 *   <cacheDir>/<name>/.trash/<token>/   a replaced base or discarded copy, being removed
 *
 * A build's copy goes `checked out → promoted | discarded`:
 * - checkout: copy the variant's base (if any: a hit, else a miss) to `.work/<token>` — on macOS
 *   `cp -c` (APFS clonefile: instant, no space until written), elsewhere `cp -a`. A copy, never
 *   hard links: tools rewrite files in place, which would write through to the base.
 * - promote (a successful build, its VM gone): the base moves to `.trash` and the copy takes its
 *   place by rename (atomic on one filesystem), then the old base is removed and the cache is
 *   trimmed to `maxSizeGb`, least recently used variant first (never the one just promoted).
 * - discard (a failed or cancelled build): the copy goes to `.trash` and is removed. The base is
 *   as it was.
 * Two builds never write one directory, and neither sees the other's half-written files; of two
 * successful builds of one variant, the later promotion wins. Checkouts and promotions of one
 * cache are serialized in this process ({@link CacheLocks}); `.work` and `.trash` left by an agent
 * that died are swept at start ({@link CacheStore.sweep}).
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { lstat, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
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
      await rm(dst, { recursive: true, force: true });
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
      const path = join(root, '.work', `${token}-${randomBytes(4).toString('hex')}`);
      mkdirSync(path, { recursive: true });
      const base = join(root, variant);
      const hit = existsSync(base);
      if (hit) {
        try {
          await this.copy(base, path);
        } catch (err) {
          await rm(path, { recursive: true, force: true });
          throw err;
        }
        this.touch(spec.name, variant, key);
      }
      return { spec, variant, key, hit, path };
    });
  }

  /** Makes the copy the variant's base (rename), removes the old one, trims the cache; the variants evicted. */
  promote(c: CacheCheckout): Promise<{ evicted: string[]; bytes: number }> {
    return this.locks.run(c.spec.name, async () => {
      const root = this.dir(c.spec.name);
      const base = join(root, c.variant);
      const trash = join(root, '.trash');
      mkdirSync(trash, { recursive: true });
      let old: string | undefined;
      if (existsSync(base)) {
        old = join(trash, `${c.variant}-${randomBytes(6).toString('hex')}`);
        renameSync(base, old);
      }
      renameSync(c.path, base);
      const bytes = await treeBytes(base);
      this.writeMeta(c.spec.name, c.variant, { key: c.key, lastUsedMs: this.now(), bytes });
      if (old !== undefined) await rm(old, { recursive: true, force: true });
      const evicted = await this.evict(c.spec, c.variant);
      return { evicted, bytes: this.totalBytes(c.spec.name) };
    });
  }

  /** Throws the copy away; the base stays as it was. */
  async discard(c: CacheCheckout): Promise<void> {
    const trash = join(this.dir(c.spec.name), '.trash');
    mkdirSync(trash, { recursive: true });
    const gone = join(trash, `discard-${randomBytes(6).toString('hex')}`);
    try {
      renameSync(c.path, gone);
    } catch {
      return; // already gone
    }
    await rm(gone, { recursive: true, force: true });
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
    const trash = join(root, '.trash');
    mkdirSync(trash, { recursive: true });
    const gone = join(trash, `${variant}-${randomBytes(6).toString('hex')}`);
    try {
      renameSync(join(root, variant), gone);
    } catch {
      // no data left: only the metadata
    }
    await rm(join(root, `${variant}.json`), { force: true });
    await rm(gone, { recursive: true, force: true });
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
      for (const f of files) {
        const variant = f.replace(/\.json$/, '');
        if (!f.endsWith('.json') || !VARIANT_DIR.test(variant) || !existsSync(join(this.dir(n), variant))) continue;
        const meta = this.readMeta(n, variant);
        if (meta !== undefined) out.push({ cache: n, variant, ...meta });
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

  /** Removes copies and trash an earlier agent left (call at start, before any build). */
  async sweep(): Promise<void> {
    for (const n of this.cacheNames()) {
      for (const sub of ['.work', '.trash']) await rm(join(this.dir(n), sub), { recursive: true, force: true });
    }
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
