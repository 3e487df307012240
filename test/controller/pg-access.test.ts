/**
 * PgAccess on a real PostgreSQL, method by method, with the conformance suite's expectations
 * (store-conformance.ts: users, sessions, expiredSessions, userRole, tokens, audit, drainRemove).
 * Workers and builds are written with SQL here, so these tests hold PgAccess alone to the port;
 * the conformance suite runs the same on the whole PgStore. Also: what only several controllers
 * on one database can do (two creating one user, two setting one role).
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { PgAccess } from '../../src/controller/store/pg-access.ts';
import { PgDb } from '../../src/controller/store/pg-db.ts';
import { PG_MIGRATIONS } from '../../src/controller/store/pg-schema.ts';
import type { ApiTokenRecord } from '../../src/controller/store/store.ts';
import { startPostgres, type Postgres } from '../support/postgres.ts';

let pgServer: Postgres;
let url: string;
let db: PgDb;
let s: PgAccess;

beforeAll(async () => {
  pgServer = await startPostgres();
}, 120_000);
afterAll(async () => {
  await pgServer?.stop();
});
beforeEach(async () => {
  url = await pgServer.createDatabase();
  db = new PgDb({ url, max: 4 });
  for (const m of PG_MIGRATIONS) await db.query(m.sql);
  await db.query(`INSERT INTO workers (id, labels, key_hash, created_at) VALUES ('w1', '["mac"]', 'k1', 1), ('w2', '[]', 'k2', 1)`);
  s = new PgAccess(db);
});
afterEach(async () => {
  await db?.close();
  await pgServer.dropDatabase(url);
});

const user = (name: string, role: 'viewer' | 'operator' | 'admin' = 'viewer') => ({ name, role, passwordHash: `scrypt$12$8$1$salt-${name}$key-${name}`, createdAt: 100 });
const apiToken = (id: string, over: Partial<ApiTokenRecord> = {}): ApiTokenRecord => ({
  id,
  name: `name ${id}`,
  role: 'viewer',
  owner: null,
  secretHash: `secret-${id}`,
  createdAt: 100,
  expiresAt: 10_000,
  lastUsedAt: null,
  revokedAt: null,
  adminEpoch: null,
  ...over,
});
const addBuild = async (id: string, workerId: string, status: string): Promise<void> => {
  await db.query(`INSERT INTO builds (id, status, steps, env, labels, timeout_s, max_attempts, worker_id, created_at) VALUES ($1, $2, '[]', '{}', '[]', 60, 1, $3, 1)`, [id, status, workerId]);
};

describe('PgAccess', () => {
  it('adds a user once by name, lists users by name, stamps sign-ins, replaces a password ending every session of that user only, deletes a user with their sessions and tokens', async () => {
    expect(await s.createUser(user('bob', 'operator'))).toEqual({ ...user('bob', 'operator'), lastSignInAt: null });
    await s.createUser(user('alice', 'admin'));
    await s.createUser(user('Zed'));
    await expect(s.createUser(user('bob', 'admin'))).rejects.toMatchObject({ code: 'USER_EXISTS' });
    // Byte order, as SQLite sorts: upper case first.
    expect((await s.listUsers()).map((u) => [u.name, u.role])).toEqual([['Zed', 'viewer'], ['alice', 'admin'], ['bob', 'operator']]);
    expect(await s.getUser('nobody')).toBeNull();
    await s.recordSignIn('bob', 500);
    expect(await s.getUser('bob')).toMatchObject({ lastSignInAt: 500, role: 'operator' });

    await s.createSession({ idHash: 'sb1', userName: 'bob', createdAt: 1, expiresAt: 9000 });
    await s.createSession({ idHash: 'sb2', userName: 'bob', createdAt: 1, expiresAt: 9000 });
    await s.createSession({ idHash: 'sa1', userName: 'alice', createdAt: 1, expiresAt: 9000 });
    expect(await s.setUserPassword('bob', 'scrypt$new')).toBe(true);
    expect(await s.setUserPassword('nobody', 'scrypt$new')).toBe(false);
    expect((await s.getUser('bob'))?.passwordHash).toBe('scrypt$new');
    expect(await s.getSession('sb1', 10)).toBeNull();
    expect(await s.getSession('sb2', 10)).toBeNull();
    expect((await s.getSession('sa1', 10))?.user.name).toBe('alice');

    await s.createSession({ idHash: 'sb3', userName: 'bob', createdAt: 1, expiresAt: 9000 });
    await s.createApiToken(apiToken('tok_b', { owner: 'bob' }));
    await s.createApiToken(apiToken('tok_a', { owner: 'alice' }));
    expect(await s.deleteUser('bob')).toBe(true);
    expect(await s.deleteUser('bob')).toBe(false);
    expect(await s.getUser('bob')).toBeNull();
    expect(await s.getSession('sb3', 10)).toBeNull();
    expect(await s.getApiTokenBySecretHash('secret-tok_b')).toBeNull();
    expect((await s.getApiTokenBySecretHash('secret-tok_a'))?.owner?.name).toBe('alice');
  });

  it('of two controllers adding one user at once, one adds it and the other is told USER_EXISTS', async () => {
    const other = new PgAccess(db);
    const results = await Promise.allSettled([s.createUser(user('kim', 'admin')), other.createUser(user('kim', 'viewer'))]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(results.find((r) => r.status === 'rejected')).toMatchObject({ reason: { code: 'USER_EXISTS' } });
  });

  it("finds a session with its user until it expires (then deletes it), and deletes one session or all of a user's", async () => {
    await s.createUser(user('carol'));
    await s.createSession({ idHash: 'h1', userName: 'carol', createdAt: 1, expiresAt: 1000 });
    await s.createSession({ idHash: 'h2', userName: 'carol', createdAt: 1, expiresAt: 5000 });
    await s.createSession({ idHash: 'h3', userName: 'carol', createdAt: 1, expiresAt: 5000 });
    expect(await s.getSession('h1', 999)).toEqual({
      session: { idHash: 'h1', userName: 'carol', createdAt: 1, expiresAt: 1000 },
      user: { ...user('carol'), lastSignInAt: null },
    });
    expect(await s.getSession('h1', 1000)).toBeNull();
    expect(await s.getSession('h1', 10)).toBeNull();
    expect(await s.getSession('unknown', 10)).toBeNull();
    expect(await s.deleteSession('h2')).toBe(true);
    expect(await s.deleteSession('h2')).toBe(false);
    expect(await s.getSession('h2', 10)).toBeNull();
    await s.createSession({ idHash: 'h4', userName: 'carol', createdAt: 1, expiresAt: 5000 });
    expect(await s.deleteSessionsOfUser('carol')).toBe(2);
    expect(await s.deleteSessionsOfUser('carol')).toBe(0);
    expect(await s.getSession('h3', 10)).toBeNull();
    // A session for nobody is refused by the foreign key.
    await expect(s.createSession({ idHash: 'fk', userName: 'nobody', createdAt: 1, expiresAt: 5000 })).rejects.toThrow();
  });

  it('purges every expired session and keeps the live ones', async () => {
    await s.createUser(user('fay'));
    await s.createSession({ idHash: 'e1', userName: 'fay', createdAt: 1, expiresAt: 1000 });
    await s.createSession({ idHash: 'e2', userName: 'fay', createdAt: 1, expiresAt: 2000 });
    await s.createSession({ idHash: 'e3', userName: 'fay', createdAt: 1, expiresAt: 2001 });
    expect(await s.deleteExpiredSessions(2000)).toBe(2);
    expect(await s.deleteExpiredSessions(2000)).toBe(0);
    expect((await s.getSession('e3', 1500))?.session.idHash).toBe('e3');
    expect(await s.getSession('e1', 500)).toBeNull();
    expect(await s.getSession('e2', 500)).toBeNull();
  });

  it("sets a user's role and answers the role before (null for no such user)", async () => {
    await s.createUser(user('gus', 'admin'));
    expect(await s.setUserRole('gus', 'viewer')).toBe('admin');
    expect(await s.getUser('gus')).toMatchObject({ role: 'viewer' });
    expect(await s.setUserRole('gus', 'operator')).toBe('viewer');
    expect(await s.setUserRole('nobody', 'admin')).toBeNull();
    expect(await s.getUser('nobody')).toBeNull();
    // Two at once: each answers a different "before", so neither change is lost unseen.
    const befores = await Promise.all([s.setUserRole('gus', 'admin'), s.setUserRole('gus', 'viewer')]);
    expect(new Set(befores).size).toBe(2);
    expect(befores).toContain('operator');
  });

  it('finds API tokens by secret digest whatever their state with their owner, lists all, an owner\'s or the ownerless newest first, revokes once, stamps last use', async () => {
    await s.createUser(user('dave', 'operator'));
    await s.createApiToken(apiToken('tok_1', { owner: 'dave', createdAt: 100 }));
    await s.createApiToken(apiToken('tok_2', { owner: null, createdAt: 200, role: 'admin', adminEpoch: 'epoch-1' }));
    await s.createApiToken(apiToken('tok_3', { owner: 'dave', createdAt: 300, expiresAt: 50 }));
    expect(await s.getApiTokenBySecretHash('secret-tok_1')).toEqual({ token: apiToken('tok_1', { owner: 'dave', createdAt: 100 }), owner: { ...user('dave', 'operator'), lastSignInAt: null } });
    expect(await s.getApiTokenBySecretHash('secret-tok_2')).toMatchObject({ token: { id: 'tok_2', role: 'admin', owner: null, adminEpoch: 'epoch-1' }, owner: null });
    expect((await s.getApiTokenBySecretHash('secret-tok_3'))?.token.id).toBe('tok_3');
    expect(await s.getApiTokenBySecretHash('nope')).toBeNull();
    expect(await s.getApiToken('tok_2')).toMatchObject({ name: 'name tok_2' });
    expect(await s.getApiToken('tok_none')).toBeNull();
    expect((await s.listApiTokens()).map((t) => t.id)).toEqual(['tok_3', 'tok_2', 'tok_1']);
    expect((await s.listApiTokens('dave')).map((t) => t.id)).toEqual(['tok_3', 'tok_1']);
    expect((await s.listApiTokens(null)).map((t) => t.id)).toEqual(['tok_2']);
    expect(await s.listApiTokens('nobody')).toEqual([]);
    await expect(s.createApiToken(apiToken('tok_1'))).rejects.toMatchObject({ code: 'STORE_CONFLICT' });

    expect(await s.revokeApiToken('tok_1', 700)).toBe(true);
    expect(await s.revokeApiToken('tok_1', 800)).toBe(false);
    expect(await s.revokeApiToken('tok_none', 800)).toBe(false);
    expect(await s.getApiToken('tok_1')).toMatchObject({ revokedAt: 700 });
    await s.touchApiToken('tok_2', 900);
    expect(await s.getApiToken('tok_2')).toMatchObject({ lastUsedAt: 900, revokedAt: null });
  });

  it('appends audit entries and lists them newest first, paged below an id and filtered by action', async () => {
    expect(await s.listAudit({ limit: 10 })).toEqual([]);
    await s.appendAudit({ at: 1, actor: 'admin key', action: 'user.add', target: 'erin', detail: 'role viewer' });
    await s.appendAudit({ at: 2, actor: 'user erin', action: 'build.cancel', target: 'b1', detail: null });
    await s.appendAudit({ at: 3, actor: 'user erin', action: 'build.cancel', target: 'b2', detail: null });
    const all = await s.listAudit({ limit: 10 });
    expect(all.map((e) => e.target)).toEqual(['b2', 'b1', 'erin']);
    expect(all[2]).toEqual({ id: all[2]!.id, at: 1, actor: 'admin key', action: 'user.add', target: 'erin', detail: 'role viewer' });
    expect(typeof all[2]!.id).toBe('number');
    expect(all[0]!.id).toBeGreaterThan(all[1]!.id);
    expect((await s.listAudit({ limit: 2 })).map((e) => e.target)).toEqual(['b2', 'b1']);
    expect((await s.listAudit({ limit: 10, beforeId: all[1]!.id })).map((e) => e.target)).toEqual(['erin']);
    expect((await s.listAudit({ limit: 10, action: 'build.cancel' })).map((e) => e.target)).toEqual(['b2', 'b1']);
    expect((await s.listAudit({ limit: 10, action: 'build.cancel', beforeId: all[0]!.id })).map((e) => e.target)).toEqual(['b1']);
  });

  it("sets and clears a worker's drain; removes a worker unless it holds an active build, its key gone and its finished builds keeping its id", async () => {
    const drain = async (id: string) => (await db.query<{ drain_requested: number }>('SELECT drain_requested FROM workers WHERE id = $1', [id])).rows[0]?.drain_requested;
    expect(await s.setWorkerDrainRequested('w1', true)).toBe(true);
    expect(await drain('w1')).toBe(1);
    expect(await s.setWorkerDrainRequested('w1', false)).toBe(true);
    expect(await drain('w1')).toBe(0);
    expect(await s.setWorkerDrainRequested('nobody', true)).toBe(false);

    await addBuild('done', 'w2', 'succeeded');
    await addBuild('active', 'w2', 'running');
    await db.query(`INSERT INTO attempts (build_id, attempt, worker_id, lease, build_token_hash, claimed_at, ended_at, outcome, log_offset) VALUES ('done', 1, 'w2', 'l1', 't1', 1, 2, 'succeeded', 0)`);
    expect(await s.deleteWorker('w2')).toBe('busy');
    expect(await drain('w2')).toBe(0);
    await db.query(`UPDATE builds SET status = 'failed' WHERE id = 'active'`);
    expect(await s.deleteWorker('w2')).toBe('removed');
    expect(await s.deleteWorker('w2')).toBe('missing');
    expect((await db.query('SELECT 1 FROM workers WHERE key_hash = $1', ['k2'])).rowCount).toBe(0);
    expect((await db.query(`SELECT worker_id FROM builds WHERE id = 'done'`)).rows).toEqual([{ worker_id: 'w2' }]);
    expect((await db.query(`SELECT worker_id FROM attempts WHERE build_id = 'done'`)).rows).toEqual([{ worker_id: 'w2' }]);
    await expect(s.createSession({ idHash: 'fk-check', userName: 'nobody', createdAt: 8004, expiresAt: 9000 })).rejects.toThrow();
    expect(await s.deleteWorker('w1')).toBe('removed');
    expect((await db.query('SELECT id FROM workers')).rows).toEqual([]);
  });

  it('waits for a transaction holding the worker before deciding it is busy', async () => {
    // A claim (another controller) holds the worker's row and assigns it a build; the removal
    // started meanwhile must see the build once the claim commits, not remove a busy worker.
    await addBuild('q1', 'w1', 'queued');
    const claim = await db.pool.connect();
    try {
      await claim.query('BEGIN');
      await claim.query(`SELECT 1 FROM workers WHERE id = 'w1' FOR UPDATE`);
      await claim.query(`UPDATE builds SET status = 'assigned' WHERE id = 'q1'`);
      const removal = s.deleteWorker('w1');
      // The removal is blocked on the row lock: it shows as waiting in pg_stat_activity.
      await expect.poll(async () => (await db.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()`)).rows[0]!.n, { timeout: 30_000 }).toBe(1);
      await claim.query('COMMIT');
      expect(await removal).toBe('busy');
    } finally {
      claim.release();
    }
  });
});
