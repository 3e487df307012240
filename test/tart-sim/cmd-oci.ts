/**
 * OCI basics: a simulated registry (`sim/registry/<host>/<path>/<tag>/`, filled by
 * `tart sim publish LOCAL REF`) and tart's cache (`cache/OCIs/<host>/<path>/sha256:<hex>/` plus
 * a `<tag>` symlink). `pull` copies registry → cache with tart's progress lines; `clone` of a
 * remote name pulls only when the tag is not cached (tart never re-checks a cached tag).
 */
import { createHash } from 'node:crypto';
import {
  existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { out, type Ctx } from './context.ts';
import { TartError } from './errors.ts';
import { vmDirState, type Home } from './home.ts';
import { lock, unlock } from './locks.ts';
import { copyVmFiles, stagingDir } from './cmd-catalog.ts';

/** A parsed `host[:port]/path[:tag|@sha256:hex]`. */
export interface RemoteName {
  host: string;
  path: string;
  reference: string;
}

export function isRemoteName(name: string): boolean {
  return name.includes('/');
}

export function parseRemote(name: string): RemoteName {
  const m = /^([A-Za-z0-9.-]+(?::\d+)?)\/([a-z0-9._/-]+?)(?::([A-Za-z0-9_][A-Za-z0-9._-]*)|@(sha256:[0-9a-f]{64}))?$/.exec(name);
  if (m === null) throw new TartError(`failed to parse remote name: ${name}`, 1);
  return { host: m[1] ?? '', path: m[2] ?? '', reference: m[4] ?? m[3] ?? 'latest' };
}

function hostDir(host: string): string {
  return host.replaceAll(':', '%3A');
}

function cacheRepo(home: Home, r: RemoteName): string {
  return join(home.cache, 'OCIs', hostDir(r.host), r.path);
}

/** Path of a published image in the simulated registry. */
export function registryDir(home: Home, r: RemoteName): string {
  return join(home.sim, 'registry', hostDir(r.host), r.path, r.reference);
}

/** Cached OCI entries for `tart list` (each tag and each digest dir), sorted by name. */
export function ociEntries(home: Home): Array<{ name: string; dir: string }> {
  const root = join(home.cache, 'OCIs');
  const found: Array<{ name: string; dir: string }> = [];
  const walk = (dir: string, rel: string[]): void => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    for (const n of names) {
      const p = join(dir, n);
      const isLink = lstatSync(p).isSymbolicLink();
      if ((isLink || n.startsWith('sha256:')) && vmDirState(p) === 'ok') {
        const [host = '', ...rest] = rel;
        const repo = `${host.replaceAll('%3A', ':')}/${rest.join('/')}`;
        found.push({ name: `${repo}${n.startsWith('sha256:') ? '@' : ':'}${n}`, dir: p });
      } else if (!isLink && statSync(p).isDirectory()) {
        walk(p, [...rel, n]);
      }
    }
  };
  walk(root, []);
  return found.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

async function pull(ctx: Ctx, r: RemoteName, display: string): Promise<string> {
  const src = registryDir(ctx.home, r);
  if (vmDirState(src) !== 'ok') {
    throw new TartError(`failed to pull ${display}: manifest unknown (not published in the simulated registry)`, 1, 'prefixed');
  }
  const repoLock = join(ctx.home.sim, `pull-${hostDir(r.host)}.lock`);
  await lock(repoLock);
  try {
    out(`pulling ${display}...`);
    out('pulling manifest...');
    const digest = `sha256:${createHash('sha256').update(readFileSync(join(src, 'config.json'))).update(display).digest('hex')}`;
    const gb = (statSync(join(src, 'disk.img')).size / 1e9 / 3).toFixed(1);
    out(`pulling disk (${gb} GB compressed)...`);
    for (const pct of [0, 25, 50, 75, 100]) out(`${pct}%`);
    out('pulling NVRAM...');
    const repo = cacheRepo(ctx.home, r);
    mkdirSync(repo, { recursive: true });
    const digestDir = join(repo, digest);
    if (!existsSync(digestDir)) {
      const staged = stagingDir(ctx.home);
      copyVmFiles(src, staged);
      rmSync(join(staged, 'tart-sim-tmp.lock'), { force: true });
      writeFileSync(join(staged, 'manifest.json'), `{"digest":"${digest}"}\n`);
      renameSync(staged, digestDir);
    }
    if (!r.reference.startsWith('sha256:')) {
      rmSync(join(repo, r.reference), { force: true });
      symlinkSync(digest, join(repo, r.reference));
    }
    return digestDir;
  } finally {
    unlock(repoLock);
  }
}

/** The cached dir of a remote name for `clone`, pulling it first if not cached. */
export async function resolveRemote(ctx: Ctx, name: string): Promise<string> {
  const r = parseRemote(name);
  const cached = join(cacheRepo(ctx.home, r), r.reference);
  if (vmDirState(cached) === 'ok') return cached;
  return pull(ctx, r, name);
}

/** Deletes a cached OCI entry (tag link, or digest dir); false when not cached. */
export function deleteRemote(home: Home, name: string): boolean {
  const r = parseRemote(name);
  const p = join(cacheRepo(home, r), r.reference);
  if (!existsSync(p)) return false;
  rmSync(p, { recursive: true, force: true });
  if (readdirSync(dirname(p)).length === 0) rmSync(dirname(p), { recursive: true, force: true });
  return true;
}

/** `tart pull REF`. */
export async function cmdPull(ctx: Ctx): Promise<number> {
  const name = ctx.args.positionals[0] ?? '';
  if (!isRemoteName(name) && vmDirState(join(ctx.home.vms, name)) === 'ok') {
    out(`"${name}" is a local image, nothing to pull here!`);
    return 0;
  }
  await pull(ctx, parseRemote(name), name);
  return 0;
}
