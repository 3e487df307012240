/**
 * Where `expo-worker artifacts --download DIR` saves each artifact. An artifact's name is a
 * relative path (`ios/build/App.ipa`) and is saved at that path below DIR, with two exceptions
 * decided before anything is written:
 *
 * - a name that is also the folder of other artifacts (`a` beside `a/App.ipa`, possibly from
 *   different attempts) is saved beside it as `a.artifact` (`a.artifact-2`, … when taken), so
 *   neither is lost and no `EEXIST` stops the download half-way;
 * - a name that is not a plain relative path (empty, absolute, `.` or `..` segments, a NUL) is
 *   refused: it would land outside DIR or on another artifact.
 *
 * Then, on disk, a target whose path inside DIR meets a symbolic link (checked with lstat, so a
 * link planted in DIR cannot send a file elsewhere), a file where a folder is needed, or a folder
 * where the file goes, is refused for that artifact only; the others are still saved.
 */
import { lstat, mkdir } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import type { ArtifactView } from '../protocol/schemas.ts';

/** One artifact's place below DIR. */
export interface DownloadTarget {
  readonly artifact: ArtifactView;
  /** Its relative path below DIR, `/`-separated. */
  readonly relPath: string;
  /** Why it is not saved at its own name, when it is not. */
  readonly renamedBecause?: string;
}

/** An artifact that is not saved, and why. */
export interface DownloadRefusal {
  readonly name: string;
  readonly why: string;
}

/** Why `name` is not a plain relative path, or null. */
function nameProblem(name: string): string | null {
  if (name === '' || name.startsWith('/') || isAbsolute(name) || name.includes('\0') || name.includes('\\')) return 'is not a relative path';
  if (name.split('/').some((s) => s === '' || s === '.' || s === '..')) return 'has an empty, "." or ".." segment';
  return null;
}

/** Decides every artifact's relative path below DIR before anything is written. */
export function planDownloads(list: readonly ArtifactView[]): { targets: DownloadTarget[]; refused: DownloadRefusal[] } {
  const refused: DownloadRefusal[] = [];
  const ok = list.filter((a) => {
    const why = nameProblem(a.name);
    if (why !== null) refused.push({ name: a.name, why: `its name ${why}: it would be saved outside the folder or over another artifact` });
    return why === null;
  });
  const names = new Set(ok.map((a) => a.name));
  // Every folder some artifact needs: `a/b/c` needs `a` and `a/b`.
  const folders = new Map<string, string>();
  for (const n of names) {
    const parts = n.split('/');
    for (let i = 1; i < parts.length; i++) {
      const folder = parts.slice(0, i).join('/');
      if (!folders.has(folder)) folders.set(folder, n);
    }
  }
  const taken = (p: string) => names.has(p) || folders.has(p);
  const targets = ok.map((artifact): DownloadTarget => {
    const inside = folders.get(artifact.name);
    if (inside === undefined) return { artifact, relPath: artifact.name };
    let relPath = `${artifact.name}.artifact`;
    for (let i = 2; taken(relPath); i++) relPath = `${artifact.name}.artifact-${i}`;
    names.add(relPath);
    return { artifact, relPath, renamedBecause: `'${artifact.name}' is also the folder of '${inside}'` };
  });
  return { targets, refused };
}

const errno = (err: unknown) => (err as NodeJS.ErrnoException).code;

async function lstatOrNull(path: string) {
  try {
    return await lstat(path);
  } catch (err) {
    if (errno(err) === 'ENOENT') return null;
    throw err;
  }
}

/**
 * Makes the folders below `root` that `relPath` needs and returns the file's absolute path, or
 * why it cannot be saved there: a symlink, a file in place of a folder, a folder in place of the file.
 */
export async function prepareTarget(root: string, relPath: string): Promise<{ path: string } | { why: string }> {
  const base = resolve(root);
  const path = resolve(base, relPath);
  const rel = relative(base, path);
  if (rel === '' || rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)) return { why: `it points outside ${root}` };
  const parts = relPath.split('/');
  let at = base;
  for (const [i, part] of parts.entries()) {
    at = join(at, part);
    const shown = parts.slice(0, i + 1).join('/');
    const st = await lstatOrNull(at);
    const last = i === parts.length - 1;
    if (st === null) {
      if (!last) await mkdir(at);
      continue;
    }
    if (st.isSymbolicLink()) return { why: `${shown} in ${root} is a symbolic link (refused: it could point anywhere)` };
    if (!last && !st.isDirectory()) return { why: `${shown} in ${root} is a file, not a folder` };
    if (last && st.isDirectory()) return { why: `${shown} in ${root} is a folder` };
  }
  return { path };
}
