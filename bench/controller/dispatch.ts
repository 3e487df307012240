/**
 * Dispatch latency: submit → an idle long-polling worker has the claim, one build at a time,
 * with 100 workers parked in long polls; on SQLite, on PostgreSQL (one controller), and across
 * two controllers on one PostgreSQL database (submitted on A, claimed through B: the wake-up
 * crosses controllers). Beside them in the same run: the floor (one HTTP round trip to a bare
 * Fastify route) and the peer, graphile-worker 0.18 on the same PostgreSQL server measured the
 * way its own latency test does (peer.ts). Every subject runs for the whole bench and each round
 * measures all of them in turn; the goals are judged per round (our p99 against that round's
 * graphile-worker p99).
 */
import { request } from 'undici';
import { CoreReport, QUICK, ROUNDS, load1, watchCores, loadLine, percentile, spread, table, verdict, type Started } from '../lib.ts';
import { KEY, agent, api, controllers, pgDatabase, skipped, startBare, type Backend } from './servers.ts';

const WORKERS = 100;

/** Printed above the tables. */
const ABOUT = `Submit → claim received: with ${WORKERS} idle workers parked in long polls, a build is submitted
and timed until one worker's poll answers with its claim; the next build follows once that
worker has completed it and parked again. Measured on SQLite, on PostgreSQL with one
controller, and across two controllers on one PostgreSQL database (submitted on A, claimed by a poll parked on B: the
wake-up crosses controllers). The floor is one plain HTTP round trip to a bare Fastify route.
The peer is graphile-worker 0.18 on the same PostgreSQL server, in a database of its own,
measured as its perfTest/latencyTest.js does: jobs added one at a time with
\`graphile_worker.add_job\` on one connection while its worker pool runs (24 concurrent jobs,
local queue of 500, no batching delays), each timed until its task handler starts. Each subject
is warmed up first (not counted); the goals are judged per round, our p99 against that same
round's graphile-worker p99.
`;

interface Subject {
  label: string;
  /** The server process to watch for core sharing (ours), if any. */
  pid?: number;
  /** Measures `n` dispatches one at a time; answers their latencies, ms, sorted. */
  measure(n: number): Promise<number[]>;
  stop(): Promise<void>;
}

/**
 * `WORKERS` idle long-polling workers on `pollOn`, builds submitted to `submitTo` (the same
 * controller, or another one on the same database).
 */
async function dispatchSubject(label: string, submitTo: Started, pollOn: Started): Promise<Subject> {
  const keys = await Promise.all(Array.from({ length: WORKERS }, async (_, w) => (await api(pollOn.url, '/api/v1/workers', KEY, { id: `w${w}` })).apiKey as string));
  let latencies: number[] = [];
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
      // The next submission waits for this completion: it would otherwise share the controller
      // with it and time two requests' work as one dispatch.
      await api(pollOn.url, `/api/v1/builds/${res.build.id}/complete`, key, { lease: res.lease, status: 'succeeded' });
      wake?.();
    }
  });
  const settled = Promise.allSettled(loops); // handled from the start: stopping the controller ends the open polls
  await new Promise((r) => setTimeout(r, 1000)); // let every worker park its long poll
  return {
    label,
    pid: submitTo.proc.pid,
    measure: async (n) => {
      latencies = [];
      for (let b = 0; b < n; b++) {
        const claimed = new Promise<void>((r) => (wake = r));
        submittedAt = performance.now();
        const res = await request(`${submitTo.url}/api/v1/builds`, {
          method: 'POST',
          dispatcher: agent,
          headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
          body: JSON.stringify({ steps: [{ name: 's', run: 'true' }] }),
        });
        await res.body.dump();
        await claimed; // and completed
        await new Promise((r) => setTimeout(r, 5)); // the claiming worker re-parks its poll
      }
      return latencies.sort((a, b) => a - b);
    },
    stop: async () => {
      done = true;
      await Promise.all([...new Set([submitTo, pollOn])].map((c) => c.stop()));
      await settled;
    },
  };
}

/** The floor: one plain HTTP round trip to the bare route per sample. */
async function floorSubject(): Promise<Subject> {
  const bare = await startBare();
  return {
    label: 'floor: one HTTP round trip to a bare Fastify route',
    measure: async (n) => {
      const out: number[] = [];
      for (let b = 0; b < n; b++) {
        const t = performance.now();
        await api(bare.url, '/api/v1/builds/aaaaaaaaaaaaaaaa/heartbeat', KEY, {});
        out.push(performance.now() - t);
      }
      return out.sort((a, b) => a - b);
    },
    stop: () => bare.stop(),
  };
}

