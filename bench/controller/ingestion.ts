/**
 * Heartbeat ingestion: POST /api/v1/builds/:id/heartbeat at full speed over 32 keep-alive
 * connections, against a bare Fastify route (the baseline), SQLite and PostgreSQL controllers.
 * All servers run for the whole bench; each round measures the baseline and then each subject
 * for the same time, and the ratios are taken per round (subject ÷ that round's baseline).
 * Besides requests/s, the server's CPU per request comes from /proc/<pid>/stat (utime + stime
 * over the window ÷ requests answered): it does not depend on how much CPU the load generator
 * gets. On PostgreSQL it is the controller process's CPU only (PostgreSQL's own backends are
 * other processes, not counted).
 */
import { CoreReport, QUICK, ROUNDS, hammer, load1, loadLine, sampleProcess, spread, table, verdict, watchCores, type Started } from '../lib.ts';
import { KEY, api, controllers, skipped, startBare } from './servers.ts';

const GOAL = 0.6;

/** Printed above the tables. */
const ABOUT = `Heartbeats sent as fast as 32 keep-alive connections allow, each with a build's token, to a
bare Fastify route answering the same JSON (the baseline) and to controllers on SQLite and on
PostgreSQL, each holding 50 claimed builds whose tokens the load cycles through. The server's CPU
per request is its utime + stime from /proc/<pid>/stat over the window ÷ the requests it
answered; on PostgreSQL that is the controller process only (PostgreSQL's backends are not
counted). The ratios are per round: the controller's requests/s ÷ the baseline's, and the
baseline's CPU per request ÷ the controller's (so that for both, 1 is "as cheap as a bare route"
and the goal is ≥ ${GOAL}×).
`;
const CONNECTIONS = 32;

interface Subject {
  label: string;
  server: Started;
  next: () => { path: string; headers: Record<string, string>; body: string };
}

interface Window {
  rps: number;
  cpuUsPerRequest: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

/** One measured window on one server: load, latency and the server's CPU per request. */
async function measure(s: Subject, durationMs: number, cores: CoreReport): Promise<Window> {
  const pid = s.server.proc.pid!;
  const before = sampleProcess(pid);
  const watch = watchCores(pid);
  const r = await hammer({ url: s.server.url, next: s.next, connections: CONNECTIONS, durationMs });
  cores.add(watch.stop());
  const after = sampleProcess(pid);
  return { rps: r.rps, cpuUsPerRequest: ((after.cpuS - before.cpuS) / Math.max(1, r.requests)) * 1e6, p50Ms: r.p50Ms, p99Ms: r.p99Ms, errors: r.errors };
}

/** A controller with 50 claimed builds whose tokens the load cycles through. */
async function controllerSubject(backend: 'SQLite' | 'PostgreSQL'): Promise<Subject | string> {
  const started = await controllers(`ingest-${backend}`, backend, 1, 3600);
  if (typeof started === 'string') return started;
  const c = started[0]!;
  const { apiKey } = await api(c.url, '/api/v1/workers', KEY, { id: 'bench' });
  const tokens: { id: string; token: string }[] = [];
  for (let i = 0; i < 50; i++) {
    const { id } = await api(c.url, '/api/v1/builds', KEY, { steps: [{ name: 's', run: 'true' }] });
    const claim = await api(c.url, '/api/v1/workers/bench/poll', apiKey, { slotsFree: 1, runningBuilds: [], waitS: 0 });
    tokens.push({ id, token: claim.buildToken });
  }
  let i = 0;
  return {
    label: `expo-worker controller, ${backend}`,
    server: c,
    next: () => {
      const t = tokens[i++ % tokens.length]!;
      return { path: `/api/v1/builds/${t.id}/heartbeat`, headers: { authorization: `Bearer ${t.token}` }, body: '{"progress":5}' };
    },
  };
}

/** Runs the interleaved rounds and answers the section's markdown. */
export async function benchIngestion(): Promise<string> {
  const durationMs = QUICK ? 2000 : 5000;
  const cols = ['requests/s', 'server CPU µs/request', 'p50 ms', 'p99 ms', 'errors'];
  const baseline: Subject = {
    label: 'bare Fastify route (baseline)',
    server: await startBare(),
    next: () => ({ path: '/api/v1/builds/aaaaaaaaaaaaaaaa/heartbeat', headers: {}, body: '{"progress":5}' }),
  };
  const subjects: Subject[] = [];
  const skips: Record<string, string>[] = [];
  try {
    for (const backend of ['SQLite', 'PostgreSQL'] as const) {
      const s = await controllerSubject(backend);
      if (typeof s === 'string') skips.push(skipped('server', `expo-worker controller, ${backend}`, s, cols));
      else subjects.push(s);
    }
    const all = [baseline, ...subjects];
    const cores = new CoreReport();
    // Warm-up, not counted: JIT, SQLite page cache, PostgreSQL plan cache.
    for (const s of all) await measure(s, 1000, new CoreReport());
    const windows = all.map(() => [] as Window[]);
    const loads: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      loads.push(load1());
      for (const [k, s] of all.entries()) windows[k]!.push(await measure(s, durationMs, cores));
    }
    const rows: Record<string, string | number>[] = all.map((s, k) => {
      const w = windows[k]!;
      return {
        server: s.label,
        'requests/s': spread(w.map((x) => x.rps), 0),
        'server CPU µs/request': spread(w.map((x) => x.cpuUsPerRequest), 1),
        'p50 ms': spread(w.map((x) => x.p50Ms)),
        'p99 ms': spread(w.map((x) => x.p99Ms)),
        errors: w.reduce((n, x) => n + x.errors, 0),
      };
    });
    const goals: Record<string, string | number>[] = [];
    for (const [k, s] of subjects.entries()) {
      const w = windows[k + 1]!;
      const base = windows[0]!;
      const rps = w.map((x, r) => x.rps / base[r]!.rps);
      const cpu = w.map((x, r) => base[r]!.cpuUsPerRequest / x.cpuUsPerRequest);
      const backend = s.label.split(', ')[1];
      goals.push(
        { goal: `${backend}: requests/s ÷ baseline's (goal ≥ ${GOAL}×)`, 'per round, median (range)': spread(rps), verdict: verdict(rps.map((x) => x >= GOAL)) },
        { goal: `${backend}: baseline's CPU/request ÷ controller's (goal ≥ ${GOAL}×)`, 'per round, median (range)': spread(cpu), verdict: verdict(cpu.map((x) => x >= GOAL)) },
      );
    }
    const secs = durationMs / 1000;
    return [
      ABOUT,
      table(`Heartbeat ingestion (POST /api/v1/builds/:id/heartbeat, ${CONNECTIONS} connections; ${ROUNDS} rounds of ${secs} s per server, interleaved; median (min–max) over rounds)`, [...rows, ...skips]),
      goals.length > 0 ? table('Heartbeat ingestion against the bare route, per round', goals) : '',
      `${loadLine(loads)} ${cores.line()}`,
      '',
    ].join('\n');
  } finally {
    await Promise.all([baseline, ...subjects].map((s) => s.server.stop()));
  }
}
