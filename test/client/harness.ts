/**
 * The CLI as a person runs it: a real controller on loopback, and `node src/cli.ts …` started
 * as a real process against it with its own HOME. Registers the hooks that start both for each
 * test and end them (every CLI process still running is killed) even when a test fails.
 */
import { spawn, type ChildProcess, type ChildProcessByStdio } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterEach, beforeEach } from 'vitest';
import { CLI } from '../support/controller-process.ts';
import { ADMIN_KEY, startTestController, type TestController } from '../controller/support.ts';

export interface CliHarness {
  /** The controller of the current test. */
  readonly c: TestController;
  /** The current test's HOME for the CLI (a mkdtemp directory). */
  readonly home: string;
  /** Starts the CLI with these arguments (after `nodeArgs` for Node itself), pointed at the controller with the admin key. */
  spawnCli(args: string[], nodeArgs?: string[]): ChildProcessByStdio<null, Readable, Readable>;
}

export function useCliHarness(homePrefix: string): CliHarness {
  let c: TestController;
  let url: string;
  let home: string;
  const children = new Set<ChildProcess>();
  beforeEach(async () => {
    c = await startTestController({ realClock: true });
    url = await c.app.listen({ port: 0, host: '127.0.0.1' });
    home = mkdtempSync(join(tmpdir(), homePrefix));
  });
  afterEach(async () => {
    for (const p of children) {
      if (p.exitCode === null && p.signalCode === null) {
        p.kill('SIGKILL');
        await once(p, 'exit');
      }
    }
    children.clear();
    await c.close();
    rmSync(home, { recursive: true, force: true });
  });
  return {
    get c() {
      return c;
    },
    get home() {
      return home;
    },
    spawnCli(args, nodeArgs = []) {
      const proc = spawn(process.execPath, [...nodeArgs, CLI, ...args], {
        env: { ...process.env, HOME: home, EXPO_WORKER_URL: url, EXPO_WORKER_KEY: ADMIN_KEY },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      children.add(proc);
      return proc;
    },
  };
}