async function ours(label: string, backend: Backend, count: number): Promise<Subject | string> {
  const cs = await controllers(`dispatch-${backend}-${count}`, backend, count);
  if (typeof cs === 'string') return cs;
  return dispatchSubject(label, cs[0]!, cs[cs.length - 1]!);
}

const SQLITE = 'expo-worker, SQLite: submit → claim received';
const PG = 'expo-worker, PostgreSQL, one controller: submit → claim received';
const PG2 = 'expo-worker, PostgreSQL, submitted on controller A, claimed through B';
const PEER = 'graphile-worker 0.18, PostgreSQL: add_job → task handler starts';

/** Runs the interleaved rounds and answers the section's markdown. */
export async function benchDispatch(): Promise<string> {
  const n = QUICK ? 40 : 300;
  const cols = ['p50 ms', 'p99 ms'];
  const subjects: Subject[] = [];
  const skips: Record<string, string>[] = [];
  try {
    subjects.push(await floorSubject());
    for (const [label, backend, count] of [[SQLITE, 'SQLite', 1], [PG, 'PostgreSQL', 1], [PG2, 'PostgreSQL', 2]] as const) {
      const s = await ours(label, backend, count);
      if (typeof s === 'string') skips.push(skipped('measure', label, s, cols));
      else subjects.push(s);
    }
    try {
      // Loaded here: without the devDependency installed the peer's row is skipped, not the bench.
      const { startGraphileWorker } = await import('./peer.ts');
      const peer = await startGraphileWorker(await pgDatabase());
      subjects.push({ label: PEER, ...peer });
    } catch (err) {
      skips.push(skipped('measure', PEER, (err as Error).message.split('\n')[0]!, cols));
    }
    // Warm-up, not counted (graphile-worker's own test warms up with 100 jobs).
    for (const s of subjects) await s.measure(QUICK ? 10 : 100);
    console.error(`dispatch: ${subjects.length} subjects ready and warmed up`);
    const p50 = subjects.map(() => [] as number[]);
    const p99 = subjects.map(() => [] as number[]);
    const loads: number[] = [];
    const cores = new CoreReport();
    for (let r = 0; r < ROUNDS; r++) {
      loads.push(load1());
      for (const [k, s] of subjects.entries()) {
        const watch = s.pid === undefined ? null : watchCores(s.pid);
        const l = await s.measure(n);
        if (watch) cores.add(watch.stop());
        p50[k]!.push(percentile(l, 50));
        p99[k]!.push(percentile(l, 99));
      }
    }
    const rows = subjects.map((s, k) => ({ measure: s.label, 'p50 ms': spread(p50[k]!), 'p99 ms': spread(p99[k]!) }));
    const at = (label: string) => subjects.findIndex((s) => s.label === label);
    const goals: Record<string, string>[] = [];
    const peer = at(PEER);
    for (const [label, name] of [[SQLITE, 'SQLite'], [PG, 'PostgreSQL']] as const) {
      const k = at(label);
      if (k < 0) continue;
      goals.push({ goal: `${name}: p50 ≤ 1 ms`, 'per round, median (range)': `${spread(p50[k]!)} ms`, verdict: verdict(p50[k]!.map((x) => x <= 1)) });
      if (peer < 0) goals.push({ goal: `${name}: p99 below graphile-worker's`, 'per round, median (range)': '', verdict: 'no graphile-worker rows (skipped above)' });
      else {
        const ratio = p99[k]!.map((x, r) => x / p99[peer]![r]!);
        goals.push({ goal: `${name}: p99 below graphile-worker's (ours ÷ theirs < 1)`, 'per round, median (range)': spread(ratio), verdict: verdict(ratio.map((x) => x < 1)) });
      }
    }
    const k2 = at(PG2);
    if (k2 >= 0) goals.push({ goal: 'PostgreSQL across controllers: p99 ≤ 100 ms', 'per round, median (range)': `${spread(p99[k2]!)} ms`, verdict: verdict(p99[k2]!.map((x) => x <= 100)) });
    return [
      ABOUT,
      table(`Dispatch latency (${WORKERS} idle long-polling workers; ${ROUNDS} rounds of ${n} builds submitted one at a time per subject, interleaved; median (min–max) of each round's p50 and p99)`, [...rows, ...skips]),
      goals.length > 0 ? table('Dispatch goals, judged per round', goals) : '',
      `${loadLine(loads)} ${cores.line()} Our controllers (and PostgreSQL) run as servers, the workers and the submitting client in the load generator; graphile-worker runs its pool and its adding client in the load generator's process, as its own test does, against the same PostgreSQL server.`,
      '',
    ].join('\n');
  } finally {
    for (const s of subjects) await s.stop().catch(() => undefined);
  }
}
