/**
 * The file-system work of the host caches (caches.ts): removing a tree a guest may have made
 * read-only, copying one cheaply (APFS clones on macOS), emptying a directory in place and
 * measuring one. Separate so caches.ts keeps the cache's layout and rules.
 */
import { execFile } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { chmod, lstat, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

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

/** Makes one directory `u+rwx` (not its contents), if it is a real directory that is not. */
export async function makeDirWritable(dir: string): Promise<void> {
  let st;
  try {
    st = await lstat(dir);
  } catch {
    return;
  }
  if (st.isDirectory() && (st.mode & 0o700) !== 0o700) await chmod(dir, (st.mode & 0o7777) | 0o700);
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

/** Removes what `dir` holds and keeps `dir` itself (the same inode): a VM may have it mounted. */
export async function emptyDir(dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  for (const n of await readdir(dir)) await removeTree(join(dir, n));
}

/** Copies the contents of `src` into the existing directory `dst` (argv only); an abort of `signal` ends the copy (and rejects). */
export type CopyTree = (src: string, dst: string, signal?: AbortSignal) => Promise<void>;

/**
 * `cp -c` (clonefile) on macOS, falling back to a plain copy off APFS; `cp -a` elsewhere. BSD cp
 * copies a directory's contents when the source ends in `/` (cp(1)); GNU cp's idiom is `src/.`.
 * An abort kills `cp` (a real copy of a large tree takes minutes): what it copied is the
 * caller's to remove.
 */
export const copyTree: CopyTree = async (src, dst, signal) => {
  signal?.throwIfAborted();
  if (process.platform === 'darwin') {
    try {
      await execFileP('cp', ['-c', '-R', '-p', `${src}/`, dst], { signal });
      return;
    } catch (err) {
      if (signal?.aborted) throw err;
      // Not APFS (or clonefile refused): a real copy, into a clean directory. Emptied, not
      // replaced: `dst` may be a VM's share, which must stay the directory the VM booted with.
      await emptyDir(dst);
      await execFileP('cp', ['-R', '-p', `${src}/`, dst], { signal });
      return;
    }
  }
  await execFileP('cp', ['-a', `${src}/.`, dst], { signal });
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
