/**
 * `expo-worker migrate` from a real SQLite farm into a real PostgreSQL: every table row for row
 * (compared column by column with SQL on both sides), then a PgStore on the target answers as
 * the SqliteStore did (builds, byte-exact logs, artifacts, deliveries, projects and their sealed
 * secrets, users, sessions, tokens, the audit log), and new builds and audit entries number on
 * after the copied ones (and past SQLite's AUTOINCREMENT high-water marks). Text holding U+0000 is
 * copied with U+FFFD. Refusals (a target that is not empty or written meanwhile, an old SQLite
 * schema, orphaned rows, a bad URL) leave the target as it was; a copy PostgreSQL refuses halfway
 * leaves nothing, and a COMMIT whose answer is lost is checked again.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/controller/store/sqlite-store.ts';
import { PgStore } from '../../src/controller/store/pg-store.ts';
import { COPY_ORDER, sqliteBeingWritten, sqliteToPg } from '../../src/controller/store/sqlite-to-pg.ts';
import { migrateMain } from '../../src/controller/store-commands.ts';
import type { Store } from '../../src/controller/store/store.ts';
import { usePostgres } from '../support/postgres.ts';
import { runCli, type CliResult } from '../support/run-cli.ts';


const server = usePostgres();
let dir: string;
let dbFile: string;
let target: string;
const opened: { close: () => Promise<void> }[] = [];

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'expo-migrate-'));
  dbFile = join(dir, 'controller.db');
  target = await server().createDatabase();
});
afterEach(async () => {
  for (const o of opened.splice(0)) await o.close();
  await server().dropDatabase(target);
  rmSync(dir, { recursive: true, force: true });
});

const keep = <T extends { close: () => Promise<void> }>(o: T): T => (opened.push(o), o);
const quiet = { progress: () => undefined };
/** A log chunk no text decoder would survive: invalid UTF-8, NULs, a character cut in two. */
const RAW = [Buffer.from([0x00, 0xff, 0xfe, 0x41, 0x00, 0x0a]), Buffer.from('héllo\u0000wörld\n'), Buffer.from([0xc3]), Buffer.from([0xa9, 0x0a, 0x80, 0x00])];

const newBuild = (id: string, createdAt: number, over: object = {}) => ({
  id,
  steps: [{ name: 'build', run: 'make' }],
  env: { A: '1' },
  secretEnvNames: [],
  secretEnvSealed: null,
  labels: [],
  artifacts: [],
  timeoutS: 60,
  maxAttempts: 2,
  createdAt,
  ...over,
});

/** A SQLite farm with something in every table; answers what a store should read back. */
async function makeFarm(path: string): Promise<{ buildIds: string[]; logBuild: string }> {
  const s = new SqliteStore({ path });
  await s.migrate();
  try {
    await s.createWorker({ id: 'w1', labels: ['mac'], keyHash: 'k1', createdAt: 1 });
    await s.createWorker({ id: 'w2', labels: [], keyHash: 'k2', createdAt: 2 });
    const buildIds: string[] = [];
    for (let i = 0; i < 1200; i++) {
      const id = `b${String(i).padStart(15, '0')}`;
      await s.createBuild(newBuild(id, 1000 + i, i === 5 ? { secretEnvNames: ['TOKEN'], secretEnvSealed: Buffer.from([0, 1, 2, 0xff, 0]) } : {}));
      buildIds.push(id);
    }
    const logBuild = buildIds[0]!;
    const claim = (await s.claimBuild({ workerId: 'w1', workerLabels: ['mac'], now: 5000, lease: 'lease-1', buildTokenHash: 'tok-1', attemptBanner: (a, m) => `[attempt ${a}/${m}]\n` }))!;
    expect(claim.build.id).toBe(logBuild);
    let offset = 0;
    for (let i = 0; i < 30; i++) {
      for (const chunk of RAW) {
        const r = await s.appendLog(logBuild, offset, chunk, 1 << 24);
        if (r.kind !== 'appended') throw new Error(`append: ${r.kind}`);
        offset = r.logBytes;
      }
    }
    await s.putArtifact({ buildId: logBuild, name: 'app.ipa', attempt: 1, sizeBytes: 1234, sha256: 'ab'.repeat(32), createdAt: 5500 });
    await s.finishAttempt({ buildId: logBuild, lease: 'lease-1', now: 6000, status: 'succeeded', failureReason: null, exitCode: 0, message: 'done', requeue: false });
    await s.recordDelivery({ id: 'd1', event: 'push', action: null, repository: 'octo/app', receivedAt: 7000, outcome: 'ignored', reason: 'no project', work: null, builds: [] });
    await s.createProject({ id: 'p1', repo: 'Octo/App', pipelinePath: '.expo-worker.yml', supersede: true, createdAt: 8000 });
    await s.putProjectSecret('p1', 'API_KEY', Buffer.from([0xde, 0xad, 0x00, 0xbe, 0xef]), 8001);
    await s.createUser({ name: 'alice', role: 'admin', passwordHash: 'scrypt$x', createdAt: 9000 });
    await s.createSession({ idHash: 'sess-1', userName: 'alice', createdAt: 9001, expiresAt: 99_999_999_999 });
    await s.createApiToken({ id: 'tok_1', name: 'ci', role: 'operator', owner: 'alice', secretHash: 'sh-1', createdAt: 9002, expiresAt: 99_999_999_999, lastUsedAt: null, revokedAt: null, adminEpoch: null });
    for (let i = 0; i < 3; i++) await s.appendAudit({ at: 10_000 + i, actor: 'user alice', action: 'build.cancel', target: buildIds[i]!, detail: null });
    return { buildIds, logBuild };
  } finally {
    await s.close();
  }
}

