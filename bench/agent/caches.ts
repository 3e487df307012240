/**
 * Host cache benchmark (issue 15), called from bench/agent/run.ts: a sequence of builds on a
 * farm of its own (the real agent with one cache, the real controller, the tart simulator) whose
 * step stands for `pod install`: it "fetches" (a fixed sleep, then writes a payload) only what
 * the cache lacks. The sequence has what real traffic has — a first build (miss), repeats
 * (hits), a failed build (no promotion) and a new key (a miss of its own variant). Reports the
 * hit rate the agent's metric counted and the step's time with and without a hit, the baseline
 * being the misses of the same run.
 */
import { request } from 'undici';
import { startFarm } from '../../test/support/farm.ts';
import { percentile, table } from '../lib.ts';

/** Seconds the simulated fetch takes on a miss. */
const FETCH_S = 2;
/** Bytes of the simulated pods. */
const PAYLOAD_BYTES = 20_000_000;

const median = (xs: number[]): number => (xs.length === 0 ? Number.NaN : percentile([...xs].sort((a, b) => a - b), 50));

/** Runs the sequence and returns its markdown table. */
export async function benchCaches(o: { quick: boolean; agentCli?: string }): Promise<string> {
  const farm = await startFarm({ heartbeatTimeoutS: 30, sim: { bootDelayS: 0.2 }, agent: false, agentCli: o.agentCli });
  try {
    const agent = await farm.startAgent({
      cacheDir: `${farm.sim.dir}/caches`,
      vmSharedFilesRoot: '~/My Shared Files',
      caches: [{ name: 'cocoapods', guestPath: '~/Library/Caches/CocoaPods', key: '$PODS_KEY', maxSizeGb: 1 }],
    });
    const url = String((await agent.waitFor('status server listening', 60_000)).url);
    const pods = '~/Library/Caches/CocoaPods/pods.bin';
    const install = `s=$(date +%s%3N); if [ ! -f ${pods} ]; then sleep ${FETCH_S}; head -c ${PAYLOAD_BYTES} /dev/zero > ${pods}; fi; echo "STEP_MS=$(( $(date +%s%3N) - s ))"`;
    // [key, fails]: the sequence, in order.
    const plan: [string, boolean][] = o.quick
      ? [['a', false], ['a', false], ['a', true], ['a', false], ['b', false], ['b', false]]
      : [['a', false], ['a', false], ['a', false], ['a', true], ['a', false], ['b', false], ['b', false], ['a', false], ['a', false], ['b', false]];
    const hitMs: number[] = [];
    const missMs: number[] = [];
    for (const [key, fails] of plan) {
      const id = await farm.submit({ steps: [{ name: 'pod install', run: fails ? `${install}; exit 1` : install }], env: { PODS_KEY: key } });
      await farm.waitBuild(id, (b) => ['succeeded', 'failed', 'cancelled'].includes(b.status), 120_000);
      await agent.waitFor('build done', 60_000, (e) => e.buildId === id);
      const log = await farm.log(id);
      const ms = Number(/STEP_MS=(\d+)/.exec(log)?.[1]);
      (log.includes('cache cocoapods') && log.includes(': hit') ? hitMs : missMs).push(ms);
    }
    const metrics = await (await request(`${url}/metrics`)).body.text();
    const count = (r: string) => Number(new RegExp(`expo_worker_agent_cache_total\\{cache="cocoapods",result="${r}"\\} (\\d+)`).exec(metrics)?.[1] ?? 0);
    const hits = count('hit');
    const total = hits + count('miss');
    return table(`Host cache over ${plan.length} builds (2 keys, 1 failed build; a miss fetches for ${FETCH_S} s and writes ${PAYLOAD_BYTES / 1e6} MB)`, [
      { measure: 'cache hit rate (expo_worker_agent_cache_total)', value: `${hits}/${total} = ${((hits / total) * 100).toFixed(0)} %` },
      { measure: `"pod install" step on a miss (baseline), median of ${missMs.length}`, value: `${median(missMs).toFixed(0)} ms` },
      { measure: `"pod install" step on a hit, median of ${hitMs.length}`, value: `${median(hitMs).toFixed(0)} ms` },
    ]);
  } finally {
    await farm.stop();
  }
}
