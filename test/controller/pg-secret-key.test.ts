/**
 * Controllers on one PostgreSQL database must seal builds' secrets with one `secret-env.key`
 * (pg-settings.ts): real PostgreSQL, real controller processes. One with an empty data directory
 * or another key refuses to start (exit 64, naming the fix) instead of making a key of its own;
 * one with the copied key starts; two starting together on a new database record one key.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createHmac } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { killAllControllers, startControllerProcess, type ControllerProcess } from '../support/controller-process.ts';
import { startPostgres, type Postgres } from '../support/postgres.ts';

const ADMIN = 'pg-secret-key-admin-key-0123456789';

let postgres: Postgres;
let root: string;
let dbUrl: string;
let n = 0;
const stopped: ControllerProcess[] = [];

beforeAll(async () => {
  postgres = await startPostgres();
  root = mkdtempSync(join(tmpdir(), 'expo-pg-key-'));
}, 60_000);
afterAll(async () => {
  await killAllControllers();
  await postgres?.stop();
  rmSync(root, { recursive: true, force: true });
});
beforeEach(async () => {
  dbUrl = await postgres.createDatabase();
});
afterEach(async () => {
  await Promise.all(stopped.splice(0).map((c) => c.stop()));
  await killAllControllers();
});

/** A new, empty data directory. */
const dataDir = (): string => {
  const dir = join(root, `ctl-${++n}`);
  mkdirSync(dir, { mode: 0o700 });
  return dir;
};
const start = async (dir: string): Promise<ControllerProcess> => {
  const ctl = await startControllerProcess({ dbPath: dbUrl, apiKey: ADMIN, extraArgs: ['--data-dir', dir] });
  stopped.push(ctl);
  return ctl;
};
/** The key's fingerprint as the controller computes it, from the file itself. */
const fingerprintOf = (keyFile: string): string =>
  createHmac('sha256', Buffer.from(readFileSync(keyFile, 'utf8').trim(), 'base64')).update('expo-worker secret-env key fingerprint v1').digest('hex');
const storedFingerprints = async (): Promise<string[]> => {
  const c = new pg.Client({ connectionString: dbUrl });
  await c.connect();
  try {
    return (await c.query<{ value: string }>(`SELECT value FROM cluster_settings WHERE name = 'secret_env_key_fingerprint'`)).rows.map((r) => r.value);
  } finally {
    await c.end();
  }
};

describe('one secret-env.key across the controllers of a PostgreSQL database', () => {
  it('records the first key; refuses an empty data dir (creating no key) and another key; starts with the copied key', async () => {
    const first = dataDir();
    const ctl1 = await start(first);
    const key1 = join(first, 'secret-env.key');
    expect(await storedFingerprints()).toEqual([fingerprintOf(key1)]);

    const empty = dataDir();
    const refusedEmpty = await start(empty).then(
      () => null,
      (err: Error) => err.message,
    );
    expect(refusedEmpty).toMatch(/exited \(64\) before listening/);
    expect(refusedEmpty).toContain(`copy secret-env.key from another controller into --data-dir (${join(empty, 'secret-env.key')})`);
    expect(refusedEmpty).toContain('docs/operations.md#ha-several-controllers');
    expect(existsSync(join(empty, 'secret-env.key'))).toBe(false);

    // A key of its own (as an older controller would have made): refused, and left as it was.
    const other = dataDir();
    const otherKey = join(other, 'secret-env.key');
    const made = await startControllerProcess({ dbPath: join(other, 'made-key.db'), apiKey: ADMIN }).then((c) => c.stop());
    expect(made).toBe(0);
    expect(existsSync(otherKey)).toBe(true);
    const before = readFileSync(otherKey, 'utf8');
    const refusedOther = await start(other).then(
      () => null,
      (err: Error) => err.message,
    );
    expect(refusedOther).toMatch(/exited \(64\) before listening/);
    expect(refusedOther).toContain('is not the key the other controllers on this database use');
    expect(readFileSync(otherKey, 'utf8')).toBe(before);

    const copied = dataDir();
    copyFileSync(key1, join(copied, 'secret-env.key'));
    const ctl2 = await start(copied);
    expect(ctl2.url).not.toBe(ctl1.url);
    expect(await storedFingerprints()).toEqual([fingerprintOf(key1)]);
    // The key itself is never written to the database or the log.
    const key = readFileSync(key1, 'utf8').trim();
    expect([...ctl1.output, ...ctl2.output].join('\n')).not.toContain(key);
  }, 240_000);

  it('two controllers starting together on a new database with different keys: exactly one starts, and its key is the recorded one', async () => {
    const dirs = [dataDir(), dataDir()];
    const results = await Promise.allSettled(dirs.map((d) => start(d)));
    const started = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
    expect(started).toHaveLength(1);
    const loser = results.find((r) => r.status === 'rejected');
    // Refused either way: its new key lost the race, or the winner's was recorded before it looked.
    expect(String((loser as PromiseRejectedResult).reason)).toMatch(/exited \(64\) before listening[\s\S]*(is not the key the other controllers on this database use|is missing, and the controllers on this database already seal)/);
    expect(await storedFingerprints()).toEqual([fingerprintOf(join(dirs[started[0]!]!, 'secret-env.key'))]);
  }, 240_000);

  it('two controllers starting together on a new database with the same key both start', async () => {
    const seed = dataDir();
    expect(await startControllerProcess({ dbPath: join(seed, 'seed.db'), apiKey: ADMIN }).then((c) => c.stop())).toBe(0);
    const dirs = [dataDir(), dataDir()];
    for (const d of dirs) copyFileSync(join(seed, 'secret-env.key'), join(d, 'secret-env.key'));
    const [a, b] = await Promise.all(dirs.map((d) => start(d)));
    expect(a!.url).not.toBe(b!.url);
    expect(await storedFingerprints()).toEqual([fingerprintOf(join(seed, 'secret-env.key'))]);
  }, 240_000);
});
