/**
 * Two controllers on one PostgreSQL database (two PgStores, two PgClusters, two listening
 * apps): a wake-up on one reaches a waiter on the other, and only the leader runs the watchdog,
 * the follower taking over when the leader stops.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { buildApp, type ControllerApp } from '../../src/controller/app.ts';
import { PgCluster } from '../../src/controller/store/pg-cluster.ts';
import { PgStore } from '../../src/controller/store/pg-store.ts';
import { usePostgres } from '../support/postgres.ts';
import { logBytesOf, openSse, type SseStream } from '../support/sse-client.ts';
import { until } from '../support/github-deliveries.ts';

const ADMIN_KEY = 'admin-key-0123456789abcdef0123456789';
const admin = { authorization: `Bearer ${ADMIN_KEY}` };
const WAIT_MS = 30_000;

const pgServer = usePostgres();

interface Ctl {
  c: ControllerApp;
  store: PgStore;
  base: string;
  stopped: boolean;
  stop(): Promise<void>;
}

let cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  cleanups = [];
});

async function controllers(heartbeatTimeoutMs: number): Promise<[Ctl, Ctl]> {
  const url = await pgServer().createDatabase();
  cleanups.push(() => pgServer().dropDatabase(url));
  const dir = mkdtempSync(join(tmpdir(), 'expo-two-ctl-'));
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
  const one = async (): Promise<Ctl> => {
    const store = new PgStore({ url, poolMax: 4 });
    await store.migrate();
    const logger = pino({ level: 'silent' });
    const c = await buildApp({
      store,
      adminKey: ADMIN_KEY,
      heartbeatTimeoutMs,
      maxLogBytes: 1 << 20,
      // Shared by both, as a shared artifact store would be.
      artifactsDir: join(dir, 'artifacts'),
      defaultBuildTimeoutS: 3600,
      logger,
      cluster: new PgCluster({ db: store.db, url, logger, leaderCheckMs: 100 }),
      // A stream reads the store again only when woken: its own timers would hide a lost event.
      logStreams: { recheckMs: 600_000, pingMs: 600_000 },
    });
    const base = await c.app.listen({ host: '127.0.0.1', port: 0 });
    await c.startCluster();
    const ctl: Ctl = {
      c,
      store,
      base,
      stopped: false,
      stop: async () => {
        if (ctl.stopped) return;
        ctl.stopped = true;
        await c.shutdown();
        await store.close();
      },
    };
    cleanups.push(() => ctl.stop());
    return ctl;
  };
  const a = await one();
  const b = await one();
  await until('a leader', () => [a, b].filter((x) => x.c.cluster.leading).length, (n) => n === 1, WAIT_MS);
  return [a, b];
}

async function call(ctl: Ctl, method: string, path: string, headers: Record<string, string>, body?: unknown): Promise<{ status: number; json: () => Record<string, unknown> }> {
  const res = await fetch(`${ctl.base}${path}`, {
    method,
    headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, json: () => JSON.parse(text) as Record<string, unknown> };
}

async function enrol(ctl: Ctl, id: string): Promise<Record<string, string>> {
  const res = await call(ctl, 'POST', '/api/v1/workers', admin, { id });
  expect(res.status).toBe(201);
  return { authorization: `Bearer ${res.json().apiKey as string}` };
}

async function submit(ctl: Ctl): Promise<string> {
  const res = await call(ctl, 'POST', '/api/v1/builds', admin, { steps: [{ name: 'build', run: 'echo hello' }] });
  expect(res.status).toBe(201);
  return res.json().id as string;
}

const poll = (ctl: Ctl, workerId: string, auth: Record<string, string>, waitS: number) =>
  call(ctl, 'POST', `/api/v1/workers/${workerId}/poll`, auth, { slotsFree: 1, runningBuilds: [], waitS });

/** Worker `w` claims a build on `ctl` and reports it running; its lease. */
async function running(ctl: Ctl, workerId: string, auth: Record<string, string>, buildId: string): Promise<string> {
  const claimed = await poll(ctl, workerId, auth, 0);
  expect(claimed.status).toBe(200);
  const claim = claimed.json() as { build: { id: string }; lease: string };
  expect(claim.build.id).toBe(buildId);
  expect((await call(ctl, 'POST', `/api/v1/builds/${buildId}/phase`, auth, { lease: claim.lease, phase: 'running' })).status).toBe(200);
  return claim.lease;
}

/** Waits for `id` to fail on controller `c` and checks it failed for its silence. */
async function failsSilent(c: Ctl, id: string): Promise<void> {
  const failed = await until(
    'the silent build failed',
    async () => (await call(c, 'GET', `/api/v1/builds/${id}`, admin)).json(),
    (bld) => bld.status === 'failed',
    WAIT_MS,
    100,
  );
  expect(failed.failureReason).toBe('heartbeat_timeout');
}

