/**
 * The oldest Node.js expo-worker runs on, checked by the CLI's entry before it loads anything
 * else: 22.13 is the first release with `node:sqlite` unflagged (the controller's store), and
 * an older Node would otherwise die with "No such built-in module node:sqlite" or a syntax
 * error instead of saying what to do.
 *
 * This file is imported by the entry while the Node version is still unknown: it must use only
 * syntax and built-ins that old releases have, and import nothing.
 */

export const MIN_NODE_VERSION = '22.13.0';

/** True when `version` ("22.12.0", "v20.11.1") is older than {@link MIN_NODE_VERSION}; an unreadable version counts as old. */
export function nodeTooOld(version: string): boolean {
  const got = /^v?(\d+)\.(\d+)\.(\d+)/.exec(version);
  if (!got) return true;
  const want = MIN_NODE_VERSION.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const a = Number(got[i + 1]);
    const b = want[i] ?? 0;
    if (a !== b) return a < b;
  }
  return false;
}

/** What the CLI says when this Node is too old: the version found, the one needed, and how to get it. */
export function nodeTooOldMessage(version: string, execPath: string): string {
  return [
    `expo-worker: Node.js ${MIN_NODE_VERSION} or newer is needed; this is ${version} (${execPath}).`,
    'Run ./script/bootstrap in the expo-worker checkout: it fetches a current Node.js into .tools/node,',
    'which bin/expo-worker uses. Or install Node.js 22.13+ (24 recommended) and put it first on PATH.',
    '',
  ].join('\n');
}
