/**
 * `expo-worker submit --secret-env` and `expo-worker prune` against a real controller listening
 * on loopback (real HTTP, real SQLite).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { pruneMain, submitMain, type CliIo } from '../../src/client/commands.ts';
import { ADMIN_KEY, startTestController, type TestController } from '../controller/support.ts';

let c: TestController;
let url: string;
let home: string;

beforeEach(async () => {
  c = await startTestController();
  url = await c.app.listen({ port: 0, host: '127.0.0.1' });
  home = mkdtempSync(join(tmpdir(), 'expo-cli-home-'));
});
afterEach(async () => {
  await c.close();
  rmSync(home, { recursive: true, force: true });
});

function io(extraEnv: NodeJS.ProcessEnv = {}): CliIo & { out: () => string; err: () => string } {
  const out: string[] = [];
  const err: string[] = [];
  return {
    stdout: (t) => void out.push(typeof t === 'string' ? t : Buffer.from(t).toString('utf8')),
    stderr: (t) => void err.push(t),
    env: { EXPO_WORKER_URL: url, EXPO_WORKER_KEY: ADMIN_KEY, ...extraEnv },
    home,
    out: () => out.join(''),
    err: () => err.join(''),
  };
}

describe('expo-worker submit --secret-env', () => {
  it('takes NAME=VALUE, or NAME alone from its own environment, and the worker gets both values', async () => {
    const w = await c.enrol('w1');
    const t = io({ FROM_ENV: 'value-from-the-environment' });
    expect(await submitMain(['--step', 'b=make', '--secret-env', 'GIVEN=given-value-1', '--secret-env', 'FROM_ENV', '--json'], t)).toBe(0);
    expect(t.out()).not.toContain('given-value-1');
    expect(t.out()).not.toContain('value-from-the-environment');
    expect(JSON.parse(t.out())).toMatchObject({ secretEnvNames: ['FROM_ENV', 'GIVEN'] });
    const claim = (await c.poll('w1', w.auth)) as unknown as { build: { secretEnv: Record<string, string> } };
    expect(claim.build.secretEnv).toEqual({ GIVEN: 'given-value-1', FROM_ENV: 'value-from-the-environment' });
  });

  it('names a variable missing from its environment, exit 64', async () => {
    const t = io();
    expect(await submitMain(['--step', 'b=make', '--secret-env', 'NOT_SET_ANYWHERE'], t)).toBe(64);
    expect(t.err()).toContain('--secret-env NOT_SET_ANYWHERE: no variable NOT_SET_ANYWHERE');
  });
});

describe('expo-worker prune', () => {
  it('--dry-run counts, then prune deletes the old finished builds only', async () => {
    const old = await c.submit();
    await c.post(`/api/v1/builds/${old.id}/cancel`, c.admin);
    c.clock.now += 40 * 24 * 3600 * 1000;
    const fresh = await c.submit();
    await c.post(`/api/v1/builds/${fresh.id}/cancel`, c.admin);

    const dry = io();
    expect(await pruneMain(['--older-than', '30d', '--dry-run'], dry)).toBe(0);
    expect(dry.out()).toMatch(/^would delete 1 build finished before \S+ \(0 log bytes, 0 artifacts of 0 bytes\); nothing deleted \(--dry-run\)\n$/);
    expect((await c.get(old.id)).status).toBe('cancelled');

    const real = io();
    expect(await pruneMain(['--older-than', '30', '--json'], real)).toBe(0);
    expect(JSON.parse(real.out())).toMatchObject({ dryRun: false, olderThanDays: 30, builds: 1 });
    expect((await c.app.inject({ method: 'GET', url: `/api/v1/builds/${old.id}`, headers: c.admin })).statusCode).toBe(404);
    expect((await c.get(fresh.id)).status).toBe('cancelled');
  });

  it('refuses an age that is not a number of days', async () => {
    const t = io();
    expect(await pruneMain(['--older-than', '3w'], t)).toBe(64);
    expect(t.err()).toContain('--older-than: a number of days');
  });
});
