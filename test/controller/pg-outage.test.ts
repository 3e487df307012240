/**
 * A PostgreSQL that goes away, on a real server behind a proxy the test cuts or black-holes:
 * the watchdog grants its grace again after an outage (no controller could watch, no heartbeat
 * could be written); a query on a connection that never answers fails STORE_UNAVAILABLE after
 * the pool's query timeout rather than the ~15 min of TCP retransmission; the LISTEN connection
 * is checked, dropped and made again, with a synthetic `queued`. The cluster's clock check and
 * its lead: a skewed controller does not lead; one whose watchdog keeps failing hands the lead on.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/controller/app.ts';
import type { ClusterEvent } from '../../src/controller/cluster.ts';
import { leadBoundMs, PgCluster } from '../../src/controller/store/pg-cluster.ts';
import { PgDb } from '../../src/controller/store/pg-db.ts';
import { PgStore } from '../../src/controller/store/pg-store.ts';
import { ControllerMetrics } from '../../src/controller/metrics.ts';
import { FAILED_SWEEPS_TO_RESIGN, Watchdog, type WatchdogOptions } from '../../src/controller/watchdog.ts';
import { graceFrom, maxClockSkewMs } from '../../src/monitor/watchdog-policy.ts';
import { pathOf, ROUTES } from '../../src/protocol/routes.ts';
import { startPostgres, type Postgres } from '../support/postgres.ts';
import { startStallProxy } from '../support/stall-proxy.ts';
import { startTcpProxy } from '../support/tcp-proxy.ts';

const ADMIN_KEY = 'admin-key-0123456789abcdef0123456789';
const admin = { authorization: `Bearer ${ADMIN_KEY}` };
const WAIT_MS = 30_000;

let pgServer: Postgres;
beforeAll(async () => {
  pgServer = await startPostgres();
});
afterAll(async () => {
  await pgServer?.stop();
});
let cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  cleanups = [];
});

const viaPort = (url: string, port: number) => url.replace(`:${pgServer.port}/`, `:${port}/`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Resolves once `cond` holds, checked every 50 ms; rejects after `ms`. */
async function until(cond: () => boolean | Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await sleep(50);
  }
}

/** A logger whose lines the test reads. */
function recordingLogger() {
  const lines: { level: number; msg: string }[] = [];
  const logger = pino({ level: 'debug' }, { write: (l: string) => void lines.push(JSON.parse(l) as { level: number; msg: string }) });
  return { logger, lines };
}

describe('the watchdog after an outage of the database', () => {
  it('fails nothing within one timeout after the database returns, then judges as before', async () => {
    const url = await pgServer.createDatabase();
    cleanups.push(() => pgServer.dropDatabase(url));
    const proxy = await startTcpProxy(pgServer.port);
    cleanups.push(() => proxy.close());
    const store = new PgStore({ url: viaPort(url, proxy.port), poolMax: 2 });
    cleanups.push(() => store.close());
    await store.migrate();
    const T = 2000;
    const dir = mkdtempSync(join(tmpdir(), 'expo-pg-outage-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const c = await buildApp({
      store,
      adminKey: ADMIN_KEY,
      heartbeatTimeoutMs: T,
      maxLogBytes: 1 << 20,
      artifactsDir: join(dir, 'artifacts'),
      defaultBuildTimeoutS: 3600,
      logger: pino({ level: 'silent' }),
      // A controller up for an hour: its own start grants no grace.
      startedAt: Date.now() - 3600_000,
      storeUnavailableAt: () => store.db.lastUnavailableAt,
    });
    cleanups.push(() => c.shutdown());
    const post = (path: string, headers: Record<string, string>, body: unknown) => c.app.inject({ method: 'POST', url: path, headers, payload: body as object });
    const enrolled = await post(pathOf(ROUTES.createWorker, {}), admin, { id: 'mac-1' });
    const auth = { authorization: `Bearer ${(enrolled.json() as { apiKey: string }).apiKey}` };
    const b = (await post(pathOf(ROUTES.submitBuild, {}), admin, { steps: [{ name: 'build', run: 'true' }] })).json() as { id: string };
    const claim = (await post(pathOf(ROUTES.poll, { id: 'mac-1' }), auth, { slotsFree: 1, runningBuilds: [], waitS: 0 })).json() as { lease: string };
    expect((await post(pathOf(ROUTES.phase, { id: b.id }), auth, { lease: claim.lease, phase: 'running' })).statusCode).toBe(200);
    const lastBeat = Date.now();

    // The database goes away for longer than the timeout: every request (the agents' beats) fails meanwhile.
    await proxy.cut();
    while (Date.now() - lastBeat <= T + 500) {
      const res = await c.app.inject({ method: 'GET', url: pathOf(ROUTES.getBuild, { id: b.id }), headers: admin });
      expect(res.json()).toMatchObject({ code: 'STORE_UNAVAILABLE' });
      await sleep(200);
    }
    await proxy.restore();
    // Back: the first sweep sees a heartbeat older than T, and must not act on it.
    expect(await c.watchdog.sweep(Date.now())).toEqual({ builds: 0, workers: 0 });
    const got = await c.app.inject({ method: 'GET', url: pathOf(ROUTES.getBuild, { id: b.id }), headers: admin });
    expect(got.json()).toMatchObject({ status: 'running' });
    // The grace is one timeout, not forever: a build still silent past it fails.
    expect(await c.watchdog.sweep(Date.now() + T + 1000)).toMatchObject({ builds: 1, workers: 1 });
  });

  it('counts the grace from the later of the start and the last unavailability, read at each sweep', () => {
    let unavailable = Number.NEGATIVE_INFINITY;
    const p = graceFrom(10_000, 1_000, () => unavailable);
    expect(p.controllerStartedAt).toBe(1_000);
    unavailable = 50_000;
    expect(p.controllerStartedAt).toBe(50_000);
    expect(graceFrom(10_000, 1_000).controllerStartedAt).toBe(1_000);
    expect(maxClockSkewMs(120_000)).toBe(6_000);
    expect(maxClockSkewMs(10_000)).toBe(2_000);
  });
});

