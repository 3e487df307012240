/**
 * PgDb's connections on a real PostgreSQL: a U+0000 in a text parameter is stored as U+FFFD
 * instead of failing the write (22021); every session, pooled or dedicated, has the settings that
 * end a dead controller's locks within seconds, a URL's own `options` included; and a controller
 * whose database is gone answers 503 STORE_UNAVAILABLE, on which agents move to another controller.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/controller/app.ts';
import { PgDb, SESSION_SETTINGS, isUnavailable } from '../../src/controller/store/pg-db.ts';
import { PG_MIGRATION_LOCK } from '../../src/controller/store/pg-schema.ts';
import { PgStore } from '../../src/controller/store/pg-store.ts';
import { pathOf, ROUTES } from '../../src/protocol/routes.ts';
import { startPostgres, usePostgres, type Postgres } from '../support/postgres.ts';

const pgServer = usePostgres();

/** Runs `fn` on a migrated PgStore on a fresh database, closing and dropping both after, whatever happens. */
async function withStore(fn: (s: PgStore, url: string) => Promise<void>): Promise<void> {
  const url = await pgServer().createDatabase();
  const s = new PgStore({ url, poolMax: 2 });
  try {
    await s.migrate();
    await fn(s, url);
  } finally {
    await s.close();
    await pgServer().dropDatabase(url);
  }
}

describe('a U+0000 in a text parameter', () => {
  it('is stored as U+FFFD: a build with a NUL in a step name and env is created, and its completion message kept', async () => {
    await withStore(async (s) => {
      await s.createWorker({ id: 'w', labels: [], keyHash: 'k', createdAt: 1 });
      const b = await s.createBuild({
        id: 'b1',
        steps: [{ name: 'evil\u0000step', run: 'true' }],
        env: { A: 'x\u0000y' },
        secretEnvNames: [],
        secretEnvSealed: null,
        labels: [],
        artifacts: [],
        timeoutS: 60,
        maxAttempts: 1,
        createdAt: 1,
      });
      // Steps and env are stored as JSON, whose \u0000 escape PostgreSQL's text holds as it is.
      expect(b.steps[0]!.name).toBe('evil\u0000step');
      const c = (await s.claimBuild({ workerId: 'w', workerLabels: [], now: 2, lease: 'l1', buildTokenHash: 't1', attemptBanner: () => '' }))!;
      expect(c.build.id).toBe('b1');
      const ended = await s.finishAttempt({
        buildId: 'b1',
        lease: 'l1',
        now: 3,
        status: 'failed',
        failureReason: 'build_failed',
        exitCode: 1,
        message: "step 'evil\u0000step' exited with 1",
        requeue: false,
      });
      expect(ended).toMatchObject({ status: 'failed', message: "step 'evil\uFFFDstep' exited with 1" });
      expect(await s.getBuild('b1')).toMatchObject({ status: 'failed', message: "step 'evil\uFFFDstep' exited with 1", env: { A: 'x\u0000y' } });
      expect((await s.listAttempts('b1'))[0]).toMatchObject({ message: "step 'evil\uFFFDstep' exited with 1" });
    });
  });

  it('is replaced in a cancel reason, in a transaction and on a dedicated client, in arrays too; bytea keeps its zero bytes', async () => {
    await withStore(async (s, url) => {
      await s.createBuild({ id: 'b2', steps: [{ name: 's', run: 'true' }], env: {}, secretEnvNames: [], secretEnvSealed: null, labels: [], artifacts: [], timeoutS: 60, maxAttempts: 1, createdAt: 1 });
      await s.requestCancel('b2', 'because\u0000');
      expect(await s.getBuild('b2')).toMatchObject({ cancelRequested: true, message: 'because\uFFFD' });

      const db = new PgDb({ url, max: 1 });
      const c = db.client(url);
      try {
        const inTx = await db.tx(async (t) => (await t.query<{ v: string }>('SELECT $1::text AS v', ['a\u0000b'])).rows[0]!.v);
        expect(inTx).toBe('a\uFFFDb');
        const arr = (await db.query<{ v: string[] }>('SELECT $1::text[] AS v', [['\u0000', 'ok']])).rows[0]!.v;
        expect(arr).toEqual(['\uFFFD', 'ok']);
        const named = (await db.query<{ v: string }>('SELECT $1::text AS v', ['n\u0000'])).rows[0]!.v;
        expect(named).toBe('n\uFFFD');
        await c.connect();
        const onClient = (await c.query<{ v: string; b: Buffer }>({ text: 'SELECT $1::text AS v, $2::bytea AS b', values: ['c\u0000', Buffer.from([0, 1, 0])] })).rows[0]!;
        expect(onClient.v).toBe('c\uFFFD');
        expect([...onClient.b]).toEqual([0, 1, 0]);
      } finally {
        await c.end();
        await db.close();
      }
    });
  });
});

