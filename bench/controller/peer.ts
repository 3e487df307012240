/**
 * The peer for dispatch latency: graphile-worker 0.18 (a devDependency, never a dependency) on a
 * real PostgreSQL, measured the way its own latency test does (perfTest/latencyTest.js in
 * graphile/worker): a running worker pool with its perf-test settings (24 concurrent jobs, a
 * local queue of 500, no batching delays), then jobs added one at a time with
 * `graphile_worker.add_job(…)` on one connection, each timed from just before the `add_job`
 * query to the moment its task handler starts, the next one added only after that. The worker
 * and the adding client share this process, as in its test. dispatch (run.ts) interleaves
 * `measure()` rounds with our own submit → claim rounds on the same PostgreSQL server.
 */
import { Logger, run, type Runner } from 'graphile-worker';
import pg from 'pg';

/** A running graphile-worker pool with its job-adding client. */
export interface Peer {
  /** Adds `jobs` jobs one at a time; answers each one's add → task start latency, ms, sorted. */
  measure(jobs: number): Promise<number[]>;
  stop(): Promise<void>;
}

/** graphile-worker's perf-test settings (perfTest/graphile.config.js). */
const CONCURRENT_JOBS = 24;

/** Starts graphile-worker on the (empty) database at `connectionString`; it installs its schema. */
export async function startGraphileWorker(connectionString: string): Promise<Peer> {
  const pool = new pg.Pool({ connectionString, max: CONCURRENT_JOBS + 1 });
  // An idle client's error (the server going away at the end of the run) must not crash the bench.
  pool.on('error', () => undefined);
  pool.on('connect', (client) => client.on('error', () => undefined));
  let startedAt = 0;
  let latencies: number[] = [];
  let started: (() => void) | null = null;
  let runner: Runner;
  try {
    runner = await run({
      pgPool: pool,
      concurrency: CONCURRENT_JOBS,
      noHandleSignals: true,
      // Silent, as the perf test runs with success logging off: logging is not what is measured.
      logger: new Logger(() => () => undefined),
      preset: {
        worker: {
          concurrentJobs: CONCURRENT_JOBS,
          maxPoolSize: CONCURRENT_JOBS + 1,
          localQueue: { size: 500, refetchDelay: { durationMs: 10 } },
          completeJobBatchDelay: 0,
          failJobBatchDelay: 0,
          gracefulShutdownAbortTimeout: 2500,
        },
      },
      taskList: {
        latency: () => {
          latencies.push(performance.now() - startedAt);
          started?.();
        },
      },
    });
  } catch (err) {
    await pool.end();
    throw err;
  }
  const client = await pool.connect();
  const addOne = async (): Promise<void> => {
    const handled = new Promise<void>((resolve) => (started = resolve));
    startedAt = performance.now();
    await client.query(`select graphile_worker.add_job('latency', json_build_object('id', 1))`);
    await handled;
  };
  const measure = async (jobs: number): Promise<number[]> => {
    latencies = [];
    for (let i = 0; i < jobs; i++) await addOne();
    const out = latencies.sort((a, b) => a - b);
    latencies = [];
    return out;
  };
  return {
    measure,
    stop: async () => {
      client.release();
      await runner.stop();
      await pool.end();
    },
  };
}
