/**
 * PgCluster on a real PostgreSQL: two clusters on one database exchange events and share one
 * lead; a stopped or cut-off leader hands over; a cut-off event connection comes back.
 */
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { ClusterEvent } from '../../src/controller/cluster.ts';
import { PgCluster } from '../../src/controller/store/pg-cluster.ts';
import { PgDb } from '../../src/controller/store/pg-db.ts';
import { usePostgres } from '../support/postgres.ts';
import { until } from '../support/github-deliveries.ts';

const CHECK_MS = 100;
/** Generous: a busy 2-core machine. Never the measure of anything, only a bound on a hang. */
const WAIT_MS = 20_000;

const pgServer = usePostgres();

/** One controller's side: its pool, its cluster, what it heard, and its lead changes as awaitable events. */
interface Side {
  db: PgDb;
  cluster: PgCluster;
  events: ClusterEvent[];
  leads: boolean[];
  /** The `onLeadChange` given to `start`. */
  onLead: (leading: boolean) => void;
  /** Resolves at the next lead change to `v`. */
  nextLead(v: boolean): Promise<void>;
  /** Resolves at the next event matching `match`. */
  nextEvent(match: (e: ClusterEvent) => boolean): Promise<ClusterEvent>;
}

let cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  cleanups = [];
});

async function database(): Promise<string> {
  const url = await pgServer().createDatabase();
  cleanups.push(() => pgServer().dropDatabase(url));
  return url;
}

function side(url: string, others: Side[] = []): Side {
  const db = new PgDb({ url, max: 2 });
  const cluster = new PgCluster({ db, url, logger: pino({ level: 'silent' }), leaderCheckMs: CHECK_MS });
  const events: ClusterEvent[] = [];
  const leads: boolean[] = [];
  const leadWaiters: { v: boolean; resolve: () => void }[] = [];
  const eventWaiters: { match: (e: ClusterEvent) => boolean; resolve: (e: ClusterEvent) => void }[] = [];
  const s: Side = {
    db,
    cluster,
    events,
    leads,
    onLead: (v) => {
      // Never two leaders: whoever gains the lead finds no other leading.
      if (v) for (const o of others) if (o.cluster !== cluster) expect(o.cluster.leading, 'two leaders at once').toBe(false);
      leads.push(v);
      for (const w of [...leadWaiters]) {
        if (w.v === v) {
          leadWaiters.splice(leadWaiters.indexOf(w), 1);
          w.resolve();
        }
      }
    },
    nextLead: (v) => new Promise((resolve) => leadWaiters.push({ v, resolve })),
    nextEvent: (match) => new Promise((resolve) => eventWaiters.push({ match, resolve })),
  };
  cluster.subscribe((e) => {
    events.push(e);
    for (const w of [...eventWaiters]) {
      if (w.match(e)) {
        eventWaiters.splice(eventWaiters.indexOf(w), 1);
        w.resolve(e);
      }
    }
  });
  cleanups.push(async () => {
    await cluster.stop();
    await db.close();
  });
  return s;
}

const start = (s: Side) => s.cluster.start(s.onLead);

