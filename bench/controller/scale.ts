/**
 * Scale: N simulated workers (BENCH_WORKERS, default 2000) at production rates, spread
 * round-robin over the controllers (one on SQLite, or two on one PostgreSQL database, each worker
 * created on and talking to its own). Half have a running build: a worker heartbeat every 15 s
 * and a build heartbeat every 30 s; the other half keep a long poll open. Each round is an idle
 * window (the baseline: the same controllers, nobody talking) and then a fleet window; the fleet
 * and its claimed builds carry over from round to round.
 */
import { CoreReport, QUICK, ROUNDS, load1, loadLine, percentile, sampleProcess, spread, table, watchCores, type Started } from '../lib.ts';
import { KEY, api, controllers, skipped, type Backend } from './servers.ts';

/** Printed above the table. */
const ABOUT = `Simulated workers at production rates: half have a running build (a worker heartbeat every
15 s, a build heartbeat every 30 s), half keep a 25-s long poll open. With two controllers each
worker is created on, and talks to, its own. Each round is an idle window (the baseline: the same
controllers, nobody talking) and a window under the fleet; the fleet and its builds carry over
from round to round. The latencies include the load generator's own queueing: thousands of
clients share its core.
`;

interface Member {
  id: string;
  key: string;
  c: Started;
  build?: { id: string; token: string };
}

interface Round {
  requests: number;
  errors: number;
  p50: number;
  p99: number;
  claimP99: number;
  heartbeatP99: number;
  idleCpu: number[];
  fleetCpu: number[];
  idleRss: number[];
  peakRss: number[];
}

