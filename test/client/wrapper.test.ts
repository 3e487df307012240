/**
 * `bin/expo-worker`, the wrapper the README's commands use: it finds a new enough Node.js (the
 * bootstrapped one in .tools/node, or the system's) so that `expo-worker` works as written
 * after ./script/bootstrap, and says what to do when there is none.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/client/exit-codes.ts';

const WRAPPER = fileURLToPath(new URL('../../bin/expo-worker', import.meta.url));
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function run(file: string, args: string[], path: string): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { env: { PATH: path, HOME: tmpdir() }, timeout: 120_000 }, (err, out, errText) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: String(out), err: String(errText) });
    });
  });
}

describe('bin/expo-worker', () => {
  it('runs `--help` and `--version` with this checkout’s Node, from anywhere and through a symlink', async () => {
    const path = `${dirname(process.execPath)}:/usr/bin:/bin`;
    const help = await run(WRAPPER, ['--help'], path);
    expect(help.code, help.err).toBe(0);
    expect(help.out).toContain('Usage: expo-worker <command> [options]');
    expect(help.err).toBe('');
    const dir = mkdtempSync(join(tmpdir(), 'expo-wrapper-'));
    dirs.push(dir);
    symlinkSync(WRAPPER, join(dir, 'expo-worker'));
    const version = await run(join(dir, 'expo-worker'), ['--version'], path);
    expect(version.code, version.err).toBe(0);
    expect(version.out).toMatch(/^\d+\.\d+\.\d+\n$/);
  });

  it('with only an old Node (and nothing bootstrapped) it names ./script/bootstrap and exits 78, no stack trace', async () => {
    // A checkout with no .tools/node, and a `node` on PATH that is Node 20.
    const root = mkdtempSync(join(tmpdir(), 'expo-wrapper-root-'));
    dirs.push(root);
    mkdirSync(join(root, 'bin'));
    copyFileSync(WRAPPER, join(root, 'bin', 'expo-worker'));
    mkdirSync(join(root, 'oldnode'));
    writeFileSync(join(root, 'oldnode', 'node'), '#!/bin/sh\n[ "$1" = --version ] && { echo v20.11.1; exit 0; }\nexit 1\n', { mode: 0o755 });
    const r = await run('/bin/bash', [join(root, 'bin', 'expo-worker'), 'status'], `${join(root, 'oldnode')}:/usr/bin:/bin`);
    expect(r.code).toBe(78);
    expect(r.err).toContain('Node.js 22.13.0 or newer is needed; found');
    expect(r.err).toContain('v20.11.1');
    expect(r.err).toContain(`Run ./script/bootstrap in ${root}`);
    expect(r.out).toBe('');
  });

  it('a checkout without node_modules says the dependencies are not installed and exits 72, not 78 (Node too old)', async () => {
    // A checkout with no node_modules, run with this (new enough) Node on PATH.
    const root = mkdtempSync(join(tmpdir(), 'expo-wrapper-root-'));
    dirs.push(root);
    mkdirSync(join(root, 'bin'));
    copyFileSync(WRAPPER, join(root, 'bin', 'expo-worker'));
    const r = await run('/bin/bash', [join(root, 'bin', 'expo-worker'), 'status'], `${dirname(process.execPath)}:/usr/bin:/bin`);
    expect(r.code).toBe(EXIT.notBootstrapped);
    expect(r.code).not.toBe(EXIT.nodeTooOld);
    expect(r.err).toBe(`expo-worker: dependencies not installed (no node_modules): run ./script/bootstrap in ${root}\n`);
    expect(r.out).toBe('');
  });
});