describe('session settings', () => {
  // As SHOW prints them: the ms settings with a unit, tcp_user_timeout as a bare number of ms.
  const expected: Record<keyof typeof SESSION_SETTINGS, string> = {
    tcp_keepalives_idle: '5',
    tcp_keepalives_interval: '2',
    tcp_keepalives_count: '3',
    tcp_user_timeout: '10000',
    idle_in_transaction_session_timeout: '30s',
    lock_timeout: '10s',
  };

  it('are in effect on the pool, in a transaction and on a dedicated client', async () => {
    const url = await pgServer().createDatabase();
    const db = new PgDb({ url, max: 2 });
    const c = db.client(url);
    try {
      await c.connect();
      for (const name of Object.keys(SESSION_SETTINGS) as (keyof typeof SESSION_SETTINGS)[]) {
        // tcp_keepalives_* read 0 on a Unix socket only; the test server is on loopback TCP.
        expect((await db.query<Record<string, string>>(`SHOW ${name}`)).rows[0]![name], `pool ${name}`).toBe(expected[name]);
        expect((await c.query<Record<string, string>>(`SHOW ${name}`)).rows[0]![name], `client ${name}`).toBe(expected[name]);
      }
      expect(await db.tx(async (t) => (await t.query<{ lock_timeout: string }>('SHOW lock_timeout')).rows[0]!.lock_timeout)).toBe('10s');
    } finally {
      await c.end();
      await db.close();
      await pgServer().dropDatabase(url);
    }
  });

  it("keep a URL's own options, which win where they name the same setting", async () => {
    const base = await pgServer().createDatabase();
    const url = `${base}?options=${encodeURIComponent('-c lock_timeout=3000 -c statement_timeout=60000')}`;
    const db = new PgDb({ url, max: 1 });
    const c = db.client(url);
    try {
      await c.connect();
      for (const q of [db.pool, c]) {
        const row = (await q.query<{ l: string; s: string; i: string }>(
          "SELECT current_setting('lock_timeout') AS l, current_setting('statement_timeout') AS s, current_setting('idle_in_transaction_session_timeout') AS i",
        )).rows[0];
        expect(row).toEqual({ l: '3s', s: '1min', i: '30s' });
      }
    } finally {
      await c.end();
      await db.close();
      await pgServer().dropDatabase(base);
    }
  });
});

describe('a database that cannot be reached', () => {
  let gone: Postgres | undefined;
  let url = '';
  let store: PgStore | undefined;
  let dir = '';
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'expo-pgdb-test-'));
    gone = await startPostgres();
    url = (await gone.createDatabase()).replace('postgres://expo@', 'postgres://expo:hunter2secret@');
    store = new PgStore({ url, poolMax: 2 });
    await store.migrate();
    await store.createBuild({ id: 'keptbuildaaaaaaa', steps: [{ name: 's', run: 'true' }], env: {}, secretEnvNames: [], secretEnvSealed: null, labels: [], artifacts: [], timeoutS: 60, maxAttempts: 1, createdAt: 1 });
    // The pool's connection is open now: the stop ends it under the store, as a crash or a cut would.
    await gone.stop();
  });
  afterAll(async () => {
    await store?.close();
    await gone?.stop();
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });

  it('makes the store reject with STORE_UNAVAILABLE, the cause kept and no password in the message', async () => {
    for (let i = 0; i < 2; i++) {
      // The first call may meet the pooled connection the server ended, the second a refused connect.
      const err = await store!.getBuild('keptbuildaaaaaaa').then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toMatchObject({ code: 'STORE_UNAVAILABLE', status: 503, retryable: true });
      expect((err as Error).message).not.toContain('hunter2secret');
      expect(isUnavailable((err as Error).cause)).toBe(true);
    }
    await expect(store!.createBuild({ id: 'new', steps: [{ name: 's', run: 'true' }], env: {}, secretEnvNames: [], secretEnvSealed: null, labels: [], artifacts: [], timeoutS: 60, maxAttempts: 1, createdAt: 2 })).rejects.toMatchObject({
      code: 'STORE_UNAVAILABLE',
    });
  });

  it('makes the controller answer 503 STORE_UNAVAILABLE, so agents move to another controller', async () => {
    const controller = await buildApp({
      store: store!,
      adminKey: 'test-admin-key-0123456789',
      heartbeatTimeoutMs: 120_000,
      maxLogBytes: 1 << 20,
      artifactsDir: join(dir, 'artifacts'),
      defaultBuildTimeoutS: 3600,
      logger: pino({ level: 'silent' }),
      passwordCostLog2: 12,
    });
    try {
      const auth = { authorization: 'Bearer test-admin-key-0123456789' };
      const get = await controller.app.inject({ method: 'GET', url: pathOf(ROUTES.getBuild, { id: 'keptbuildaaaaaaa' }), headers: auth });
      expect(get.statusCode).toBe(503);
      expect(get.json()).toMatchObject({ code: 'STORE_UNAVAILABLE' });
      expect(get.body).not.toContain('hunter2secret');
      const submit = await controller.app.inject({ method: 'POST', url: pathOf(ROUTES.submitBuild, {}), headers: auth, payload: { steps: [{ name: 'b', run: 'true' }] } });
      expect(submit.statusCode).toBe(503);
      expect(submit.json()).toMatchObject({ code: 'STORE_UNAVAILABLE' });
    } finally {
      await controller.shutdown();
    }
  });
});

describe('lock_timeout', () => {
  it("does not fail a controller's migrate that waits for another's (the migration lock may rightly be held longer)", async () => {
    const base = await pgServer().createDatabase();
    // A lock_timeout of 200 ms (the URL's own options win over ours), so the wait below outlasts it.
    const url = `${base}?options=${encodeURIComponent('-c lock_timeout=200')}`;
    const holder = new PgDb({ url: base, max: 1 });
    const h = holder.client(base);
    const s = new PgStore({ url, poolMax: 1 });
    try {
      await h.connect();
      await h.query('SELECT pg_advisory_lock($1::bigint)', [PG_MIGRATION_LOCK.toString()]);
      const migrated = s.migrate().then(
        () => null,
        (e: unknown) => e,
      );
      // Until the store waits on the lock, then five times its lock_timeout more.
      for (;;) {
        const waiting = await holder.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted");
        if (waiting.rows[0]!.n > 0) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      await new Promise((r) => setTimeout(r, 1000));
      await h.query('SELECT pg_advisory_unlock($1::bigint)', [PG_MIGRATION_LOCK.toString()]);
      expect(await migrated).toBeNull();
    } finally {
      await s.close();
      await h.end();
      await holder.close();
      await pgServer().dropDatabase(base);
    }
  });
});