/** Every row of every table, as comparable JSON (bytes as hex), in a fixed order. */
async function rowsOfSqlite(path: string): Promise<Record<string, string[]>> {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const out: Record<string, string[]> = {};
    for (const t of COPY_ORDER) out[t] = (db.prepare(`SELECT * FROM "${t}"`).all() as Record<string, unknown>[]).map(canonical).sort();
    return out;
  } finally {
    db.close();
  }
}
async function rowsOfPg(url: string): Promise<Record<string, string[]>> {
  const c = new pg.Client({ connectionString: url, types: { getTypeParser: ((oid: number, f?: 'text' | 'binary') => (oid === 20 ? Number : pg.types.getTypeParser(oid, f))) as typeof pg.types.getTypeParser } });
  await c.connect();
  try {
    const out: Record<string, string[]> = {};
    for (const t of COPY_ORDER) out[t] = (await c.query<Record<string, unknown>>(`SELECT * FROM "${t}"`)).rows.map(canonical).sort();
    return out;
  } finally {
    await c.end();
  }
}
const canonical = (r: Record<string, unknown>): string =>
  JSON.stringify(Object.keys(r).sort().map((k) => [k, r[k] instanceof Uint8Array ? `hex:${Buffer.from(r[k] as Uint8Array).toString('hex')}` : r[k]]));

const cli = (args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> => runCli(args, { cwd: dir, env });

const tablesOf = async (url: string): Promise<string[]> => {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<{ t: string }>(`SELECT table_name AS t FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1`)).rows.map((r) => r.t);
  } finally {
    await c.end();
  }
};