describe('two controllers on one PostgreSQL database', () => {
  it('wakes a long poll waiting on B when a build is submitted on A', async () => {
    const [a, b] = await controllers(60_000);
    const auth = await enrol(a, 'mac-1');
    // waitS 20: were it not woken, the poll would answer 204 after 20 s — not a build.
    const waiting = poll(b, 'mac-1', auth, 20);
    await until('the poll waiting on B', () => b.c.service.waits.isWaiting('mac-1'), (v) => v, WAIT_MS);
    const id = await submit(a);
    const got = await waiting;
    expect(got.status).toBe(200);
    expect((got.json() as { build: { id: string } }).build.id).toBe(id);
  });

  it('ends a worker heartbeat waiting on B when a cancel is asked on A', async () => {
    const [a, b] = await controllers(120_000);
    const auth = await enrol(a, 'mac-1');
    const id = await submit(a);
    await running(b, 'mac-1', auth, id);
    // waitS 25: unwoken, it would answer after 25 s with nothing to cancel.
    const askedAt = Date.now();
    const hb = call(b, 'POST', '/api/v1/workers/mac-1/heartbeat', auth, { runningBuilds: [id], waitS: 25 });
    await until('the heartbeat waiting on B', () => b.c.service.waits.isWaiting('mac-1'), (v) => v, WAIT_MS);
    expect((await call(a, 'POST', `/api/v1/builds/${id}/cancel`, admin, {})).status).toBe(200);
    expect((await hb).json()).toEqual({ status: 'ok', abort: [], cancel: [id] });
    // Its wait ran out only after 25 s: an answer before that was the wake-up from A.
    expect(Date.now() - askedAt).toBeLessThan(25_000);
  });

  it('streams on B the log chunks appended through A', async () => {
    const [a, b] = await controllers(60_000);
    const auth = await enrol(a, 'mac-1');
    const id = await submit(a);
    const lease = await running(a, 'mac-1', auth, id);
    let stream: SseStream | null = null;
    cleanups.push(async () => stream?.destroy());
    stream = await openSse(`${b.base}/api/v1/builds/${id}/logs/stream`, admin);
    expect(stream.status).toBe(200);
    await stream.waitFor((e) => e.event === 'start');
    const appended = await call(a, 'POST', `/api/v1/builds/${id}/logs`, auth, { lease, offset: 0, data: 'hello from A\n' });
    expect(appended.status).toBe(200);
    await stream.waitFor((e) => e.event === 'log' && logBytesOf(stream!.events).toString().includes('hello from A'));
    expect(logBytesOf(stream.events).toString()).toBe('hello from A\n');
  });

  it('runs the watchdog on the leader only, and on the other once the leader stops', async () => {
    const [a, b] = await controllers(2_000);
    const [leader, follower] = a.c.cluster.leading ? [a, b] : [b, a];
    const gauge = async (ctl: Ctl) => /^expo_worker_controller_leader (\d)$/m.exec(await (await fetch(`${ctl.base}/metrics`)).text())?.[1];
    expect(await gauge(leader)).toBe('1');
    expect(await gauge(follower)).toBe('0');
    await leader.stop();
    await until('the follower leads', () => follower.c.cluster.leading, (v) => v, WAIT_MS);
    expect(await gauge(follower)).toBe('1');
    // A build that goes silent on the survivor is failed by its watchdog.
    const auth = await enrol(follower, 'mac-1');
    const id = await submit(follower);
    await running(follower, 'mac-1', auth, id);
    // The agent beats after its build's last sign: the build's deadline comes first (heartbeat_timeout, not worker_lost).
    await call(follower, 'POST', '/api/v1/workers/mac-1/heartbeat', auth, { runningBuilds: [id] });
    await failsSilent(follower, id);
  });

  it('fails on the new leader a build that went silent while the old one watched it', async () => {
    const [a, b] = await controllers(2_000);
    const [leader, follower] = a.c.cluster.leading ? [a, b] : [b, a];
    // Started through the leader, whose watchdog armed its timer for this deadline; the
    // follower's watchdog has never run: on the lead it must read the deadline from the store.
    const auth = await enrol(leader, 'mac-1');
    const id = await submit(leader);
    await running(leader, 'mac-1', auth, id);
    await call(leader, 'POST', '/api/v1/workers/mac-1/heartbeat', auth, { runningBuilds: [id] });
    await leader.stop();
    await until('the follower leads', () => follower.c.cluster.leading, (v) => v, WAIT_MS);
    await failsSilent(follower, id);
  });
});