describe('a connection that never answers', () => {
  it('fails a pooled query STORE_UNAVAILABLE after the query timeout, drops the connection, and records the time', async () => {
    const url = await pgServer.createDatabase();
    cleanups.push(() => pgServer.dropDatabase(url));
    const proxy = await startStallProxy(pgServer.port);
    cleanups.push(() => proxy.close());
    const db = new PgDb({ url: viaPort(url, proxy.port), max: 1, queryTimeoutMs: 1000 });
    cleanups.push(() => db.close());
    expect((await db.query<{ one: number }>('SELECT 1 AS one')).rows[0]?.one).toBe(1);
    expect(db.lastUnavailableAt).toBe(Number.NEGATIVE_INFINITY);
    proxy.stall();
    await expect(db.query('SELECT 1')).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE', message: expect.stringMatching(/Query read timeout/) });
    expect(db.lastUnavailableAt).toBeGreaterThan(Number.NEGATIVE_INFINITY);
    proxy.heal();
    // The one pooled connection was black-holed with a query on it: had it been kept, this would hang.
    await until(async () => (await db.query('SELECT 1').then(() => true, () => false)), WAIT_MS);
    expect(db.pool.totalCount).toBeLessThanOrEqual(1);
  });

  it('makes the cluster drop its LISTEN connection, connect again and deliver a synthetic queued', async () => {
    const url = await pgServer.createDatabase();
    cleanups.push(() => pgServer.dropDatabase(url));
    const proxy = await startStallProxy(pgServer.port);
    cleanups.push(() => proxy.close());
    const direct = new PgDb({ url });
    cleanups.push(() => direct.close());
    const db = new PgDb({ url: viaPort(url, proxy.port) });
    cleanups.push(() => db.close());
    const { logger, lines } = recordingLogger();
    const cluster = new PgCluster({ db, url: viaPort(url, proxy.port), logger, listenCheckMs: 200, leaderCheckMs: 100 });
    cleanups.push(() => cluster.stop());
    const seen: ClusterEvent[] = [];
    cluster.subscribe((e) => seen.push(e));
    await cluster.start(() => undefined);
    proxy.stall();
    await until(() => lines.some((l) => /lost the cluster event connection/.test(l.msg)), WAIT_MS);
    proxy.heal();
    await until(() => seen.some((e) => e.kind === 'queued'), WAIT_MS);
    // And events flow again: one from another controller arrives.
    await until(async () => {
      await direct.query('SELECT pg_notify($1, $2)', ['expo_worker', JSON.stringify({ o: 'other', e: { kind: 'build', buildId: 'b1' } })]);
      await sleep(100);
      return seen.some((e) => e.kind === 'build');
    }, WAIT_MS);
  });
});

