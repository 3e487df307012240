/**
 * Controller benchmarks (`npm run bench -- controller`, after `npm run build`):
 * 1. heartbeat ingestion against a bare Fastify route, in the same run — the ratio is the result;
 * 2. dispatch latency from submit to claim with 100 idle long-polling workers;
 * 3. scale: N simulated workers polling and heart-beating at production rates (`scale`: one
 *    controller on SQLite; `scale-pg`: two controllers on one PostgreSQL database).
 * Ingestion and dispatch measure SQLite and PostgreSQL in the same run (and dispatch also a
 * build submitted on one controller and claimed through another). PostgreSQL is a throwaway
 * server started here as the tests start theirs (initdb + pg_ctl on loopback,
 * test/support/postgres.ts); where it is not installed its rows say why and are skipped.
 * Durations shrink with BENCH_QUICK=1. Prints markdown tables for docs/benchmarks.md.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { startPostgres, type Postgres } from '../../test/support/postgres.ts';
import { CLI, LISTENING, hammer, percentile, sampleProcess, startProcess, table, type Started } from '../lib.ts';
import { watchdogBench } from './watchdog.ts';

const QUICK = process.env.BENCH_QUICK === '1';
const KEY = 'bench-admin-key-0123456789';
const dir = mkdtempSync(join(tmpdir(), 'expo-bench-'));
const agent = new Agent({ connections: 4096, pipelining: 1 });

async function api(base: string, path: string, key: string, body?: unknown): Promise<any> {
  const res = await request(`${base}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    dispatcher: agent,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.body.text();
  return text ? JSON.parse(text) : null;
}

type Backend = 'SQLite' | 'PostgreSQL';

/** The PostgreSQL server, started on first use; a string says why there is none. */
let postgres: Promise<Postgres | string> | null = null;
function pgServer(): Promise<Postgres | string> {
  postgres ??= startPostgres().catch((err: Error) => `PostgreSQL not available: ${err.message.split('\n')[0]}`);
  return postgres;
}
async function stopPostgres(): Promise<void> {
  const pg = await postgres;
  if (pg !== null && pg !== undefined && typeof pg !== 'string') await pg.stop();
}

/**
 * Starts `count` controllers sharing one fresh database of `backend` (SQLite: one controller, a
 * file; PostgreSQL: a database of its own and one data directory). A string says why not.
 */
async function controllers(name: string, backend: Backend, count = 1, timeoutS = 120): Promise<Started[] | string> {
  let db: string[];
  if (backend === 'SQLite') {
    if (count !== 1) throw new Error('several controllers need PostgreSQL');
    db = ['--db', join(dir, `${name}.db`)];
  } else {
    const pg = await pgServer();
    if (typeof pg === 'string') return pg;
    mkdirSync(join(dir, name));
    db = ['--db', await pg.createDatabase(), '--data-dir', join(dir, name)];
  }
  const started: Started[] = [];
  // One after the other: the first one migrates the empty database.
  for (let i = 0; i < count; i++) {
    started.push(await startProcess([CLI, 'controller', ...db, '--api-key', KEY, '--port', '0', '--heartbeat-timeout', String(timeoutS), '--log-level', 'info'], LISTENING));
  }
  return started;
}

/** A table row for a measurement that could not run. */
const skipped = (first: string, label: string, why: string, cols: string[]): Record<string, string> =>
  Object.fromEntries([[first, `${label}: skipped (${why})`], ...cols.map((c) => [c, ''])]);

