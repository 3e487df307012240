/**
 * The people's commands run in this process (their `…Main(argv, io)` functions) against a real
 * controller listening on loopback with its own HOME: the hooks that start and end both for each
 * test, and an output-capturing `CliIo`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach } from 'vitest';
import type { CliIo } from '../../src/client/commands.ts';
import { startTestController, type TestController } from '../controller/support.ts';

/** A `CliIo` whose stdout and stderr are kept for the test to read. */
export interface Captured extends CliIo {
  out: () => string;
  err: () => string;
}

export function captured(o: { env: NodeJS.ProcessEnv; home: string; stdin?: string; followReconnectMs?: number }): Captured {
  const out: string[] = [];
  const err: string[] = [];
  return {
    stdout: (t) => void out.push(typeof t === 'string' ? t : Buffer.from(t).toString('utf8')),
    stderr: (t) => void err.push(t),
    env: o.env,
    home: o.home,
    ...(o.followReconnectMs === undefined ? {} : { followReconnectMs: o.followReconnectMs }),
    ...(o.stdin === undefined ? {} : { stdin: async () => o.stdin! }),
    out: () => out.join(''),
    err: () => err.join(''),
  };
}

export interface ListeningController {
  /** The current test's controller, its URL and the CLI's HOME. */
  readonly c: TestController;
  readonly url: string;
  readonly home: string;
}

/** Registers hooks giving each test a listening controller and a HOME, both removed after it. */
export function useListeningController(): ListeningController {
  let c: TestController;
  let url: string;
  let home: string;
  beforeEach(async () => {
    c = await startTestController({ realClock: true });
    url = await c.app.listen({ port: 0, host: '127.0.0.1' });
    home = mkdtempSync(join(tmpdir(), 'expo-cli-home-'));
  });
  afterEach(async () => {
    await c.close();
    rmSync(home, { recursive: true, force: true });
  });
  return {
    get c() {
      return c;
    },
    get url() {
      return url;
    },
    get home() {
      return home;
    },
  };
}