describe('the watchdog on a leader whose pool is broken', () => {
  it('calls onFailing after 3 failed sweeps in a row, and again after 3 more', async () => {
    const url = await pgServer.createDatabase();
    cleanups.push(() => pgServer.dropDatabase(url));
    const proxy = await startTcpProxy(pgServer.port);
    cleanups.push(() => proxy.close());
    const store = new PgStore({ url: viaPort(url, proxy.port), poolMax: 2 });
    cleanups.push(() => store.close());
    await store.migrate();
    await proxy.cut();
    let errors = 0;
    const failing: number[] = [];
    const w = new Watchdog({
      store,
      service: { giveUp: () => Promise.reject(new Error('not reached')), waits: { isWaiting: () => false }, liveness: { heartbeatTimeoutMs: 400, pollWaitMaxMs: 200, prepareTimeoutMs: 600_000 } } as unknown as WatchdogOptions['service'],
      policy: graceFrom(400, 0),
      now: Date.now,
      onError: () => void errors++,
      onFailing: () => void failing.push(errors),
    });
    cleanups.push(() => w.stop());
    w.start();
    await until(() => failing.length >= 2, WAIT_MS);
    expect(failing.slice(0, 2)).toEqual([FAILED_SWEEPS_TO_RESIGN, 2 * FAILED_SWEEPS_TO_RESIGN]);
  });
});

describe('the clock skew gauge', () => {
  it('reads the cluster’s measure at scrape time, and 0 when there is none', async () => {
    let skew: number | null = 1500;
    const m = new ControllerMetrics({ heartbeatTimeoutMs: 120_000, clockSkewMs: () => skew });
    expect(await m.registry.metrics()).toMatch(/^expo_worker_controller_clock_skew_seconds 1\.5$/m);
    skew = null;
    expect(await m.registry.metrics()).toMatch(/^expo_worker_controller_clock_skew_seconds 0$/m);
  });
});

describe('the lead', () => {
  it('is bounded by at least 5 s per check, so an event-loop stall does not cost it', () => {
    expect(leadBoundMs(1000)).toBe(5000);
    expect(leadBoundMs(100)).toBe(5000);
    expect(leadBoundMs(3000)).toBe(9000);
  });

  it('is not taken by a controller whose clock is off the database’s, and is taken by one whose clock agrees', async () => {
    const url = await pgServer.createDatabase();
    cleanups.push(() => pgServer.dropDatabase(url));
    const db = new PgDb({ url });
    cleanups.push(() => db.close());
    const { logger, lines } = recordingLogger();
    const skewed = new PgCluster({ db, url, logger, leaderCheckMs: 50, now: () => Date.now() + 60_000, maxSkewMs: 2000 });
    cleanups.push(() => skewed.stop());
    const leads: boolean[] = [];
    await skewed.start((l) => leads.push(l));
    expect(skewed.clockSkewMs).toBeGreaterThan(55_000);
    expect(skewed.clockSkewMs).toBeLessThan(65_000);
    await until(() => lines.some((l) => /not leading: this controller's clock is/.test(l.msg)), WAIT_MS);
    const fine = new PgCluster({ db, url, logger: pino({ level: 'silent' }), leaderCheckMs: 50 });
    cleanups.push(() => fine.stop());
    await fine.start(() => undefined);
    await until(() => fine.leading, WAIT_MS);
    expect(Math.abs(fine.clockSkewMs ?? Number.NaN)).toBeLessThan(2000);
    expect(leads).toEqual([]);
  });

  it('is handed on by a leader that resigns (its watchdog keeps failing), which sits out one check', async () => {
    const url = await pgServer.createDatabase();
    cleanups.push(() => pgServer.dropDatabase(url));
    const db = new PgDb({ url });
    cleanups.push(() => db.close());
    const logger = pino({ level: 'silent' });
    const a = new PgCluster({ db, url, logger, leaderCheckMs: 50 });
    cleanups.push(() => a.stop());
    await a.start(() => undefined);
    await until(() => a.leading, WAIT_MS);
    const b = new PgCluster({ db, url, logger, leaderCheckMs: 50 });
    cleanups.push(() => b.stop());
    await b.start(() => undefined);
    a.resign();
    expect(a.leading).toBe(false);
    // The lock was freed: one of them (most likely b, while a sits out) leads again.
    await until(() => a.leading || b.leading, WAIT_MS);
    expect(a.leading && b.leading).toBe(false);
  });
});