async function heartbeatIngestion(): Promise<string> {
  const durationMs = QUICK ? 3000 : 10_000;
  const connections = 32;
  const bare = await startProcess([new URL('./bare-server.ts', import.meta.url).pathname], /bare listening on (\S+)/);
  const baseline = await hammer({
    url: bare.url,
    next: () => ({ path: '/api/v1/builds/aaaaaaaaaaaaaaaa/heartbeat', headers: {}, body: '{"progress":5}' }),
    connections,
    durationMs,
  });
  await bare.stop();
  const cols = ['requests/s', 'p50 ms', 'p99 ms', 'errors'];
  const rows: Record<string, string | number>[] = [
    { server: 'bare Fastify route (baseline)', 'requests/s': Math.round(baseline.rps), 'p50 ms': baseline.p50Ms, 'p99 ms': baseline.p99Ms, errors: baseline.errors },
  ];
  const ratios: Record<string, string | number>[] = [];
  for (const backend of ['SQLite', 'PostgreSQL'] as const) {
    const label = `expo-worker controller, ${backend}`;
    const started = await controllers(`ingest-${backend}`, backend);
    if (typeof started === 'string') {
      rows.push(skipped('server', label, started, cols));
      continue;
    }
    const c = started[0]!;
    const { apiKey } = await api(c.url, '/api/v1/workers', KEY, { id: 'bench' });
    const tokens: { id: string; token: string }[] = [];
    for (let i = 0; i < 50; i++) {
      const { id } = await api(c.url, '/api/v1/builds', KEY, { steps: [{ name: 's', run: 'true' }] });
      const claim = await api(c.url, '/api/v1/workers/bench/poll', apiKey, { slotsFree: 1, runningBuilds: [], waitS: 0 });
      tokens.push({ id, token: claim.buildToken });
    }
    let i = 0;
    const ours = await hammer({
      url: c.url,
      next: () => {
        const t = tokens[i++ % tokens.length]!;
        return { path: `/api/v1/builds/${t.id}/heartbeat`, headers: { authorization: `Bearer ${t.token}` }, body: '{"progress":5}' };
      },
      connections,
      durationMs,
    });
    await c.stop();
    rows.push({ server: label, 'requests/s': Math.round(ours.rps), 'p50 ms': ours.p50Ms, 'p99 ms': ours.p99Ms, errors: ours.errors });
    ratios.push({ server: `ratio, ${backend} (goal ≥ 0.5)`, 'requests/s': (ours.rps / baseline.rps).toFixed(2), 'p50 ms': '', 'p99 ms': '', errors: '' });
  }
  return table('Heartbeat ingestion (POST /api/v1/builds/:id/heartbeat, 32 connections)', [...rows, ...ratios]);
}

/**
 * Submit → claim received, one build at a time, with `workers` idle long-polling workers on
 * `pollOn` and the builds submitted to `submitTo` (the same controller, or another one on the
 * same database: then the wake-up crosses controllers).
 */
async function measureDispatch(submitTo: Started, pollOn: Started, workers: number, builds: number): Promise<number[]> {
  const keys: string[] = [];
  for (let w = 0; w < workers; w++) keys.push((await api(pollOn.url, '/api/v1/workers', KEY, { id: `w${w}` })).apiKey);
  const latencies: number[] = [];
  // One build at a time: a claim belongs to the submission in flight, whose start is `submittedAt`
  // (its id may be known only after the claim, when the wake-up beats the submission's answer).
  let submittedAt = 0;
  let done = false;
  let wake: (() => void) | null = null;
  const loops = keys.map(async (key, w) => {
    while (!done) {
      const res = await api(pollOn.url, `/api/v1/workers/w${w}/poll`, key, { slotsFree: 1, runningBuilds: [], waitS: 5 });
      if (!res) continue;
      latencies.push(performance.now() - submittedAt);
      wake?.();
      await api(pollOn.url, `/api/v1/builds/${res.build.id}/complete`, key, { lease: res.lease, status: 'succeeded' });
    }
  });
  const settled = Promise.allSettled(loops); // handled from the start: stopping the controller ends the open polls
  await new Promise((r) => setTimeout(r, 1000)); // let every worker park its long-poll
  for (let b = 0; b < builds; b++) {
    const claimed = new Promise<void>((r) => (wake = r));
    submittedAt = performance.now();
    const res = await request(`${submitTo.url}/api/v1/builds`, {
      method: 'POST',
      dispatcher: agent,
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ steps: [{ name: 's', run: 'true' }] }),
    });
    await res.body.dump();
    await claimed;
    await new Promise((r) => setTimeout(r, 5)); // the claiming worker re-parks its poll
  }
  done = true;
  await Promise.all([...new Set([submitTo, pollOn])].map((c) => c.stop()));
  await settled;
  return latencies.sort((a, b) => a - b);
}