const sleepMs = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One fleet window of `durationMs`: every worker claims or long-polls and heart-beats. */
async function fleetWindow(fleet: Member[], durationMs: number): Promise<Omit<Round, 'idleCpu' | 'fleetCpu' | 'idleRss' | 'peakRss'>> {
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
  const end = performance.now() + durationMs;
  const jitter = (ms: number) => Math.random() * ms;
  const sleep = (ms: number) => sleepMs(Math.max(0, Math.min(ms, end - performance.now())));
  await Promise.all(
    fleet.map(async (w) => {
      await sleep(jitter(2000));
      if (!w.build) {
        const claim = await timed('claim', () => api(w.c.url, `/api/v1/workers/${w.id}/poll`, w.key, { slotsFree: 1, runningBuilds: [], waitS: 0 }));
        if (claim) w.build = { id: claim.build.id, token: claim.buildToken };
      }
      let nextWorkerHb = performance.now() + jitter(15_000);
      let nextBuildHb = performance.now() + jitter(30_000);
      // An idle worker keeps a long poll open, as a real agent with a free slot does.
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
  const short = [...byKind.claim, ...byKind.heartbeat].sort((a, b) => a - b);
  for (const k of Object.values(byKind)) k.sort((a, b) => a - b);
  return { requests: latencies.length, errors, p50: percentile(short, 50), p99: percentile(short, 99), claimP99: percentile(byKind.claim, 99), heartbeatP99: percentile(byKind.heartbeat, 99) };
}

/** The scale section for one backend: `count` controllers. */
export async function benchScale(backend: Backend, count: number): Promise<string> {
  const workers = Number(process.env.BENCH_WORKERS ?? 2000);
  const idleMs = QUICK ? 1000 : 3000;
  const fleetMs = QUICK ? 5000 : 20_000;
  const busy = Math.round(workers / 2);
  const where = count === 1 ? `one controller, ${backend}` : `${count} controllers on one ${backend} database`;
  const title = `Scale (${workers} simulated workers: ${busy} with a running build, ${workers - busy} long-polling; ${where}; ${ROUNDS} rounds of ${idleMs / 1000} s idle then ${fleetMs / 1000} s under the fleet; median (min–max) over rounds)`;
  const cs = await controllers(`scale-${backend}-${count}`, backend, count, 600);
  if (typeof cs === 'string') return table(title, [skipped('measure', 'all', cs, ['idle (baseline)', 'under the fleet'])]);
  try {
    // Set-up, 50 requests at a time (not measured).
    const fleet: Member[] = [];
    for (let w0 = 0; w0 < workers; w0 += 50) {
      const batch = Array.from({ length: Math.min(50, workers - w0) }, (_, i) => w0 + i);
      fleet.push(...(await Promise.all(batch.map(async (w) => ({ id: `w${w}`, c: cs[w % count]!, key: (await api(cs[w % count]!.url, '/api/v1/workers', KEY, { id: `w${w}` })).apiKey as string })))));
    }
    for (let b0 = 0; b0 < busy; b0 += 50) {
      const batch = Array.from({ length: Math.min(50, busy - b0) }, (_, i) => b0 + i);
      await Promise.all(batch.map((b) => api(cs[b % count]!.url, '/api/v1/builds', KEY, { steps: [{ name: 's', run: 'true' }] })));
    }
    const pids = cs.map((c) => c.proc.pid!);
    const rounds: Round[] = [];
    const loads: number[] = [];
    const cores = new CoreReport();
    for (let r = 0; r < ROUNDS; r++) {
      loads.push(load1());
      const idle0 = pids.map(sampleProcess);
      await sleepMs(idleMs);
      const idle1 = pids.map(sampleProcess);
      const peakRss = idle1.map((s) => s.rssBytes);
      const sampler = setInterval(() => pids.forEach((pid, i) => (peakRss[i] = Math.max(peakRss[i]!, sampleProcess(pid).rssBytes))), 500);
      const watch = watchCores(pids[0]!);
      const t = performance.now();
      const w = await fleetWindow(fleet, fleetMs);
      const elapsedS = (performance.now() - t) / 1000;
      cores.add(watch.stop());
      clearInterval(sampler);
      const after = pids.map(sampleProcess);
      rounds.push({
        ...w,
        idleCpu: pids.map((_, i) => ((idle1[i]!.cpuS - idle0[i]!.cpuS) / (idleMs / 1000)) * 100),
        fleetCpu: pids.map((_, i) => ((after[i]!.cpuS - idle1[i]!.cpuS) / elapsedS) * 100),
        idleRss: idle1.map((s) => s.rssBytes / 1e6),
        peakRss: peakRss.map((b) => b / 1e6),
      });
    }
    const of = (f: (x: Round) => number, digits = 2) => spread(rounds.map(f), digits);
    const name = (i: number) => (count === 1 ? 'controller' : `controller ${String.fromCharCode(65 + i)}`);
    return [
      count === 1 ? ABOUT : '',
      table(title, [
        { measure: 'requests (heartbeats, polls)', 'idle (baseline)': '', 'under the fleet': of((x) => x.requests, 0) },
        { measure: 'errors', 'idle (baseline)': '', 'under the fleet': of((x) => x.errors, 0) },
        { measure: 'p50 latency, ms (long polls excluded)', 'idle (baseline)': '', 'under the fleet': of((x) => x.p50) },
        { measure: 'p99 latency, ms (long polls excluded)', 'idle (baseline)': '', 'under the fleet': of((x) => x.p99) },
        { measure: 'p99 latency of claiming polls (waitS 0), ms', 'idle (baseline)': '', 'under the fleet': of((x) => x.claimP99) },
        { measure: 'p99 latency of heartbeats, ms', 'idle (baseline)': '', 'under the fleet': of((x) => x.heartbeatP99) },
        ...cs.flatMap((_, i) => [
          { measure: `${name(i)} CPU, % of one core`, 'idle (baseline)': of((x) => x.idleCpu[i]!, 1), 'under the fleet': of((x) => x.fleetCpu[i]!, 1) },
          { measure: `${name(i)} RSS, MB (peak under the fleet)`, 'idle (baseline)': of((x) => x.idleRss[i]!, 1), 'under the fleet': of((x) => x.peakRss[i]!, 1) },
        ]),
      ]),
      `${loadLine(loads)} ${cores.line()}`,
      '',
    ].join('\n');
  } finally {
    await Promise.all(cs.map((c) => c.stop()));
  }
}
