/**
 * `tart run --dir [name:]path[:ro][,tag=T]` (spec §2 run), repeatable. tart parses each value
 * in its validation phase — a malformed one is a usage error (exit 64) — and macOS guests
 * auto-mount the shares under `/Volumes/My Shared Files/<name>`.
 *
 * The simulated guest is an sshd on this host whose sessions start in `vms/NAME/guest/` (their
 * `HOME`), so the simulator shows the shares at `$HOME/My Shared Files/<name>` — a symlink to
 * the host path — made before the guest boots. An agent that runs against the simulator points
 * its `vmSharedFilesRoot` at `~/My Shared Files`. `:ro` is recorded, not enforced (the guest
 * user is the host user).
 */
import { existsSync, mkdirSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import type { Parsed } from './args.ts';
import { TartError, usageError } from './errors.ts';

/** One `--dir` share as tart reads it. */
export interface DirShare {
  /** Absent for a single unnamed share (tart then names it after the directory). */
  name?: string;
  path: string;
  readOnly: boolean;
  tag?: string;
}

/** The folder under the guest's home that stands for `/Volumes/My Shared Files`. */
export const SHARED_FILES_DIR = 'My Shared Files';

function invalid(why: string): TartError {
  return usageError(`invalid --dir syntax: ${why}`, 'run');
}

/** Parses one `--dir` value; throws tart's usage error on a malformed one. */
export function parseDirShare(value: string): DirShare {
  const comma = value.indexOf(',');
  const spec = comma < 0 ? value : value.slice(0, comma);
  let tag: string | undefined;
  if (comma >= 0) {
    const options = value.slice(comma + 1);
    if (!options.startsWith('tag=') || options.length === 4) throw invalid('for the options to be recognized, please use "tag=<TAG>"');
    tag = options.slice(4);
  }
  const parts = spec.split(':');
  let share: DirShare;
  if (parts.length === 1) share = { path: parts[0] ?? '', readOnly: false };
  else if (parts.length === 2 && parts[1] === 'ro') share = { path: parts[0] ?? '', readOnly: true };
  else if (parts.length === 2) share = { name: parts[0], path: parts[1] ?? '', readOnly: false };
  else if (parts.length === 3 && parts[2] === 'ro') share = { name: parts[0], path: parts[1] ?? '', readOnly: true };
  else throw invalid(`expected [name:]path[:ro][,tag=TAG], got "${value}"`);
  if (share.name === '') throw invalid(`the share name is empty in "${value}"`);
  if (share.path === '') throw invalid(`the path is empty in "${value}"`);
  return tag === undefined ? share : { ...share, tag };
}

/**
 * The run's shares: parsed and checked as tart does before it takes any lock (a missing
 * directory fails the run, exit 1); several shares need a name each.
 */
export function runShares(args: Parsed): DirShare[] {
  const shares = (args.options.get('dir') ?? []).map(parseDirShare);
  if (shares.length > 1 && shares.some((s) => s.name === undefined)) throw invalid('for multiple directory shares each one of them should be named');
  const names = shares.map((s) => s.name ?? basename(s.path));
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup !== undefined) throw invalid(`the share name "${dup}" is used twice`);
  for (const s of shares) {
    const path = resolve(s.path);
    if (!existsSync(path) || !statSync(path).isDirectory()) throw new TartError(`the directory to share does not exist: ${path}`, 1, 'prefixed');
  }
  return shares;
}

/** Makes `guest/My Shared Files/<name>` → the host path for each share (replacing a previous run's). */
export function linkShares(vmDir: string, shares: readonly DirShare[]): void {
  const root = join(vmDir, 'guest', SHARED_FILES_DIR);
  rmSync(root, { recursive: true, force: true });
  if (shares.length === 0) return;
  mkdirSync(root, { recursive: true });
  for (const s of shares) symlinkSync(resolve(s.path), join(root, s.name ?? basename(resolve(s.path))));
}