async function dispatchLatency(): Promise<string> {
  const workers = 100;
  const builds = QUICK ? 50 : 300;
  // Baseline: one plain HTTP round trip to a bare Fastify route, the floor for submit → claim.
  const bare = await startProcess([new URL('./bare-server.ts', import.meta.url).pathname], /bare listening on (\S+)/);
  const floor: number[] = [];
  for (let b = 0; b < builds; b++) {
    const t = performance.now();
    await api(bare.url, '/api/v1/builds/aaaaaaaaaaaaaaaa/heartbeat', KEY, {});
    floor.push(performance.now() - t);
  }
  await bare.stop();
  floor.sort((a, b) => a - b);
  const cols = ['p50 ms', 'p99 ms'];
  const rows: Record<string, string | number>[] = [{ measure: 'baseline: one HTTP round trip to a bare Fastify route', 'p50 ms': percentile(floor, 50), 'p99 ms': percentile(floor, 99) }];
  const cases = [
    { label: 'SQLite: submit → claim received (goals: p50 ≤ 5 ms, p99 ≤ 50 ms)', backend: 'SQLite', count: 1 },
    { label: 'PostgreSQL, one controller: submit → claim received', backend: 'PostgreSQL', count: 1 },
    { label: 'PostgreSQL, submitted on controller A, workers polling B (goal ≤ 100 ms)', backend: 'PostgreSQL', count: 2 },
  ] as const;
  for (const k of cases) {
    const started = await controllers(`dispatch-${k.backend}-${k.count}`, k.backend, k.count);
    if (typeof started === 'string') {
      rows.push(skipped('measure', k.label, started, cols));
      continue;
    }
    const latencies = await measureDispatch(started[0]!, started[started.length - 1]!, workers, builds);
    rows.push({ measure: k.label, 'p50 ms': percentile(latencies, 50), 'p99 ms': percentile(latencies, 99) });
  }
  return table(`Dispatch latency (${workers} idle long-polling workers, ${builds} builds submitted one at a time)`, rows);
}

/**
 * N simulated workers at production rates, spread round-robin over `backend`'s controllers
 * (each worker created on, and talking to, its own): CPU and memory of each controller against
 * its idle baseline, latency and errors of the heartbeats and claiming polls.
 */
