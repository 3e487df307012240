import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { PG_MIGRATIONS } from '../../src/controller/store/pg-schema.ts';
import { PgStore } from '../../src/controller/store/pg-store.ts';
import type { Claim, ClaimRequest, NewBuild } from '../../src/controller/store/store.ts';
import { usePostgres } from '../support/postgres.ts';
import { describeStoreConformance } from './store-conformance.ts';

// One server for the file; every test gets a database of its own.
const pgServer = usePostgres();

describeStoreConformance('PgStore', () => {
  let url: Promise<string> | undefined;
  const stores: PgStore[] = [];
  const openOn = async () => {
    url ??= pgServer().createDatabase();
    const s = new PgStore({ url: await url, poolMax: 4 });
    stores.push(s);
    await s.migrate();
    return s;
  };
  return {
    open: openOn,
    reopen: openOn,
    dispose: async () => {
      for (const s of stores) await s.close();
      if (url !== undefined) await pgServer().dropDatabase(await url);
    },
  };
});

/** Runs `fn` on stores opened (not migrated) on a fresh database, closing them and dropping it after, whatever happens. */
async function withDatabase(count: number, fn: (stores: PgStore[], url: string) => Promise<void>): Promise<void> {
  const url = await pgServer().createDatabase();
  const stores = Array.from({ length: count }, () => new PgStore({ url, poolMax: 8 }));
  try {
    await fn(stores, url);
  } finally {
    for (const s of stores) await s.close();
    await pgServer().dropDatabase(url);
  }
}

async function query<R extends pg.QueryResultRow>(url: string, sql: string): Promise<R[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<R>(sql)).rows;
  } finally {
    await c.end();
  }
}

const newBuild = (id: string, over: Partial<NewBuild> = {}): NewBuild => ({
  id,
  steps: [{ name: 's', run: 'true' }],
  env: {},
  secretEnvNames: [],
  secretEnvSealed: null,
  labels: [],
  artifacts: [],
  timeoutS: 60,
  maxAttempts: 1,
  createdAt: 1,
  ...over,
});
const claimReq = (workerId: string, n: number, over: Partial<ClaimRequest> = {}): ClaimRequest => ({
  workerId,
  workerLabels: [],
  now: 1000 + n,
  lease: `lease-${workerId}-${n}`,
  buildTokenHash: `token-${workerId}-${n}`,
  attemptBanner: (a, m) => `[attempt ${a}/${m}]\n`,
  ...over,
});

