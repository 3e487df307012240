/**
 * The start-up sweep of a cache directory (caches.ts): what an agent that died left behind —
 * every VM's shares, `.gen` entries no variant links to, the older `.work`/`.trash` — is removed,
 * and a base a crash left half-migrated is linked back. Separate so caches.ts keeps the
 * checkout/promote path; the variant names and link reading it shares with it live here.
 */
import { existsSync, readdirSync, readlinkSync, renameSync } from 'node:fs';
import { basename, join } from 'node:path';
import { removeTree } from './cache-fs.ts';

/** A variant's name under `<cacheDir>/<name>/`: a digest of its key value. */
export const VARIANT_DIR = /^v-[0-9a-f]{16}$/;

/** The `.gen` directory a variant's symlink points at, or undefined (no variant, or a plain directory). */
export function linkTarget(root: string, variant: string): string | undefined {
  try {
    return join(root, readlinkSync(join(root, variant)));
  } catch {
    return undefined;
  }
}

/**
 * Removes the copies an earlier agent left under `cacheDir` (the caches `names`): every VM's
 * shares (`.vm`: no VM of this agent runs yet; the reaper deletes the old ones), every `.gen`
 * entry no variant links to (and the older `.work`/`.trash`); links back a base a crash left
 * half-migrated (`.gen/<variant>-m`). Never throws: what could not be removed is returned.
 */
export async function sweepCacheDir(cacheDir: string, names: readonly string[]): Promise<{ path: string; error: Error }[]> {
  const failed: { path: string; error: Error }[] = [];
  const remove = async (path: string) => {
    try {
      await removeTree(path);
    } catch (err) {
      failed.push({ path, error: err as Error });
    }
  };
  await remove(join(cacheDir, '.vm'));
  for (const n of names) {
    const root = join(cacheDir, n);
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
      const t = linkTarget(root, f);
      if (t !== undefined) live.add(basename(t));
    }
    for (const e of entries) {
      const v = e.replace(/-m$/, '');
      if (e.endsWith('-m') && VARIANT_DIR.test(v) && !existsSync(join(root, v))) {
        try {
          renameSync(join(root, '.gen', e), join(root, v));
        } catch (err) {
          failed.push({ path: join(root, '.gen', e), error: err as Error });
        }
        continue;
      }
      if (!live.has(e)) await remove(join(root, '.gen', e));
    }
  }
  return failed;
}
