/**
 * Several controllers on one PostgreSQL database, as real processes (issue 14, "Tests"):
 *
 * 1. Two controllers, 20 simulated workers homed ten on each (test/support/sim-worker.ts speaks the
 *    worker protocol as the agent does), 500 builds submitted alternately to both. Mid-run the
 *    leader (the one whose `expo_worker_controller_leader` is 1, running the watchdog) is
 *    SIGKILLed: its workers move to the survivor and carry on, the survivor takes the lead, and a
 *    build whose worker goes silent on the survivor's side is still failed `heartbeat_timeout`
 *    within the heartbeat timeout plus the takeover. Every other build succeeds, claimed exactly
 *    once (attempt 1, one worker), with its log byte for byte.
 * 2. A real agent (tart simulator) with `controllerUrl: [A, B]` whose controller A is SIGKILLed
 *    mid-build finishes that build through B.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { Agent, request } from 'undici';
import { pathOf, ROUTES } from '../../src/protocol/routes.ts';
import { killAllControllers, startControllerProcess, type ControllerProcess } from '../support/controller-process.ts';
import { ADMIN, BUSY_SLACK_MS, E2E_HEARTBEAT_TIMEOUT_S, E2E_TEST_TIMEOUT_MS, FINAL, startFarm, WAIT, type Farm } from '../support/farm.ts';
import { startPostgres, type Postgres } from '../support/postgres.ts';
import { SimWorker, simLogChunks, type SimClaim } from '../support/sim-worker.ts';

vi.setConfig({ testTimeout: E2E_TEST_TIMEOUT_MS, hookTimeout: E2E_TEST_TIMEOUT_MS });

/** The simulated fleet's heartbeat timeout, s: short, so the frozen build fails soon, yet room for a busy machine's stalls. */
const SIM_HEARTBEAT_TIMEOUT_S = 6;
/** "Another takes over within a few seconds" (issue 14): the longest the survivor may take to lead. */
const TAKEOVER_MS = 5_000;
const BUILDS = 500;
const WORKERS = 20;

let pg: Postgres;
let dbUrl: string | null = null;
let dataDir: string | null = null;
let fleet: SimWorker[] = [];
let farm: Farm | undefined;
const dispatcher = new Agent({ connections: 64 });

beforeAll(async () => {
  pg = await startPostgres();
});

afterEach(async () => {
  await Promise.all(fleet.map((w) => w.stop()));
  fleet = [];
  await farm?.stop();
  farm = undefined;
  await killAllControllers();
  if (dbUrl !== null) await pg.dropDatabase(dbUrl);
  dbUrl = null;
  if (dataDir !== null) rmSync(dataDir, { recursive: true, force: true });
  dataDir = null;
});

afterAll(async () => {
  await dispatcher.close();
  await pg?.stop();
});