describe('PgStore specifics', () => {
  it('records each migration in schema_migrations, and migrating again changes nothing', async () => {
    await withDatabase(1, async ([s], url) => {
      await s!.migrate();
      await s!.migrate();
      const rows = await query<{ version: number; name: string }>(url, 'SELECT version, name FROM schema_migrations ORDER BY version');
      expect(rows).toEqual(PG_MIGRATIONS.map((m) => ({ version: m.version, name: m.name })));
    });
  });

  it('two stores migrating one empty database at once both succeed, and it is migrated once', async () => {
    await withDatabase(2, async (stores, url) => {
      await Promise.all(stores.map((s) => s.migrate()));
      const rows = await query<{ version: number }>(url, 'SELECT version FROM schema_migrations ORDER BY version');
      expect(rows.map((r) => r.version)).toEqual(PG_MIGRATIONS.map((m) => m.version));
      await stores[0]!.createWorker({ id: 'w', labels: [], keyHash: 'k', createdAt: 1 });
      expect((await stores[1]!.getWorker('w'))?.id).toBe('w');
    });
  });

  it('refuses a database from a newer version', async () => {
    await withDatabase(1, async ([s], url) => {
      await s!.migrate();
      await query(url, `INSERT INTO schema_migrations VALUES (99, 'future', 0)`);
      await expect(s!.migrate()).rejects.toMatchObject({ code: 'STORE_FAILED', message: expect.stringMatching(/schema version 99, newer than this controller/) });
    });
  });

  it('keeps working when a newer controller adds columns under it (its prepared statements name their columns)', async () => {
    const url = await pgServer().createDatabase();
    // One connection, so the statements prepared before the change are the ones used after it.
    const s = new PgStore({ url, poolMax: 1 });
    try {
      await s.migrate();
      await s.createWorker({ id: 'w', labels: [], keyHash: 'k', createdAt: 1 });
      await s.createBuild(newBuild('b1'));
      await s.createBuild(newBuild('b2'));
      const c = (await s.claimBuild(claimReq('w', 1)))!;
      expect(await s.getBuild('b1')).toMatchObject({ status: 'assigned' });
      await query(url, `ALTER TABLE builds ADD COLUMN later text; ALTER TABLE workers ADD COLUMN later text; ALTER TABLE attempts ADD COLUMN later text`);
      expect(await s.getBuild('b1')).toMatchObject({ status: 'assigned' });
      expect(await s.getWorker('w')).toMatchObject({ id: 'w' });
      expect(await s.getAttemptByLease('b1', c.attempt.lease)).toMatchObject({ attempt: 1 });
      expect((await s.claimBuild(claimReq('w', 2)))?.build.id).toBe('b2');
      expect(await s.touchBuild('b1', c.attempt.lease, { now: 5 })).toEqual({ status: 'assigned', cancelRequested: false });
    } finally {
      await s.close();
      await pgServer().dropDatabase(url);
    }
  });

  it('names the database without its password when it cannot reach it', async () => {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    const s = new PgStore({ url: 'postgres://expo:hunter2@127.0.0.1:1/nowhere' });
    try {
      const err = (await s.migrate().catch((e: unknown) => e)) as Error & { code?: string };
      expect(err).toMatchObject({ code: 'STORE_UNAVAILABLE' });
      expect(err.message).toContain('127.0.0.1:1/nowhere');
      expect(err.message).not.toContain('hunter2');
    } finally {
      await s.close();
    }
  });

  it('two controllers with 8 claimers between them claim each of 200 builds exactly once', async () => {
    await withDatabase(2, async (stores) => {
      const [a, b] = stores as [PgStore, PgStore];
      await a.migrate();
      await b.migrate();
      await a.createWorker({ id: 'w', labels: [], keyHash: 'k', createdAt: 1 });
      const ids: string[] = [];
      for (let i = 0; i < 200; i++) ids.push((await a.createBuild(newBuild(`b${String(i).padStart(3, '0')}`))).id);
      let n = 0;
      // Each claimer claims until it finds nothing; a null may come while others still hold the
      // last builds, which is why the total is checked, not each claimer's share.
      const claimer = async (s: PgStore): Promise<string[]> => {
        const got: string[] = [];
        for (;;) {
          const c = await s.claimBuild(claimReq('w', n++));
          if (c === null) return got;
          got.push(c.build.id);
        }
      };
      const results = await Promise.all(Array.from({ length: 8 }, (_, i) => claimer(i % 2 ? a : b)));
      const all = results.flat();
      expect(all.length).toBe(200);
      expect(new Set(all).size).toBe(200);
      expect([...all].sort()).toEqual(ids);
      expect(await a.countQueuedBuilds()).toBe(0);
      // One attempt each, so no claim was written twice under another's lock.
      for (const id of ids.slice(0, 20)) expect((await b.listAttempts(id)).length).toBe(1);
    });
  });

  it('builds queued again for a second attempt are claimed once each under concurrency, each log with one banner', async () => {
    await withDatabase(2, async (stores) => {
      const [a, b] = stores as [PgStore, PgStore];
      await a.migrate();
      await a.createWorker({ id: 'w', labels: [], keyHash: 'k', createdAt: 1 });
      const ids: string[] = [];
      for (let i = 0; i < 40; i++) ids.push((await a.createBuild(newBuild(`r${String(i).padStart(3, '0')}`, { maxAttempts: 2 }))).id);
      const firsts = [];
      for (let i = 0; i < 40; i++) firsts.push((await a.claimBuild(claimReq('w', -1 - i)))!);
      for (const c of firsts) {
        await a.finishAttempt({ buildId: c.build.id, lease: c.attempt.lease, now: 2, status: 'failed', failureReason: 'vm_crashed', exitCode: null, message: null, requeue: true });
      }
      // One first attempt among them, so both kinds of claim race together.
      ids.push((await a.createBuild(newBuild('s000'))).id);
      let n = 0;
      const claimer = async (s: PgStore): Promise<string[]> => {
        const got: string[] = [];
        for (let c = await s.claimBuild(claimReq('w', n++)); c !== null; c = await s.claimBuild(claimReq('w', n++))) got.push(c.build.id);
        return got;
      };
      const all = (await Promise.all(Array.from({ length: 8 }, (_, i) => claimer(i % 2 ? a : b)))).flat();
      expect([...all].sort()).toEqual(ids);
      for (const id of ids.slice(0, 5)) {
        expect((await a.readLog(id, 0)).toString()).toBe('[attempt 2/2]\n');
        expect((await a.listAttempts(id)).map((x) => x.attempt)).toEqual([1, 2]);
      }
      expect((await a.readLog('s000', 0)).length).toBe(0);
    });
  });

  it('two controllers ending one attempt at once: exactly one finish wins, and a cancel racing a claim leaves one of them', async () => {
    await withDatabase(2, async (stores) => {
      const [a, b] = stores as [PgStore, PgStore];
      await a.migrate();
      await a.createWorker({ id: 'w', labels: [], keyHash: 'k', createdAt: 1 });
      const claims: Claim[] = [];
      for (let i = 0; i < 30; i++) {
        await a.createBuild(newBuild(`f${String(i).padStart(3, '0')}`));
        claims.push((await a.claimBuild(claimReq('w', i)))!);
      }
      const end = (c: Claim, status: 'succeeded' | 'failed') =>
        ({ buildId: c.build.id, lease: c.attempt.lease, now: 9, status, failureReason: null, exitCode: 0, message: null, requeue: false }) as const;
      const ends = await Promise.all(claims.map((c) => Promise.all([a.finishAttempt(end(c, 'succeeded')), b.finishAttempt(end(c, 'failed'))])));
      for (const [i, [x, y]] of ends.entries()) {
        expect([x, y].filter((r) => r !== null)).toHaveLength(1);
        const winner = (x ?? y)!.status;
        expect((await a.getBuild(claims[i]!.build.id))?.status).toBe(winner);
        expect((await a.listAttempts(claims[i]!.build.id)).map((t) => t.outcome)).toEqual([winner]);
      }
      // A cancel and a claim of the same queued builds: each build is either cancelled or claimed.
      for (let i = 0; i < 30; i++) await a.createBuild(newBuild(`q${String(i).padStart(3, '0')}`));
      const queued = (await a.listBuilds({ status: 'queued', limit: 100 })).map((x) => x.id);
      let n = 100;
      const [cancelled, claimed] = await Promise.all([
        Promise.all(queued.map((id) => b.cancelQueued(id, 10))),
        Promise.all(queued.map(() => a.claimBuild(claimReq('w', n++)))),
      ]);
      const claimedIds = new Set(claimed.filter((c) => c !== null).map((c) => c.build.id));
      for (const [i, id] of queued.entries()) {
        expect(cancelled[i]).toBe(!claimedIds.has(id));
        expect((await a.getBuild(id))?.status).toBe(cancelled[i] ? 'cancelled' : 'assigned');
      }
    });
  });

  it('hands a build only to a worker with every one of its labels, even past builds other claimers hold', async () => {
    await withDatabase(2, async ([a, b]) => {
      await a!.migrate();
      await a!.createWorker({ id: 'mac', labels: ['mac', 'arm'], keyHash: 'k1', createdAt: 1 });
      await a!.createWorker({ id: 'any', labels: [], keyHash: 'k2', createdAt: 1 });
      await a!.createBuild(newBuild('needs-both', { labels: ['mac', 'arm'] }));
      await a!.createBuild(newBuild('needs-x', { labels: ['x'] }));
      await a!.createBuild(newBuild('needs-none'));
      expect((await b!.claimBuild(claimReq('any', 1)))?.build.id).toBe('needs-none');
      expect(await b!.claimBuild(claimReq('any', 2))).toBeNull();
      expect((await a!.claimBuild(claimReq('mac', 3, { workerLabels: ['arm', 'mac'] })))?.build.id).toBe('needs-both');
      expect(await a!.claimBuild(claimReq('mac', 4, { workerLabels: ['arm', 'mac'] }))).toBeNull();
      expect(await a!.countQueuedBuilds()).toBe(1);
    });
  });

  it('a drained or removed worker claims nothing, and an idle poll locks nothing', async () => {
    await withDatabase(1, async ([s], url) => {
      await s!.migrate();
      await s!.createWorker({ id: 'w', labels: [], keyHash: 'k', createdAt: 1 });
      await s!.createBuild(newBuild('b1'));
      await query(url, `UPDATE workers SET drain_requested = 1 WHERE id = 'w'`);
      expect(await s!.claimBuild(claimReq('w', 1))).toBeNull();
      expect(await s!.claimBuild(claimReq('gone', 2))).toBeNull();
      await query(url, `UPDATE workers SET drain_requested = 0 WHERE id = 'w'`);
      expect((await s!.claimBuild(claimReq('w', 3)))?.build.id).toBe('b1');
      // An idle poll (nothing queued) writes nothing: not even a lock on the worker's row.
      const xmax = async () => (await query<{ xmax: string }>(url, `SELECT xmax::text FROM workers WHERE id = 'w'`))[0]!.xmax;
      const before = await xmax();
      expect(await s!.claimBuild(claimReq('w', 4))).toBeNull();
      expect(await xmax()).toBe(before);
    });
  });

  it('a drain that commits while a claim waits for the worker row wins: the claim takes nothing', async () => {
    await withDatabase(1, async ([s], url) => {
      await s!.migrate();
      await s!.createWorker({ id: 'w', labels: [], keyHash: 'k', createdAt: 1 });
      await s!.createBuild(newBuild('b1'));
      const operator = new pg.Client({ connectionString: url });
      await operator.connect();
      try {
        await operator.query('BEGIN');
        await operator.query(`UPDATE workers SET drain_requested = 1 WHERE id = 'w'`);
        let settled = false;
        const claim = s!.claimBuild(claimReq('w', 1)).finally(() => (settled = true));
        // The claim read the drain flag before the drain committed: it waits on the row (a claim
        // that does not wait has settled, and is checked below all the same).
        while (!settled) {
          const waiting = await query<{ n: number }>(url, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()`);
          if (waiting[0]!.n > 0) break;
          await new Promise((r) => setTimeout(r, 20));
        }
        await operator.query('COMMIT');
        expect(await claim).toBeNull();
        expect(await s!.getBuild('b1')).toMatchObject({ status: 'queued', attempt: 0 });
      } finally {
        await operator.end();
      }
    });
  });

  it('a heartbeat of a build row another transaction holds does not hold up the beats batched with it; it lands once the row is free, its time never going back', async () => {
    await withDatabase(1, async ([s], url) => {
      await s!.migrate();
      await s!.createWorker({ id: 'w', labels: [], keyHash: 'k', createdAt: 1 });
      for (const id of ['b1', 'b2', 'b3']) await s!.createBuild(newBuild(id));
      const leases: Record<string, string> = {};
      for (let n = 1; n <= 3; n++) {
        const c = (await s!.claimBuild(claimReq('w', n)))!;
        leases[c.build.id] = c.attempt.lease;
      }
      const other = new pg.Client({ connectionString: url });
      await other.connect();
      try {
        await other.query('BEGIN');
        await other.query(`SELECT id FROM builds WHERE id = 'b2' FOR UPDATE`);
        let heldSettled = false;
        // One turn: one batch.
        const [one, held, three] = [
          s!.touchBuild('b1', leases.b1!, { now: 5000 }),
          s!.touchBuild('b2', leases.b2!, { now: 5000, progress: 2 }).finally(() => (heldSettled = true)),
          s!.touchBuild('b3', 'not-its-lease', { now: 5000 }),
        ];
        expect(await one).toEqual({ status: 'assigned', cancelRequested: false });
        expect(await three).toBeNull();
        // The others are answered while b2's row is still held: its beat waits on its own.
        expect(heldSettled).toBe(false);
        // A later beat of b2 (another batch) waits too; once the row is free the two land in
        // either order, and the older may not move the time or the progress back.
        const later = s!.touchBuild('b2', leases.b2!, { now: 6000, progress: 3 });
        await new Promise((r) => setTimeout(r, 50));
        await other.query('COMMIT');
        expect(await held).toEqual({ status: 'assigned', cancelRequested: false });
        expect(await later).toEqual({ status: 'assigned', cancelRequested: false });
        const rows = await query<{ id: string; last_heartbeat_at: string; progress: number | null }>(url, `SELECT id, last_heartbeat_at::text, progress FROM builds ORDER BY id`);
        expect(rows.map((r) => [r.id, Number(r.last_heartbeat_at), r.progress])).toEqual([
          ['b1', 5000, null],
          ['b2', 6000, 3],
          ['b3', 1003, null],
        ]);
      } finally {
        await other.end();
      }
    });
  });

  it('two appenders at the same offset on two controllers: one appends, the other conflicts or repeats', async () => {
    await withDatabase(2, async ([a, b]) => {
      await a!.migrate();
      await a!.createBuild(newBuild('b1'));
      for (let i = 0; i < 20; i++) {
        const at = (await a!.getBuild('b1'))!.logBytes;
        const [ra, rb] = await Promise.all([a!.appendLog('b1', at, Buffer.from(`a${i}\n`), 1 << 20), b!.appendLog('b1', at, Buffer.from(`b${i}\n`), 1 << 20)]);
        expect([ra.kind, rb.kind].sort()).toEqual(['appended', 'conflict']);
      }
      const log = (await b!.readLog('b1', 0)).toString();
      expect(log.split('\n').filter(Boolean)).toHaveLength(20);
    });
  });

  it('takes PostgreSQL disk_full for a full disk and io_error for a possible one, and nothing else', async () => {
    await withDatabase(1, async ([s]) => {
      const full = Object.assign(new Error('could not extend file'), { code: '53100' });
      const io = Object.assign(new Error('could not read block'), { code: '58030' });
      expect(s!.diskError(full)).toMatchObject({ kind: 'full' });
      expect(s!.diskError(io)).toMatchObject({ kind: 'io' });
      expect(s!.diskError(Object.assign(new Error('dup'), { code: '23505' }))).toBeNull();
      expect(s!.diskError(null)).toBeNull();
    });
  });
});
