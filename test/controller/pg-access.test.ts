/**
 * PgAccess on a real PostgreSQL: what only several controllers on one database can do (two
 * creating one user, two setting one role, a removal waiting for a claim's row lock). The
 * port's access methods themselves are held to the conformance suite (store-conformance.ts:
 * users, sessions, tokens, audit, drainRemove), which runs on the whole PgStore in
 * pg-store.test.ts.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PgAccess } from '../../src/controller/store/pg-access.ts';
import { PgDb } from '../../src/controller/store/pg-db.ts';
import { PG_MIGRATIONS } from '../../src/controller/store/pg-schema.ts';
import { usePostgres } from '../support/postgres.ts';

const pgServer = usePostgres();
let url: string;
let db: PgDb;
let s: PgAccess;

beforeEach(async () => {
  url = await pgServer().createDatabase();
  db = new PgDb({ url, max: 4 });
  for (const m of PG_MIGRATIONS) await db.query(m.sql);
  await db.query(`INSERT INTO workers (id, labels, key_hash, created_at) VALUES ('w1', '["mac"]', 'k1', 1), ('w2', '[]', 'k2', 1)`);
  s = new PgAccess(db);
});
afterEach(async () => {
  await db?.close();
  await pgServer().dropDatabase(url);
});

const user = (name: string, role: 'viewer' | 'operator' | 'admin' = 'viewer') => ({ name, role, passwordHash: `scrypt$12$8$1$salt-${name}$key-${name}`, createdAt: 100 });
const addBuild = async (id: string, workerId: string, status: string): Promise<void> => {
  await db.query(`INSERT INTO builds (id, status, steps, env, labels, timeout_s, max_attempts, worker_id, created_at) VALUES ($1, $2, '[]', '{}', '[]', 60, 1, $3, 1)`, [id, status, workerId]);
};

describe('PgAccess', () => {
  it('of two controllers adding one user at once, one adds it and the other is told USER_EXISTS', async () => {
    const other = new PgAccess(db);
    const results = await Promise.allSettled([s.createUser(user('kim', 'admin')), other.createUser(user('kim', 'viewer'))]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(results.find((r) => r.status === 'rejected')).toMatchObject({ reason: { code: 'USER_EXISTS' } });
  });

  it("of two controllers setting one user's role at once, each answers a different role before, so neither change is lost unseen", async () => {
    await s.createUser(user('gus', 'operator'));
    const befores = await Promise.all([s.setUserRole('gus', 'admin'), new PgAccess(db).setUserRole('gus', 'viewer')]);
    expect(new Set(befores).size).toBe(2);
    expect(befores).toContain('operator');
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