async function api(base: string, method: 'GET' | 'POST', path: string, body?: unknown, key = ADMIN): Promise<{ status: number; body: any; text: string }> {
  const res = await request(`${base}${path}`, {
    method,
    dispatcher,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.body.text();
  return { status: res.statusCode, text, body: text.startsWith('{') ? JSON.parse(text) : text };
}

/** Two controller processes on a fresh database and one shared data directory (the secret-env key). */
async function startPair(heartbeatTimeoutS: number): Promise<[ControllerProcess, ControllerProcess]> {
  dbUrl = await pg.createDatabase();
  dataDir = mkdtempSync(join(tmpdir(), 'expo-ha-'));
  const start = () => startControllerProcess({ dbPath: dbUrl!, apiKey: ADMIN, heartbeatTimeoutS, extraArgs: ['--data-dir', dataDir!] });
  // One after the other: the first migrates the empty database.
  const a = await start();
  const b = await start();
  return [a, b];
}

/** A controller's `expo_worker_controller_leader` (null when it does not answer). */
async function leaderGauge(c: ControllerProcess): Promise<number | null> {
  try {
    const res = await api(c.url, 'GET', '/metrics');
    const m = /^expo_worker_controller_leader(?:\{[^}]*\})?\s+(\S+)$/m.exec(res.text);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Polls `check` until it answers a value (not undefined), or fails naming `what`. */
async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = WAIT.buildMs, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** The one controller of the pair that leads, once exactly one does. */
async function leaderOf(pair: ControllerProcess[]): Promise<ControllerProcess> {
  return until('exactly one leader', async () => {
    const gauges = await Promise.all(pair.map(leaderGauge));
    const leading = pair.filter((_, i) => gauges[i] === 1);
    return leading.length === 1 && gauges.every((g) => g === 0 || g === 1) ? leading[0] : undefined;
  });
}

describe('two controllers on one PostgreSQL database', () => {
  it('500 builds from 20 workers: each claimed once, none lost when the leader is SIGKILLed, and a frozen build still fails on time', async () => {
    const pair = await startPair(SIM_HEARTBEAT_TIMEOUT_S);
    const claims: SimClaim[] = [];
    const completions: { buildId: string; workerId: string; via: string; at: number }[] = [];
    const home = new Map<string, ControllerProcess>();
    for (let i = 0; i < WORKERS; i++) {
      const [mine, other] = i % 2 === 0 ? pair : [pair[1], pair[0]];
      const id = `sim-${i}`;
      const created = await api(mine.url, 'POST', pathOf(ROUTES.createWorker, {}), { id });
      expect(created.status, created.text).toBe(201);
      const w: SimWorker = new SimWorker({
        id,
        apiKey: created.body.apiKey,
        urls: [mine.url, other.url],
        heartbeatTimeoutMs: SIM_HEARTBEAT_TIMEOUT_S * 1000,
        dispatcher,
        onClaim: (c) => claims.push(c),
        onComplete: (buildId, via) => completions.push({ buildId, workerId: id, via, at: Date.now() }),
      });
      home.set(id, mine);
      fleet.push(w);
    }
    for (const w of fleet) w.start();
    const leader = await leaderOf(pair);
    const survivor = pair.find((c) => c !== leader)!;

    // Submitted alternately to both while the fleet works; all of them before the kill, so that
    // no submission is cut (a cut POST leaves the client unsure whether the build exists).
    const ids: string[] = new Array(BUILDS);
    let next = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next < BUILDS) {
          const n = next++;
          const res = await api(pair[n % 2]!.url, 'POST', pathOf(ROUTES.submitBuild, {}), { steps: [{ name: 'build', run: 'true' }] });
          expect(res.status, res.text).toBe(201);
          ids[n] = res.body.id;
        }
      }),
    );
    await until('200 builds completed', async () => (completions.length >= 200 ? true : undefined));

    // Mid-run: the leader dies; a worker homed on the survivor goes silent about its build.
    const frozenWorker = fleet.find((w) => home.get(w.id) === survivor)!;
    const killedAt = Date.now();
    await leader.stop('SIGKILL');
    frozenWorker.freeze();
    await until('the survivor to take the lead', async () => ((await leaderGauge(survivor)) === 1 ? true : undefined));

    // The workers' own count first (cheap), then the controller's word on every build (a list of
    // 500 builds is not something to ask a busy survivor for ten times a second).
    await until('every build but the frozen one completed', async () => (completions.length >= BUILDS - 1 || fleet.some((w) => w.error) ? true : undefined));
    const wanted = new Set(ids);
    const builds = await until(
      'every build to end',
      async () => {
        const res = await api(survivor.url, 'GET', `${pathOf(ROUTES.listBuilds, {})}?limit=1000`);
        const mine = (res.body.builds as Record<string, any>[]).filter((b) => wanted.has(b.id));
        return mine.length === BUILDS && mine.every(FINAL) ? mine : undefined;
      },
      WAIT.buildMs,
      1000,
    );
    await Promise.all(fleet.map((w) => w.stop()));
    expect(fleet.map((w) => w.error?.message ?? null)).toEqual(fleet.map(() => null));

    // Claimed exactly once: one claim per build as the workers saw them, attempt 1, and the
    // build's worker is the one that claimed it.
    const claimsOf = new Map<string, SimClaim[]>();
    for (const c of claims) claimsOf.set(c.buildId, [...(claimsOf.get(c.buildId) ?? []), c]);
    const frozenId = frozenWorker.frozenBuildId;
    expect(frozenId).not.toBeNull();
    const wrong: string[] = [];
    for (const b of builds) {
      const cs = claimsOf.get(b.id) ?? [];
      if (cs.length !== 1 || cs[0]!.attempt !== 1) wrong.push(`${b.id}: claims ${JSON.stringify(cs)}`);
      if (b.attempt !== 1 || b.workerId !== cs[0]?.workerId) wrong.push(`${b.id}: attempt ${b.attempt} on ${b.workerId}`);
      const expected = b.id === frozenId ? { status: 'failed', failureReason: 'heartbeat_timeout' } : { status: 'succeeded', failureReason: null };
      if (b.status !== expected.status || b.failureReason !== expected.failureReason) wrong.push(`${b.id}: ${b.status} ${b.failureReason} ${b.message}`);
    }
    expect(wrong).toEqual([]);
    expect(claims.length).toBe(BUILDS);

    // Every log byte for byte, through the survivor (whichever controller took each chunk).
    const badLogs: string[] = [];
    const pending = builds.filter((b) => b.id !== frozenId);
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let b = pending.pop(); b !== undefined; b = pending.pop()) {
          const want = simLogChunks(b.id).join('');
          const got = (await api(survivor.url, 'GET', pathOf(ROUTES.readLog, { id: b.id }))).text;
          if (got !== want || b.logBytes !== Buffer.byteLength(want)) badLogs.push(`${b.id}: ${JSON.stringify(got)} (${b.logBytes} bytes)`);
        }
      }),
    );
    expect(badLogs).toEqual([]);

    // The frozen build failed within the timeout plus the takeover, by the survivor's clock —
    // and not before its timeout.
    const frozen = builds.find((b) => b.id === frozenId)!;
    const silentMs = Date.parse(frozen.finishedAt) - Date.parse(frozen.lastHeartbeatAt);
    expect(silentMs, JSON.stringify(frozen)).toBeGreaterThanOrEqual(SIM_HEARTBEAT_TIMEOUT_S * 1000 - 50);
    expect(silentMs, JSON.stringify(frozen)).toBeLessThanOrEqual(SIM_HEARTBEAT_TIMEOUT_S * 1000 + TAKEOVER_MS + BUSY_SLACK_MS);
    expect(Date.parse(frozen.finishedAt) - killedAt).toBeLessThanOrEqual(SIM_HEARTBEAT_TIMEOUT_S * 1000 + TAKEOVER_MS + 2 * BUSY_SLACK_MS);

    // The dead leader's workers moved to the survivor and carried on.
    for (const w of fleet.filter((x) => home.get(x.id) === leader)) {
      expect(w.switches, w.id).toBeGreaterThan(0);
      expect(completions.filter((c) => c.workerId === w.id && c.at > killedAt && c.via === survivor.url).length, w.id).toBeGreaterThan(0);
    }
  });

  it('a real agent with controllerUrl [A, B] finishes its build through B when A is SIGKILLed mid-build', async () => {
    farm = await startFarm({ agent: false });
    const [a, b] = await startPair(E2E_HEARTBEAT_TIMEOUT_S);
    const created = await api(a.url, 'POST', pathOf(ROUTES.createWorker, {}), { id: 'mac-1' });
    expect(created.status, created.text).toBe(201);
    const agent = await farm.startAgent({ controllerUrl: [a.url, b.url], apiKey: created.body.apiKey });
    const submitted = await api(b.url, 'POST', pathOf(ROUTES.submitBuild, {}), {
      steps: [
        { name: 'before', run: 'echo "before the kill"; sleep 4' },
        { name: 'after', run: 'for i in 1 2 3 4 5; do echo "after $i"; sleep 0.5; done' },
      ],
    });
    expect(submitted.status, submitted.text).toBe(201);
    const id = submitted.body.id as string;
    const readLog = async () => (await api(b.url, 'GET', pathOf(ROUTES.readLog, { id }))).text;
    await until('the first step to run', async () => ((await readLog()).includes('before the kill') ? true : undefined));
    await a.stop('SIGKILL');

    const done = await until('the build to end', async () => {
      const res = await api(b.url, 'GET', pathOf(ROUTES.getBuild, { id }));
      return FINAL(res.body) ? res.body : undefined;
    });
    const log = await readLog();
    expect(done, log).toMatchObject({ status: 'succeeded', exitCode: 0, workerId: 'mac-1', attempt: 1 });
    const lines = ['before the kill', 'after 1', 'after 2', 'after 3', 'after 4', 'after 5'];
    expect(lines.map((l) => log.split(l).length - 1), log).toEqual(lines.map(() => 1));
    expect(lines.map((l) => log.indexOf(l)), log).toEqual([...lines.map((l) => log.indexOf(l))].sort((x, y) => x - y));
    await agent.waitFor('build done', WAIT.logMs, (e) => e.buildId === id);
  });
});
