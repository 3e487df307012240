/**
 * Standby VM benchmark (issue 15): claim → first step byte with the tart simulator's boot delay
 * at 20 s (BENCH_QUICK: 5 s), without a standby (each claim clones and boots) and with
 * `standby: 1` (each claim finds a VM booted ahead of time), and with `standby: 1` plus a host
 * cache whose base holds {@link CACHE_FILES} files (the claim copies them into the standby's
 * share: the price of combining the two). The real agent, controller and simulator; the first
 * step prints the time it starts, against the controller's claim time.
 * Goal: ≤ 2 s with a standby. `bench/agent/run.ts` calls {@link benchStandby}.
 */
import { startFarm, type Farm } from '../../test/support/farm.ts';
import { percentile, table } from '../lib.ts';

export interface StandbyBenchOptions {
  /** The CLI the agent runs (run.ts passes the build); default the TypeScript source. */
  agentCli?: string;
  /** Fewer builds and a 5-s boot delay. */
  quick?: boolean;
}

const median = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 50);

/** Files in the cache's base for the standby + cache rows: a small CocoaPods cache's order. */
export const CACHE_FILES = 2000;

/** One build whose first step stamps its start: claim → first step byte, ms. */
async function firstStepMs(farm: Farm, mustLog?: string): Promise<number> {
  const id = await farm.submit({ steps: [{ name: 'stamp', run: 'echo "T0=$(date +%s%3N)"' }] });
  const b = await farm.waitBuild(id, (x) => ['succeeded', 'failed', 'cancelled'].includes(x.status), 300_000);
  if (b.status !== 'succeeded') throw new Error(`build ${id} ${b.status}: ${await farm.log(id)}`);
  const log = await farm.log(id);
  // A row is only what it says it is (a cache row whose copy failed would be a fast non-hit).
  if (mustLog !== undefined && !log.includes(mustLog)) throw new Error(`build ${id} did not log "${mustLog}": ${log}`);
  const stamp = Number(/T0=(\d+)/.exec(log)?.[1]);
  await farm.agents.at(-1)!.waitFor('build done', 120_000, (e) => e.buildId === id);
  return stamp - Date.parse(b.assignedAt);
}

/** Runs the benchmark; returns its markdown table (the delay used is in its title). */
export async function benchStandby(options: StandbyBenchOptions = {}): Promise<string> {
  const bootDelayS = options.quick ? 5 : 20;
  const builds = options.quick ? 1 : 3;
  const farm = await startFarm({
    heartbeatTimeoutS: 60,
    sim: { bootDelayS },
    agent: false,
    agentCli: options.agentCli,
    // Room for the slow boot: the farm's defaults assume a 0.2-s one.
    agentConfig: { vmIpWaitS: bootDelayS * 4, sshReadyTimeoutS: bootDelayS * 4 },
  });
  try {
    const without: number[] = [];
    const cold = await farm.startAgent({ standby: 0 });
    for (let i = 0; i < builds; i++) without.push(await firstStepMs(farm));
    cold.signal('SIGTERM');
    await cold.exited;

    const withStandby: number[] = [];
    const warm = await farm.startAgent({ standby: 1 });
    const seen: string[] = [];
    for (let i = 0; i < builds; i++) {
      // An idle agent with its standby booted: the case the feature is for.
      const ready = await warm.waitFor('standby VM ready', 120_000 + bootDelayS * 4000, (e) => !seen.includes(String(e.vm)));
      seen.push(String(ready.vm));
      withStandby.push(await firstStepMs(farm));
    }
    warm.signal('SIGTERM');
    await warm.exited;

    const withCache: number[] = [];
    const cached = await farm.startAgent({
      standby: 1,
      cacheDir: `${farm.sim.dir}/caches`,
      vmSharedFilesRoot: '~/My Shared Files',
      caches: [{ name: 'cocoapods', guestPath: '~/Library/Caches/CocoaPods' }],
    });
    const seenCached: string[] = [];
    const standbyReady = async () => {
      const ready = await cached.waitFor('standby VM ready', 120_000 + bootDelayS * 4000, (e) => !seenCached.includes(String(e.vm)));
      seenCached.push(String(ready.vm));
    };
    // The base every measured claim copies: one build writes it.
    await standbyReady();
    const seed = await farm.submit({ steps: [{ name: 'seed', run: `mkdir -p ~/Library/Caches/CocoaPods/specs && cd ~/Library/Caches/CocoaPods/specs && for i in $(seq ${CACHE_FILES}); do echo "spec $i" > s$i; done` }] });
    const seeded = await farm.waitBuild(seed, (x) => ['succeeded', 'failed', 'cancelled'].includes(x.status), 300_000);
    if (seeded.status !== 'succeeded') throw new Error(`seed build ${seeded.status}: ${await farm.log(seed)}`);
    await cached.waitFor('build done', 120_000, (e) => e.buildId === seed);
    for (let i = 0; i < builds; i++) {
      await standbyReady();
      withCache.push(await firstStepMs(farm, '[expo-worker] cache cocoapods: hit'));
    }
    cached.signal('SIGTERM');
    await cached.exited;
    return table(`Claim → first step byte, with and without a standby VM (simulator boot delay ${bootDelayS} s, ${builds} build(s) each)`, [
      { measure: 'without a standby (clone + boot + checks after the claim), median', ms: Math.round(median(without)) },
      { measure: 'with standby: 1 (a VM booted ahead of time), median (goal ≤ 2000 ms)', ms: Math.round(median(withStandby)) },
      { measure: 'with standby: 1, worst', ms: Math.round(Math.max(...withStandby)) },
      { measure: `with standby: 1 and a cache hit (${CACHE_FILES} files copied into the standby's share at the claim; Linux \`cp -a\`, not an APFS clone), median`, ms: Math.round(median(withCache)) },
      { measure: 'with standby: 1 and a cache hit, worst', ms: Math.round(Math.max(...withCache)) },
    ]);
  } finally {
    await farm.stop();
  }
}