async function scale(backend: Backend, count: number): Promise<string> {
  const workers = Number(process.env.BENCH_WORKERS ?? 2000);
  const durationMs = QUICK ? 10_000 : 60_000;
  const busyShare = 0.5;
  const busy = Math.round(workers * busyShare);
  const where = count === 1 ? `one controller, ${backend}` : `${count} controllers on one ${backend} database`;
  const title = `Scale (${workers} simulated workers: ${busy} with a running build, ${workers - busy} long-polling; ${where}`;
  const cs = await controllers(`scale-${backend}-${count}`, backend, count, 120);
  if (typeof cs === 'string') return table(`${title})`, [skipped('measure', 'all', cs, ['under the fleet'])]);
  const fleet: { id: string; key: string; c: Started; build?: { id: string; token: string } }[] = [];
  for (let w = 0; w < workers; w++) {
    const c = cs[w % count]!;
    fleet.push({ id: `w${w}`, c, key: (await api(c.url, '/api/v1/workers', KEY, { id: `w${w}` })).apiKey });
  }
  for (let b = 0; b < busy; b++) await api(cs[b % count]!.url, '/api/v1/builds', KEY, { steps: [{ name: 's', run: 'true' }] });
  const latencies: number[] = [];
  const byKind: Record<'claim' | 'heartbeat', number[]> = { claim: [], heartbeat: [] };
  let errors = 0;
  const timed = async <T>(kind: 'claim' | 'heartbeat' | 'long-poll', fn: () => Promise<T>) => {
    const t = performance.now();
    try {
      return await fn();
    } catch {
      errors++;
      return null;
    } finally {
      latencies.push(performance.now() - t);
      if (kind !== 'long-poll') byKind[kind].push(performance.now() - t);
    }
  };
  // Baseline: the same controllers, same database, before the fleet starts talking.
  const pids = cs.map((c) => c.proc.pid!);
  const idle0 = pids.map(sampleProcess);
  await new Promise((r) => setTimeout(r, 5000));
  const idle1 = pids.map(sampleProcess);
  const before = idle1;
  const started = performance.now();
  const end = started + durationMs;
  const jitter = (ms: number) => Math.random() * ms;
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, Math.min(ms, end - performance.now()))));
  const peakRss = before.map((s) => s.rssBytes);
  const sampler = setInterval(() => pids.forEach((pid, i) => (peakRss[i] = Math.max(peakRss[i]!, sampleProcess(pid).rssBytes))), 500);
  await Promise.all(
    fleet.map(async (w) => {
      // Each worker: claims a build if one is free, then heart-beats as the agent (15 s) and the monitor (30 s) would.
      await sleep(jitter(2000));
      const claim = await timed('claim', () => api(w.c.url, `/api/v1/workers/${w.id}/poll`, w.key, { slotsFree: 1, runningBuilds: [], waitS: 0 }));
      if (claim) w.build = { id: claim.build.id, token: claim.buildToken };
      let nextWorkerHb = performance.now() + jitter(15_000);
      let nextBuildHb = performance.now() + jitter(30_000);
      // An idle worker keeps a long-poll open, as a real agent with a free slot does.
      const polling = w.build
        ? Promise.resolve()
        : (async () => {
            while (performance.now() < end - 100) {
              const waitS = Math.min(25, (end - performance.now()) / 1000);
              const res = await timed('long-poll', () => api(w.c.url, `/api/v1/workers/${w.id}/poll`, w.key, { slotsFree: 1, runningBuilds: [], waitS }));
              if (res) break; // (no builds are left to claim; kept for completeness)
            }
          })();
      while (performance.now() < end) {
        await sleep(Math.min(nextWorkerHb, w.build ? nextBuildHb : Infinity) - performance.now());
        if (performance.now() >= end) break;
        if (performance.now() >= nextWorkerHb) {
          await timed('heartbeat', () => api(w.c.url, `/api/v1/workers/${w.id}/heartbeat`, w.key, { runningBuilds: w.build ? [w.build.id] : [] }));
          nextWorkerHb += 15_000;
        }
        if (w.build && performance.now() >= nextBuildHb) {
          await timed('heartbeat', () => api(w.c.url, `/api/v1/builds/${w.build!.id}/heartbeat`, w.build!.token, { progress: 10 }));
          nextBuildHb += 30_000;
        }
      }
      await polling;
    }),
  );
  clearInterval(sampler);
  const after = pids.map(sampleProcess);
  const elapsedS = (performance.now() - started) / 1000;
  await Promise.all(cs.map((c) => c.stop()));
  const short = [...byKind.claim, ...byKind.heartbeat].sort((a, b) => a - b);
  for (const k of Object.values(byKind)) k.sort((a, b) => a - b);
  const name = (i: number) => (count === 1 ? 'controller' : `controller ${String.fromCharCode(65 + i)}`);
  return table(`${title}; ${Math.round(elapsedS)} s)`, [
    { measure: 'requests (heartbeats, polls)', 'idle (baseline)': '', 'under the fleet': latencies.length },
    { measure: 'errors', 'idle (baseline)': '', 'under the fleet': errors },
    { measure: 'p50 latency, ms (long-polls excluded)', 'idle (baseline)': '', 'under the fleet': percentile(short, 50) },
    { measure: 'p99 latency, ms (long-polls excluded)', 'idle (baseline)': '', 'under the fleet': percentile(short, 99) },
    { measure: 'p99 latency of claiming polls, ms', 'idle (baseline)': '', 'under the fleet': percentile(byKind.claim, 99) },
    { measure: 'p99 latency of heartbeats, ms', 'idle (baseline)': '', 'under the fleet': percentile(byKind.heartbeat, 99) },
    ...cs.flatMap((_, i) => [
      { measure: `${name(i)} CPU, % of one core`, 'idle (baseline)': ((idle1[i]!.cpuS - idle0[i]!.cpuS) / 5) * 100, 'under the fleet': ((after[i]!.cpuS - before[i]!.cpuS) / elapsedS) * 100 },
      { measure: `${name(i)} RSS, MB (peak under the fleet)`, 'idle (baseline)': idle1[i]!.rssBytes / 1e6, 'under the fleet': peakRss[i]! / 1e6 },
    ]),
  ]);
}

const which = process.argv.slice(2);
const all: Record<string, () => Promise<string>> = {
  ingestion: heartbeatIngestion,
  dispatch: dispatchLatency,
  scale: () => scale('SQLite', 1),
  'scale-pg': () => scale('PostgreSQL', 2),
  watchdog: watchdogBench,
};
try {
  for (const [name, run] of Object.entries(all)) {
    if (which.length > 0 && !which.includes(name)) continue;
    console.error(`running ${name}…`);
    console.log(await run());
  }
} finally {
  await agent.close();
  await stopPostgres();
  rmSync(dir, { recursive: true, force: true });
}