describe('expo-worker migrate (SQLite → PostgreSQL)', () => {
  it('copies every table row for row (CLI as a child process), and a PgStore on the target answers as the SqliteStore did, numbering new builds after the copied ones', async () => {
    const { buildIds, logBuild } = await makeFarm(dbFile);
    const withPassword = target.replace('postgres://expo@', 'postgres://expo:s3cretpw@');
    const r = await cli(['migrate', '--from', `sqlite:${dbFile}`], { EXPO_MIGRATE_TO: withPassword });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout + r.stderr).not.toContain('s3cretpw');
    expect(r.stderr).toContain('copying log_chunks (120 rows)');
    expect(r.stdout).toMatch(/builds\s+1200\n/);
    expect(r.stdout).toMatch(/audit_log\s+3\n/);

    expect(await rowsOfPg(target)).toEqual(await rowsOfSqlite(dbFile));

    const sqlite = keep(new SqliteStore({ path: dbFile }));
    const store: Store = keep(new PgStore({ url: target }));
    await store.migrate();
    const log = await store.readLog(logBuild, 0);
    expect(log.equals(await sqlite.readLog(logBuild, 0))).toBe(true);
    expect(log.length).toBe(30 * RAW.reduce((n, b) => n + b.length, 0));
    expect(log.subarray(0, 6)).toEqual(RAW[0]);
    expect(await store.getBuild(logBuild)).toEqual(await sqlite.getBuild(logBuild));
    expect(await store.getBuild(buildIds[5]!)).toEqual(await sqlite.getBuild(buildIds[5]!));
    expect(await store.listAttempts(logBuild)).toEqual(await sqlite.listAttempts(logBuild));
    expect(await store.listArtifacts(logBuild)).toEqual(await sqlite.listArtifacts(logBuild));
    expect(await store.listDeliveries(10)).toEqual(await sqlite.listDeliveries(10));
    expect(await store.getProjectSecrets('p1')).toEqual(await sqlite.getProjectSecrets('p1'));
    expect(await store.getSession('sess-1', 10)).toEqual(await sqlite.getSession('sess-1', 10));
    expect(await store.getApiTokenBySecretHash('sh-1')).toEqual(await sqlite.getApiTokenBySecretHash('sh-1'));
    const audit = await store.listAudit({ limit: 10 });
    expect(audit).toEqual(await sqlite.listAudit({ limit: 10 }));
    expect(await store.countQueuedBuilds()).toBe(1199);

    // New rows number on after the copied ones (the identity sequences were moved).
    const added = await store.createBuild(newBuild('bnew000000000001', 20_000));
    expect(added.id).toBe('bnew000000000001');
    const c = new pg.Client({ connectionString: target });
    await c.connect();
    const seqs = (await c.query<{ seq: string }>(`SELECT seq::text FROM builds WHERE id = 'bnew000000000001'`)).rows;
    await c.end();
    expect(seqs).toEqual([{ seq: '1201' }]);
    expect((await store.listBuilds({ limit: 1 }))[0]?.id).toBe('bnew000000000001');
    await store.appendAudit({ at: 20_001, actor: 'admin key', action: 'user.add', target: 'bob', detail: null });
    expect((await store.listAudit({ limit: 1 }))[0]!.id).toBeGreaterThan(audit[0]!.id);
  }, 180_000);

  it('refuses a target that is not empty, or not reachable, and leaves it as it was', async () => {
    await makeFarm(dbFile);
    await sqliteToPg({ from: `sqlite:${dbFile}`, to: target, ...quiet });
    const before = await rowsOfPg(target);
    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l), env: {} };
    expect(await migrateMain(['--from', `sqlite:${dbFile}`, '--to', target], io)).toBe(1);
    expect(lines.join('\n')).toMatch(/is not empty: table workers has rows/);
    expect(await rowsOfPg(target)).toEqual(before);
    // A server that is not there (port 1 on loopback): exit 1, the password not shown.
    expect(await migrateMain(['--from', `sqlite:${dbFile}`, '--to', 'postgres://u:topsecret@127.0.0.1:1/x'], io)).toBe(1);
    expect(lines.join('\n')).toContain('cannot connect to postgres://u:***@127.0.0.1:1/x');
    expect(lines.join('\n')).not.toContain('topsecret');

    // Another application's table: refused too, even with no rows anywhere.
    const other = await server().createDatabase();
    try {
      const c = new pg.Client({ connectionString: other });
      await c.connect();
      await c.query('CREATE TABLE invoices (id int)');
      await c.end();
      await expect(sqliteToPg({ from: dbFile, to: other, ...quiet })).rejects.toMatchObject({ code: 'refused', message: expect.stringContaining('invoices') });
      expect(await tablesOf(other)).toEqual(['invoices']);
    } finally {
      await server().dropDatabase(other);
    }
  }, 120_000);

  it('copies into a database a controller already migrated (tables, no rows), copying only what was committed', async () => {
    await makeFarm(dbFile);
    const fresh = keep(new PgStore({ url: target }));
    await fresh.migrate();
    // That controller recorded its own key's fingerprint: it sealed nothing here, so the copy
    // clears it (the first controller started afterwards records the farm's key).
    await fresh.db.query(`INSERT INTO cluster_settings (name, value) VALUES ('secret_env_key_fingerprint', 'of-another-key')`);
    // A controller in the middle of a write: warned about, and the copy is the committed state.
    const writing = new DatabaseSync(dbFile);
    writing.exec('BEGIN IMMEDIATE');
    writing.exec(`UPDATE builds SET message = 'uncommitted'`);
    const lines: string[] = [];
    try {
      expect(await migrateMain(['--from', `sqlite:${dbFile}`, '--to', target], { out: (l) => lines.push(l), err: (l) => lines.push(l), env: {} })).toBe(0);
    } finally {
      writing.exec('ROLLBACK');
      writing.close();
    }
    expect(lines.join('\n')).toMatch(/builds\s+1200/);
    expect(await rowsOfPg(target)).toEqual(await rowsOfSqlite(dbFile));
    expect((await fresh.db.query('SELECT * FROM cluster_settings')).rows).toEqual([]);
  }, 120_000);

  it('refuses an old SQLite schema (start the current controller on it once), a bad URL or --from, with nothing written', async () => {
    await makeFarm(dbFile);
    const db = new DatabaseSync(dbFile);
    db.exec('DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)');
    db.close();
    const old = await cli(['migrate', '--from', `sqlite:${dbFile}`, '--to', target]);
    expect(old.code).toBe(1);
    expect(old.stderr).toContain('start the current controller on it once to upgrade it');
    expect(await tablesOf(target)).toEqual([]);

    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l), env: {} };
    expect(await migrateMain(['--from', `sqlite:${dbFile}`, '--to', 'mysql://root:pw@db/x'], io)).toBe(64);
    expect(await migrateMain(['--from', `sqlite:${dbFile}`, '--to', 'postgres://u:topsecret@[bad'], io)).toBe(64);
    expect(await migrateMain(['--from', 'postgres://a/b', '--to', target], io)).toBe(64);
    expect(await migrateMain(['--from', `sqlite:${join(dir, 'nope.db')}`, '--to', target], io)).toBe(64);
    expect(await migrateMain(['--to', target], io)).toBe(64);
    expect(await migrateMain(['--from', dbFile, '--bogus'], io)).toBe(64);
    expect(lines.join('\n')).not.toContain('topsecret');
    expect(lines.join('\n')).toContain('is not a postgres:// URL');
    expect(lines.join('\n')).toContain('--from: no database at');
    expect(await tablesOf(target)).toEqual([]);
  }, 120_000);

  it('a copy PostgreSQL refuses halfway is rolled back whole: the target has no tables after', async () => {
    await makeFarm(dbFile);
    // Text in an INTEGER column of the last table: SQLite keeps it, PostgreSQL's bigint refuses it (after every other table was copied).
    const db = new DatabaseSync(dbFile);
    db.prepare(`UPDATE audit_log SET at = 'not a time' WHERE id = 3`).run();
    db.close();
    await expect(sqliteToPg({ from: dbFile, to: target, ...quiet })).rejects.toMatchObject({ code: 'failed', message: expect.stringContaining('rolled back') });
    expect(await tablesOf(target)).toEqual([]);
  }, 120_000);

  it('copies text holding U+0000 (which PostgreSQL text refuses) with U+FFFD in its place, counted per table, blobs untouched', async () => {
    const { logBuild } = await makeFarm(dbFile);
    const db = new DatabaseSync(dbFile);
    // A step name and a completion message quoting it, as a hostile submitter would make them
    // (in the steps' JSON the NUL is the escape \u0000, plain ASCII: kept as it is).
    db.prepare(`UPDATE builds SET steps = ?, message = ? WHERE id = ?`).run(JSON.stringify([{ name: 'a\u0000b', run: 'make' }]), `step 'a\u0000b' exited with 1\u0000`, logBuild);
    db.prepare(`UPDATE users SET password_hash = ? WHERE name = 'alice'`).run('a\u0000b');
    db.close();
    const r = await cli(['migrate', '--from', `sqlite:${dbFile}`, '--to', target]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/builds\s+1200 {2}\(1 text values held U\+0000: copied with U\+FFFD\)/);
    expect(r.stdout).toMatch(/users\s+1 {2}\(1 text values held U\+0000/);
    expect(r.stdout).toMatch(/log_chunks\s+120\n/);
    const c = new pg.Client({ connectionString: target });
    await c.connect();
    try {
      const b = (await c.query<{ steps: string; message: string }>(`SELECT steps, message FROM builds WHERE id = $1`, [logBuild])).rows[0]!;
      expect(b.message).toBe(`step 'a\uFFFDb' exited with 1\uFFFD`);
      expect(JSON.parse(b.steps)).toEqual([{ name: 'a\u0000b', run: 'make' }]);
      expect((await c.query(`SELECT password_hash FROM users`)).rows).toEqual([{ password_hash: 'a\uFFFDb' }]);
    } finally {
      await c.end();
    }
    // The log's NUL bytes are bytea: copied as they were.
    const pgRows = await rowsOfPg(target);
    const sqliteRows = await rowsOfSqlite(dbFile);
    expect(pgRows.log_chunks).toEqual(sqliteRows.log_chunks);
    expect(pgRows.project_secrets).toEqual(sqliteRows.project_secrets);
  }, 120_000);

  it("numbers new builds and audit entries past SQLite's high-water marks, not only past the rows left", async () => {
    await makeFarm(dbFile);
    const db = new DatabaseSync(dbFile);
    // Retention emptied the audit log; the newest build was deleted. AUTOINCREMENT never reuses 3 or 1200.
    db.exec(`DELETE FROM audit_log; DELETE FROM builds WHERE seq = 1200`);
    db.close();
    await sqliteToPg({ from: dbFile, to: target, ...quiet });
    const c = new pg.Client({ connectionString: target });
    await c.connect();
    try {
      expect((await c.query(`SELECT nextval(pg_get_serial_sequence('builds', 'seq'))::int AS n`)).rows).toEqual([{ n: 1201 }]);
      expect((await c.query(`SELECT nextval(pg_get_serial_sequence('audit_log', 'id'))::int AS n`)).rows).toEqual([{ n: 4 }]);
    } finally {
      await c.end();
    }
  }, 120_000);

  it('refuses rows whose parent is missing before writing anything, naming them and how to remove them (a missing worker is fine)', async () => {
    await makeFarm(dbFile);
    const db = new DatabaseSync(dbFile);
    // As a farm from before foreign keys were enforced, or edited by hand.
    db.exec('PRAGMA foreign_keys = OFF');
    db.prepare(`INSERT INTO log_chunks (build_id, "offset", data) VALUES ('ghost', 0, x'00')`).run();
    db.prepare(`INSERT INTO project_secrets (project_id, name, sealed, updated_at) VALUES ('nope', 'K', x'01', 1)`).run();
    db.prepare(`UPDATE builds SET worker_id = 'w-deleted' WHERE seq = 2`).run();
    db.close();
    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l), env: {} };
    expect(await migrateMain(['--from', `sqlite:${dbFile}`, '--to', target], io)).toBe(1);
    const text = lines.join('\n');
    expect(text).toContain('2 rows whose parent row is missing');
    expect(text).toMatch(/log_chunks rowid \d+: build_id = "ghost" has no row in builds\(id\)/);
    expect(text).toMatch(/project_secrets rowid \d+: project_id = "nope" has no row in projects\(id\)/);
    expect(text).toContain('DELETE FROM "log_chunks" WHERE "build_id" NOT IN (SELECT "id" FROM "builds");');
    expect(text).not.toContain('w-deleted');
    expect(await tablesOf(target)).toEqual([]);
  }, 120_000);

  it('locks the target against a controller writing meanwhile: a row it commits during the copy makes the copy refuse, not merge', async () => {
    await makeFarm(dbFile);
    const fresh = keep(new PgStore({ url: target }));
    await fresh.migrate();
    // A controller's transaction, not yet committed when migrate starts: invisible to the first check.
    const other = new pg.Client({ connectionString: target });
    await other.connect();
    try {
      await other.query('BEGIN');
      await other.query(`INSERT INTO workers (id, labels, key_hash, created_at) VALUES ('intruder', '[]', 'k', 1)`);
      let settled = false;
      const migrating = sqliteToPg({ from: dbFile, to: target, ...quiet }).finally(() => (settled = true));
      migrating.catch(() => undefined);
      // Wait until migrate waits for its table lock (an awaited state, not a time).
      const watch = new pg.Client({ connectionString: target });
      await watch.connect();
      try {
        for (;;) {
          const waiting = await watch.query(`SELECT 1 FROM pg_stat_activity WHERE application_name = 'expo-worker migrate' AND wait_event_type = 'Lock'`);
          if (waiting.rowCount !== 0 || settled) break;
          await new Promise((r) => setTimeout(r, 20));
        }
      } finally {
        await watch.end();
      }
      expect(settled).toBe(false);
      await other.query('COMMIT');
      await expect(migrating).rejects.toMatchObject({ code: 'refused', message: expect.stringContaining('table workers has rows') });
    } finally {
      await other.end();
    }
    const c = new pg.Client({ connectionString: target });
    await c.connect();
    try {
      expect((await c.query(`SELECT id FROM workers`)).rows).toEqual([{ id: 'intruder' }]);
      expect((await c.query(`SELECT count(*)::int AS n FROM builds`)).rows).toEqual([{ n: 0 }]);
    } finally {
      await c.end();
    }
  }, 120_000);

  it('a connection lost during COMMIT is checked again on a new one, not reported as rolled back blindly', async () => {
    await makeFarm(dbFile);
    const fresh = keep(new PgStore({ url: target }));
    await fresh.migrate();
    // A deferred trigger that ends its own session while COMMIT runs: the client never hears the outcome.
    const c = new pg.Client({ connectionString: target });
    await c.connect();
    try {
      await c.query(`CREATE FUNCTION die_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NULL; END $$`);
      await c.query(`CREATE CONSTRAINT TRIGGER die_at_commit AFTER INSERT ON audit_log DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION die_at_commit()`);
    } finally {
      await c.end();
    }
    const err = (await sqliteToPg({ from: dbFile, to: target, ...quiet }).then(() => null, (e: unknown) => e)) as { code: string; message: string } | null;
    expect(err).toMatchObject({ code: 'failed' });
    expect(err!.message).toContain('during COMMIT');
    expect(err!.message).toContain('checked again on a new connection: the target');
    expect(err!.message).toContain('the copy was not kept');
    expect((await rowsOfPg(target)).builds).toEqual([]);
  }, 120_000);

  it('probes the SQLite file read-only: sees commits by another connection, and leaves a leftover -wal where it was', async () => {
    await makeFarm(dbFile);
    const writer = new DatabaseSync(dbFile);
    writer.exec('CREATE TABLE IF NOT EXISTS scratch (n INTEGER)');
    let n = 0;
    const timer = setInterval(() => writer.prepare('INSERT INTO scratch (n) VALUES (?)').run(n++), 20);
    const lines: string[] = [];
    try {
      expect(await sqliteBeingWritten(dbFile, 500)).toBe(true);
      expect(await migrateMain(['--from', `sqlite:${dbFile}`, '--to', target], { out: (l) => lines.push(l), err: (l) => lines.push(l), env: {} })).toBe(0);
    } finally {
      clearInterval(timer);
    }
    expect(lines.join('\n')).toContain('is being written right now');
    // Quiet now, and a -wal left by a controller that died: the probe must not checkpoint it away.
    const copyDir = join(dir, 'copy');
    mkdirSync(copyDir);
    writer.prepare('INSERT INTO scratch (n) VALUES (?)').run(-1);
    for (const f of ['controller.db', 'controller.db-wal', 'controller.db-shm']) copyFileSync(join(dir, f), join(copyDir, f));
    writer.close();
    const copied = join(copyDir, 'controller.db');
    const bytes = (f: string): string => createHash('sha256').update(readFileSync(f)).digest('hex');
    const [main, wal] = [bytes(copied), bytes(`${copied}-wal`)];
    expect(await sqliteBeingWritten(copied, 100)).toBe(false);
    expect(bytes(copied)).toBe(main);
    expect(existsSync(`${copied}-wal`)).toBe(true);
    expect(bytes(`${copied}-wal`)).toBe(wal);
    // A file that is not a database: a clean refusal, not a stack trace.
    writeFileSync(join(dir, 'junk.db'), 'not a database at all, just text'.repeat(200));
    await expect(sqliteBeingWritten(join(dir, 'junk.db'), 10)).rejects.toMatchObject({ code: 'refused', message: expect.stringContaining('cannot open') });
  }, 120_000);
});
