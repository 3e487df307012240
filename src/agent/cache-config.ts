/**
 * The agent config's host-cache fields (issue 15): `caches`, `cacheDir`, `vmSharedFilesRoot`.
 * Parsed here and merged into the agent's config by config.ts, so a bad entry is reported with
 * every other bad field in one `CFG_INVALID`.
 *
 * - `caches`: `[{name, guestPath, key?, maxSizeGb?}]`. `name` is a safe word (it becomes a
 *   directory, a `tart run --dir` name and a metric label); `guestPath` is absolute or `~/…`
 *   (the VM user's home) without `..`; `key` picks a variant: a fixed string, or `$NAME` for the
 *   value of the build's env variable NAME (unset or empty: the `default` variant); `maxSizeGb`
 *   (default 10, fractions allowed) bounds the cache's variants on the host.
 * - `cacheDir`: where the caches live on the host; `~` expanded. Default `~/.expo-worker/caches`
 *   (beside the default `logDir`).
 * - `vmSharedFilesRoot`: where the guest sees `tart run --dir` shares. Default
 *   `/Volumes/My Shared Files` (macOS guests); `~/…` is under the VM user's home (the tart
 *   simulator's guests: `~/My Shared Files`).
 */
import { resolve } from 'node:path';

/** One host cache shared into every build's VM. */
export interface CacheSpec {
  /** `[A-Za-z0-9][A-Za-z0-9_-]{0,39}`: the host directory, the `--dir` share and the metric label. */
  readonly name: string;
  /** Where the build finds it in the VM: absolute, or `~/…` under the VM user's home. */
  readonly guestPath: string;
  /** Variant key: a fixed string, or `$NAME` (the build's env variable NAME). Default: one variant. */
  readonly key: string | undefined;
  /** Most bytes of all variants together, in GB (10^9 bytes); the least recently used go first. Default 10. */
  readonly maxSizeGb: number;
}

/** The cache fields of the agent config. */
export interface CacheConfig {
  readonly caches: readonly CacheSpec[];
  readonly cacheDir: string;
  readonly vmSharedFilesRoot: string;
}

export const DEFAULT_CACHE_DIR = '~/.expo-worker/caches';
export const DEFAULT_SHARED_FILES_ROOT = '/Volumes/My Shared Files';
export const DEFAULT_CACHE_MAX_SIZE_GB = 10;

const NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$/;
const ENV_KEY = /^\$[A-Za-z_][A-Za-z0-9_]*$/;
const CACHE_FIELDS = new Set(['name', 'guestPath', 'key', 'maxSizeGb']);

/** Why `p` is not a guest path (absolute or `~/…`, no `..`, no control characters), or null. */
export function guestPathProblem(p: string): string | null {
  if (!p.startsWith('/') && !p.startsWith('~/')) return 'must be absolute or start with ~/';
  // Control characters would be copied into a shell command line in the VM (quoted, but unreadable in logs).
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(p)) return 'must not contain control characters';
  const parts = p.split('/').slice(1);
  if (parts.some((x) => x === '..' || x === '.')) return 'must not contain . or .. components';
  if (parts.every((x) => x === '')) return 'must name a directory below / or ~';
  return null;
}

/**
 * Parses the cache fields of `raw`; each problem goes to `bad(field, why)`. `expand` expands `~`
 * on the host.
 */
export function parseCacheConfig(raw: Record<string, unknown>, bad: (field: string, why: string) => void, expand: (p: string) => string): CacheConfig {
  const caches: CacheSpec[] = [];
  const list = raw.caches;
  if (list !== undefined && list !== null && !Array.isArray(list)) bad('caches', 'must be a list of {name, guestPath, key?, maxSizeGb?}');
  const seen = new Set<string>();
  (Array.isArray(list) ? (list as unknown[]) : []).forEach((entry, i) => {
    const at = `caches[${i}]`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) return bad(at, 'must be an object {name, guestPath, key?, maxSizeGb?}');
    const o = entry as Record<string, unknown>;
    for (const k of Object.keys(o)) if (!CACHE_FIELDS.has(k)) bad(`${at}.${k}`, 'unknown field (name, guestPath, key, maxSizeGb)');
    const { name, guestPath, key, maxSizeGb } = o;
    let ok = true;
    if (typeof name !== 'string' || !NAME.test(name)) ok = (bad(`${at}.name`, 'must match [A-Za-z0-9][A-Za-z0-9_-]{0,39}'), false);
    else if (seen.has(name.toLowerCase())) ok = (bad(`${at}.name`, `"${name}" is listed twice`), false);
    else seen.add(name.toLowerCase());
    const gp = typeof guestPath === 'string' ? guestPathProblem(guestPath) : 'is required (absolute or ~/…)';
    if (gp !== null) ok = (bad(`${at}.guestPath`, gp), false);
    if (key !== undefined && (typeof key !== 'string' || key === '' || key.length > 200 || (key.startsWith('$') && !ENV_KEY.test(key)))) {
      ok = (bad(`${at}.key`, 'must be a fixed string (≤ 200 characters) or $NAME (an env variable of the build)'), false);
    }
    if (maxSizeGb !== undefined && (typeof maxSizeGb !== 'number' || !Number.isFinite(maxSizeGb) || maxSizeGb <= 0)) {
      ok = (bad(`${at}.maxSizeGb`, 'must be a number > 0 (GB; fractions allowed)'), false);
    }
    if (ok) caches.push(Object.freeze({ name: name as string, guestPath: guestPath as string, key: key as string | undefined, maxSizeGb: (maxSizeGb as number | undefined) ?? DEFAULT_CACHE_MAX_SIZE_GB }));
  });
  let cacheDir = DEFAULT_CACHE_DIR;
  if (raw.cacheDir !== undefined && raw.cacheDir !== null) {
    if (typeof raw.cacheDir !== 'string' || raw.cacheDir.trim() === '') bad('cacheDir', 'must be a non-empty path');
    else cacheDir = raw.cacheDir;
  }
  cacheDir = resolve(expand(cacheDir));
  // tart splits --dir values at ':' and ',': a cache directory with either cannot be shared.
  if (/[:,]/.test(cacheDir)) bad('cacheDir', `must not contain ':' or ',' (tart's --dir separators): ${cacheDir}`);
  let vmSharedFilesRoot = DEFAULT_SHARED_FILES_ROOT;
  if (raw.vmSharedFilesRoot !== undefined && raw.vmSharedFilesRoot !== null) {
    const v = raw.vmSharedFilesRoot;
    const why = typeof v === 'string' ? guestPathProblem(v) : 'must be a path (absolute or ~/…)';
    if (why !== null) bad('vmSharedFilesRoot', why);
    else vmSharedFilesRoot = (v as string).replace(/\/+$/, '');
  }
  return { caches: Object.freeze(caches), cacheDir, vmSharedFilesRoot };
}