/** Backends of this database whose application_name starts with `prefix` (ours name their role and cluster id). */
async function backends(db: PgDb, prefix: string): Promise<number[]> {
  const r = await db.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1`, [prefix]);
  return r.rows.map((row) => row.pid);
}

async function terminate(db: PgDb, pids: number[]): Promise<void> {
  for (const pid of pids) await db.query('SELECT pg_terminate_backend($1)', [pid]);
}

/** Two sides on a fresh database, both started, and which of them leads once one does. */
async function pair(): Promise<{ a: Side; b: Side; leader: () => Side; follower: () => Side }> {
  const url = await database();
  const others: Side[] = [];
  const a = side(url, others);
  const b = side(url, others);
  others.push(a, b);
  const first = Promise.race([a.nextLead(true), b.nextLead(true)]);
  await Promise.all([start(a), start(b)]);
  await first;
  const leader = () => (a.cluster.leading ? a : b);
  const follower = () => (a.cluster.leading ? b : a);
  return { a, b, leader, follower };
}

describe('PgCluster', () => {
  it('delivers an event published on A to B, and to A once', async () => {
    const { a, b } = await pair();
    const heard = b.nextEvent((e) => e.kind === 'build' && e.buildId === 'b-1');
    a.cluster.publish({ kind: 'build', buildId: 'b-1' });
    // A's own subscriber heard it synchronously, at publish.
    expect(a.events.filter((e) => e.kind === 'build')).toEqual([{ kind: 'build', buildId: 'b-1' }]);
    expect(await heard).toEqual({ kind: 'build', buildId: 'b-1' });
    // A marker sent after it from B reaches A: by then A's own NOTIFY came back and was skipped.
    const marker = a.nextEvent((e) => e.kind === 'worker' && e.workerId === 'marker');
    b.cluster.publish({ kind: 'worker', workerId: 'marker' });
    await marker;
    expect(a.events.filter((e) => e.kind === 'build')).toHaveLength(1);
    expect(b.events.filter((e) => e.kind === 'build')).toHaveLength(1);
  });

  it('sends what was published before its start once it starts', async () => {
    const url = await database();
    const b = side(url);
    await start(b);
    const a = side(url);
    const heard = b.nextEvent((e) => e.kind === 'build' && e.buildId === 'early');
    // The app answers requests a moment before the cluster starts: a submit in that window.
    a.cluster.publish({ kind: 'build', buildId: 'early' });
    expect(a.events).toEqual([{ kind: 'build', buildId: 'early' }]);
    await start(a);
    expect(await heard).toEqual({ kind: 'build', buildId: 'early' });
  });

  it('past its cap before start drops only per-build events: a queued wake-up published after them still goes out', async () => {
    const url = await database();
    const b = side(url);
    await start(b);
    const a = side(url);
    const heard = b.nextEvent((e) => e.kind === 'queued');
    for (let i = 0; i < 1200; i++) a.cluster.publish({ kind: 'build', buildId: `flood-${i}` });
    a.cluster.publish({ kind: 'queued' });
    await start(a);
    expect(await heard).toEqual({ kind: 'queued' });
  });

  it('ignores a malformed or foreign NOTIFY on its channel', async () => {
    const { a, b } = await pair();
    for (const p of ['not json', '{"o":"x"}', '{"o":"x","e":{"kind":"build"}}', '{"o":"x","e":{"kind":"rm -rf"}}', `{"o":"x","e":{"kind":"worker","workerId":"${'w'.repeat(500)}"}}`]) {
      await a.db.query(`SELECT pg_notify('expo_worker', $1)`, [p]);
    }
    const marker = b.nextEvent((e) => e.kind === 'report');
    a.cluster.publish({ kind: 'report' });
    await marker;
    expect(b.events).toEqual([{ kind: 'report' }]);
  });

  it('lets exactly one of two lead', async () => {
    const { a, b, leader, follower } = await pair();
    // The follower tried for the lock while the leader held it, and failed.
    const tries = () =>
      a.db
        .query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND query LIKE '%pg_try_advisory_lock%'`, [`expo-worker lead ${follower().cluster.id}`])
        .then((r) => r.rows[0]!.n);
    await until('the follower tried for the lead', tries, (n) => n === 1, WAIT_MS);
    expect(leader().cluster.leading).toBe(true);
    expect(follower().cluster.leading).toBe(false);
    expect([...a.leads, ...b.leads]).toEqual([true]);
    const locks = await a.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`);
    expect(locks.rows[0]!.n).toBe(1);
  });

  it('hands the lead over when the leader stops', async () => {
    const { leader, follower } = await pair();
    const [l, f] = [leader(), follower()];
    const taken = f.nextLead(true);
    await l.cluster.stop();
    expect(l.leads).toEqual([true, false]);
    expect(l.cluster.leading).toBe(false);
    await taken;
    expect(f.cluster.leading).toBe(true);
    // Safe to stop twice.
    await l.cluster.stop();
  });

  it('loses the lead when its lock connection is terminated, and one leads again', async () => {
    const { a, b, leader } = await pair();
    const l = leader();
    const lost = l.nextLead(false);
    const again = Promise.race([a.nextLead(true), b.nextLead(true)]);
    await terminate(a.db, await backends(a.db, `expo-worker lead ${l.cluster.id}`));
    await lost;
    expect(l.cluster.leading).toBe(false);
    await again;
    expect(a.cluster.leading !== b.cluster.leading).toBe(true);
  });

  it('reconnects its event connection after the backend is terminated, and events flow again', async () => {
    const { a, b } = await pair();
    const pids = await backends(a.db, `expo-worker events ${b.cluster.id}`);
    expect(pids).toHaveLength(1);
    // The synthetic `queued` after the reconnect says it is listening again.
    const back = b.nextEvent((e) => e.kind === 'queued');
    await terminate(a.db, pids);
    await back;
    await until('a new event connection', () => backends(a.db, `expo-worker events ${b.cluster.id}`), (p) => p.length === 1 && p[0] !== pids[0], WAIT_MS);
    const heard = b.nextEvent((e) => e.kind === 'worker' && e.workerId === 'w-after');
    a.cluster.publish({ kind: 'worker', workerId: 'w-after' });
    expect(await heard).toEqual({ kind: 'worker', workerId: 'w-after' });
  });

  it('never throws from publish when the database is gone, and stops cleanly', async () => {
    const url = await database();
    const s = side(url);
    await start(s);
    await s.db.close();
    expect(() => s.cluster.publish({ kind: 'queued' })).not.toThrow();
    expect(s.events).toEqual([{ kind: 'queued' }]);
    await until('the failed NOTIFY counted', () => s.cluster.failedPublishes, (n) => n === 1, WAIT_MS);
    await s.cluster.stop();
  });
});
