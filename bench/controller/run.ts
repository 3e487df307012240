/**
 * Controller benchmarks (`npm run bench -- controller`, after `npm run build`):
 * 1. heartbeat ingestion against a bare Fastify route, in the same run — the ratio is the result;
 * 2. dispatch latency from submit to claim with 100 idle long-polling workers;
 * 3. scale: N simulated workers polling and heart-beating at production rates.
 * Durations shrink with BENCH_QUICK=1. Prints markdown tables for docs/benchmarks.md.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { CLI, LISTENING, hammer, percentile, sampleProcess, startProcess, table } from '../lib.ts';

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

async function controller(name: string, timeoutS = 120) {
  return startProcess([CLI, 'controller', '--db', join(dir, `${name}.db`), '--api-key', KEY, '--port', '0', '--heartbeat-timeout', String(timeoutS), '--log-level', 'info'], LISTENING);
}

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

  const c = await controller('ingest');
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
  return table('Heartbeat ingestion (POST /api/v1/builds/:id/heartbeat, 32 connections)', [
    { server: 'bare Fastify route (baseline)', 'requests/s': Math.round(baseline.rps), 'p50 ms': baseline.p50Ms, 'p99 ms': baseline.p99Ms, errors: baseline.errors },
    { server: 'expo-worker controller', 'requests/s': Math.round(ours.rps), 'p50 ms': ours.p50Ms, 'p99 ms': ours.p99Ms, errors: ours.errors },
    { server: 'ratio (goal ≥ 0.5)', 'requests/s': (ours.rps / baseline.rps).toFixed(2), 'p50 ms': '', 'p99 ms': '', errors: '' },
  ]);
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

  const c = await controller('dispatch');
  const keys: string[] = [];
  for (let w = 0; w < workers; w++) keys.push((await api(c.url, '/api/v1/workers', KEY, { id: `w${w}` })).apiKey);
  const latencies: number[] = [];
  const submittedAt = new Map<string, number>();
  let done = false;
  let wake: (() => void) | null = null;
  const loops = keys.map(async (key, w) => {
    while (!done) {
      const res = await api(c.url, `/api/v1/workers/w${w}/poll`, key, { slotsFree: 1, runningBuilds: [], waitS: 5 });
      if (!res) continue;
      latencies.push(performance.now() - submittedAt.get(res.build.id)!);
      wake?.();
      await api(c.url, `/api/v1/builds/${res.build.id}/complete`, key, { lease: res.lease, status: 'succeeded' });
    }
  });
  const settled = Promise.allSettled(loops); // handled from the start: stopping the controller ends the open polls
  await new Promise((r) => setTimeout(r, 1000)); // let every worker park its long-poll
  for (let b = 0; b < builds; b++) {
    const claimed = new Promise<void>((r) => (wake = r));
    const t = performance.now();
    const res = await request(`${c.url}/api/v1/builds`, {
      method: 'POST',
      dispatcher: agent,
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ steps: [{ name: 's', run: 'true' }] }),
    });
    submittedAt.set(((await res.body.json()) as { id: string }).id, t);
    await claimed;
    await new Promise((r) => setTimeout(r, 5)); // the claiming worker re-parks its poll
  }
  done = true;
  await c.stop();
  await settled;
  latencies.sort((a, b) => a - b);
  floor.sort((a, b) => a - b);
  return table(`Dispatch latency (${workers} idle long-polling workers, ${latencies.length} builds submitted one at a time)`, [
    { measure: 'baseline: one HTTP round trip to a bare Fastify route', 'p50 ms': percentile(floor, 50), 'p99 ms': percentile(floor, 99) },
    { measure: 'submit → claim received (goals: p50 ≤ 5 ms, p99 ≤ 50 ms)', 'p50 ms': percentile(latencies, 50), 'p99 ms': percentile(latencies, 99) },
  ]);
}

async function scale(): Promise<string> {
  const workers = Number(process.env.BENCH_WORKERS ?? 2000);
  const durationMs = QUICK ? 10_000 : 60_000;
  const busyShare = 0.5;
  const c = await controller('scale', 120);
  const fleet: { id: string; key: string; build?: { id: string; token: string } }[] = [];
  for (let w = 0; w < workers; w++) fleet.push({ id: `w${w}`, key: (await api(c.url, '/api/v1/workers', KEY, { id: `w${w}` })).apiKey });
  for (let b = 0; b < workers * busyShare; b++) await api(c.url, '/api/v1/builds', KEY, { steps: [{ name: 's', run: 'true' }] });
  const latencies: number[] = [];
  const shortLatencies: number[] = [];
  let errors = 0;
  const timed = async <T>(fn: () => Promise<T>, long = false) => {
    const t = performance.now();
    try {
      return await fn();
    } catch {
      errors++;
      return null;
    } finally {
      latencies.push(performance.now() - t);
      if (!long) shortLatencies.push(performance.now() - t);
    }
  };
  // Baseline: the same controller, same database, before the fleet starts talking.
  const idle0 = sampleProcess(c.proc.pid!);
  await new Promise((r) => setTimeout(r, 5000));
  const idle1 = sampleProcess(c.proc.pid!);
  const before = idle1;
  const started = performance.now();
  const end = started + durationMs;
  const jitter = (ms: number) => Math.random() * ms;
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, Math.min(ms, end - performance.now()))));
  let peakRss = before.rssBytes;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, sampleProcess(c.proc.pid!).rssBytes)), 500);
  await Promise.all(
    fleet.map(async (w) => {
      // Each worker: claims a build if one is free, then heart-beats as the agent (15 s) and the monitor (30 s) would.
      await sleep(jitter(2000));
      const claim = await timed(() => api(c.url, `/api/v1/workers/${w.id}/poll`, w.key, { slotsFree: 1, runningBuilds: [], waitS: 0 }));
      if (claim) w.build = { id: claim.build.id, token: claim.buildToken };
      let nextWorkerHb = performance.now() + jitter(15_000);
      let nextBuildHb = performance.now() + jitter(30_000);
      // An idle worker keeps a long-poll open, as a real agent with a free slot does.
      const polling = w.build
        ? Promise.resolve()
        : (async () => {
            while (performance.now() < end - 100) {
              const waitS = Math.min(25, (end - performance.now()) / 1000);
              const res = await timed(() => api(c.url, `/api/v1/workers/${w.id}/poll`, w.key, { slotsFree: 1, runningBuilds: [], waitS }), true);
              if (res) break; // (no builds are left to claim; kept for completeness)
            }
          })();
      while (performance.now() < end) {
        await sleep(Math.min(nextWorkerHb, w.build ? nextBuildHb : Infinity) - performance.now());
        if (performance.now() >= end) break;
        if (performance.now() >= nextWorkerHb) {
          await timed(() => api(c.url, `/api/v1/workers/${w.id}/heartbeat`, w.key, { runningBuilds: w.build ? [w.build.id] : [] }));
          nextWorkerHb += 15_000;
        }
        if (w.build && performance.now() >= nextBuildHb) {
          await timed(() => api(c.url, `/api/v1/builds/${w.build!.id}/heartbeat`, w.build!.token, { progress: 10 }));
          nextBuildHb += 30_000;
        }
      }
      await polling;
    }),
  );
  clearInterval(sampler);
  const after = sampleProcess(c.proc.pid!);
  const elapsedS = (performance.now() - started) / 1000;
  await c.stop();
  shortLatencies.sort((a, b) => a - b);
  const busy = Math.round(workers * busyShare);
  return table(`Scale (${workers} simulated workers: ${busy} with a running build, ${workers - busy} long-polling; ${Math.round(elapsedS)} s)`, [
    { measure: 'requests (heartbeats, polls)', 'idle controller (baseline)': '', 'under the fleet': latencies.length },
    { measure: 'errors', 'idle controller (baseline)': '', 'under the fleet': errors },
    { measure: 'p50 latency, ms (long-polls excluded)', 'idle controller (baseline)': '', 'under the fleet': percentile(shortLatencies, 50) },
    { measure: 'p99 latency, ms (long-polls excluded)', 'idle controller (baseline)': '', 'under the fleet': percentile(shortLatencies, 99) },
    { measure: 'controller CPU, % of one core', 'idle controller (baseline)': ((idle1.cpuS - idle0.cpuS) / 5) * 100, 'under the fleet': ((after.cpuS - before.cpuS) / elapsedS) * 100 },
    { measure: 'controller RSS, MB (peak under the fleet)', 'idle controller (baseline)': idle1.rssBytes / 1e6, 'under the fleet': peakRss / 1e6 },
  ]);
}

const which = process.argv.slice(2);
const all: Record<string, () => Promise<string>> = { ingestion: heartbeatIngestion, dispatch: dispatchLatency, scale };
try {
  for (const [name, run] of Object.entries(all)) {
    if (which.length > 0 && !which.includes(name)) continue;
    console.error(`running ${name}…`);
    console.log(await run());
  }
} finally {
  await agent.close();
  rmSync(dir, { recursive: true, force: true });
}
