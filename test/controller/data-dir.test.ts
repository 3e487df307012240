/**
 * The controller process and its data directory: files private from the start and narrowed when
 * an older version left them wide, `.partial` leftovers removed at start, and an existing
 * database upgraded (leases hashed) under a running build whose worker carries on.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { request } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MIGRATIONS } from '../../src/controller/store/migrations.ts';
import { prepareDataDir } from '../../src/controller/store/data-dir.ts';
import { killAllControllers, startControllerProcess } from '../support/controller-process.ts';

const KEY = 'data-dir-test-admin-key';
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
const mode = (p: string) => (statSync(p).mode & 0o777).toString(8);

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'expo-ctl-data-'));
});
afterEach(async () => {
  await killAllControllers();
  rmSync(dir, { recursive: true, force: true });
});

async function call(base: string, path: string, key: string, body: unknown) {
  const res = await request(`${base}${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await res.body.text();
  return { status: res.statusCode, json: () => JSON.parse(text) as Record<string, unknown> };
}

describe('data directory', () => {
  it('a new database is created 0600 (with its -wal and -shm), its directory 0700, the secret-env key 0600', async () => {
    const data = join(dir, 'data');
    const db = join(data, 'c.db');
    const c = await startControllerProcess({ dbPath: db, apiKey: KEY });
    expect((await call(c.url, '/api/v1/builds', KEY, { steps: [{ name: 's', run: 'true' }], secretEnv: { T: 'abcdefgh' } })).status).toBe(201);
    expect(mode(data)).toBe('700');
    for (const f of [db, `${db}-wal`, `${db}-shm`, join(data, 'secret-env.key')]) expect([f, mode(f)]).toEqual([f, '600']);
    expect(await c.stop()).toBe(0);
  });

  it('a database left 0644 and its directory 0755 are narrowed at start with a log line; .partial leftovers are removed', async () => {
    const data = join(dir, 'data');
    mkdirSync(data, { mode: 0o755 });
    chmodSync(data, 0o755);
    const db = join(data, 'c.db');
    new DatabaseSync(db).close();
    chmodSync(db, 0o644);
    const partial = join(data, 'artifacts', 'aaaaaaaaaaaaaaaa', '1', 'App.ipa.0011223344ff.partial');
    mkdirSync(join(data, 'artifacts', 'aaaaaaaaaaaaaaaa', '1'), { recursive: true });
    writeFileSync(partial, 'half an upload');
    const c = await startControllerProcess({ dbPath: db, apiKey: KEY });
    expect([mode(data), mode(db)]).toEqual(['700', '600']);
    expect(c.output.some((l) => l.includes('narrowed a file mode') && l.includes('0644 → 0600'))).toBe(true);
    expect(c.output.some((l) => l.includes('narrowed a file mode') && l.includes('0755 → 0700'))).toBe(true);
    expect(existsSync(partial)).toBe(false);
    expect(await c.stop()).toBe(0);
  });
});

describe('prepareDataDir', () => {
  it('--db in a shared folder (like /var/lib/controller.db) leaves that folder\'s mode alone and warns to give --db a directory of its own (it chmodded the parent to 0700)', () => {
    const shared = join(dir, 'var-lib');
    mkdirSync(shared);
    chmodSync(shared, 0o755);
    writeFileSync(join(shared, 'dpkg'), 'another program\'s file');
    mkdirSync(join(shared, 'postgresql'));
    const db = join(shared, 'controller.db');
    new DatabaseSync(db).close();
    chmodSync(db, 0o644);
    const report = prepareDataDir(db);
    expect(mode(shared)).toBe('755');
    expect(report.warnings).toEqual([expect.stringMatching(/holds more than the controller's files \(dpkg, postgresql\).*give --db a directory of its own/)]);
    // Its own files are still narrowed.
    expect(mode(db)).toBe('600');
    expect(report.fixed).toEqual([`${db}: 0644 → 0600`]);
  });

  it('a folder holding only the controller\'s own entries is narrowed; a folder it creates is 0700', () => {
    const own = join(dir, 'own');
    mkdirSync(join(own, 'artifacts'), { recursive: true });
    chmodSync(own, 0o750);
    const db = join(own, 'c.db');
    for (const f of [db, `${db}-wal`, `${db}-shm`, `${db}-journal`, join(own, 'secret-env.key')]) writeFileSync(f, '', { mode: 0o600 });
    expect(prepareDataDir(db)).toEqual({ fixed: [`data directory ${own}: 0750 → 0700`], warnings: [] });
    expect(mode(own)).toBe('700');
    const fresh = join(dir, 'new', 'data');
    expect(prepareDataDir(join(fresh, 'c.db'))).toEqual({ fixed: [], warnings: [] });
    expect(mode(fresh)).toBe('700');
  });
});

describe('prepareDataDir on a mount point', () => {
  it('an empty volume mounted where --db points is left alone (it was narrowed as "only the controller\'s entries")', (t) => {
    const mnt = join(dir, 'mnt');
    mkdirSync(mnt);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0755', 'tmpfs', mnt], { stdio: 'pipe' });
    } catch {
      return t.skip(); // not root: mount is not ours to call (CI runs as root)
    }
    try {
      const report = prepareDataDir(join(mnt, 'controller.db'));
      expect(report.fixed).toEqual([]);
      expect(report.warnings).toEqual([expect.stringContaining('is a mount point')]);
      expect(mode(mnt)).toBe('755');
    } finally {
      execFileSync('umount', ['-l', mnt], { stdio: 'pipe' });
    }
  });
});

describe('upgrade', () => {
  it('an old database with a running build migrates (leases hashed) and the build\'s worker keeps heartbeating and completes it', async () => {
    const db = join(dir, 'c.db');
    const workerKey = 'ewk_old-worker-key-0123456789abcdef';
    const lease = 'ewl_oldleaseplain0123456789';
    const buildToken = 'ewb_old-build-token-0123456789abcdef';
    const buildId = 'abcdefghijklmnop';
    const now = Date.now();
    const old = new DatabaseSync(db);
    old.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)');
    for (const m of MIGRATIONS.filter((m) => m.version <= 3)) {
      old.exec(m.sql);
      old.prepare('INSERT INTO schema_migrations VALUES (?, ?, ?)').run(m.version, m.name, now);
    }
    old.prepare(`INSERT INTO workers (id, labels, key_hash, created_at, last_seen_at, slots_total) VALUES ('w1', '[]', ?, ?, ?, 1)`).run(sha256(workerKey), now, now);
    old.prepare(
      `INSERT INTO builds (id, status, steps, env, labels, timeout_s, max_attempts, attempt, worker_id, lease, created_at, assigned_at, started_at, last_heartbeat_at)
       VALUES (?, 'running', '[{"name":"s","run":"true"}]', '{}', '[]', 3600, 1, 1, 'w1', ?, ?, ?, ?, ?)`,
    ).run(buildId, lease, now, now, now, now);
    old.prepare(`INSERT INTO attempts (build_id, attempt, worker_id, lease, build_token_hash, claimed_at, log_offset, running_at) VALUES (?, 1, 'w1', ?, ?, ?, 0, ?)`).run(buildId, lease, sha256(buildToken), now, now);
    old.close();

    const c = await startControllerProcess({ dbPath: db, apiKey: KEY });
    expect((await call(c.url, '/api/v1/workers/w1/heartbeat', workerKey, { runningBuilds: [buildId] })).json()).toMatchObject({ abort: [], cancel: [] });
    expect((await call(c.url, `/api/v1/builds/${buildId}/heartbeat`, buildToken, { progress: 50 })).status).toBe(200);
    expect((await call(c.url, `/api/v1/builds/${buildId}/logs`, workerKey, { lease, offset: 0, data: 'still here\n' })).status).toBe(200);
    expect((await call(c.url, `/api/v1/builds/${buildId}/complete`, workerKey, { lease, status: 'succeeded' })).json()).toMatchObject({ status: 'succeeded' });
    expect(await c.stop()).toBe(0);

    const after = new DatabaseSync(db, { readOnly: true });
    expect(after.prepare('SELECT lease FROM attempts WHERE build_id = ?').get(buildId)).toEqual({ lease: sha256(lease) });
    expect(after.prepare('SELECT MAX(version) AS v FROM schema_migrations').get()).toEqual({ v: MIGRATIONS.at(-1)!.version });
    after.close();
  });
});
