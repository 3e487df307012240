/**
 * Agent benchmarks (`node bench/agent/run.ts`): the real agent, controller and tart simulator.
 * 1. Overhead per build: claim → first byte of the first step, against a baseline measured in
 *    the same run — the same VM work done by hand (clone, set, run, ip --wait, SSH), no agent.
 *    Agent builds and hand-driven rounds alternate, so load on the machine hits both alike; each
 *    round's overhead is its build minus its own baseline (median and range are shown).
 * 2. Build end → slot free (completion accepted → VM deleted), against tart stop + delete by hand.
 * 3. Crash detection: `tart run` dies → build failed as vm_crashed.
 * 4. Idle agent RSS and CPU, against a bare Node process: measured before the first build (what
 *    idle loads; the build code loads at the first claim) and again after the builds.
 * 5. The agent's memory by module (modules.ts): each package's share of the whole idle graph
 *    (left out of it), what idle no longer loads, and each lazy module's share.
 * Prints markdown tables for docs/benchmarks.md. BENCH_QUICK=1 runs fewer builds.
 */
import { spawnSync } from 'node:child_process';
import { startFarm, type Farm } from '../../test/support/farm.ts';
import { load1, loadLine, percentile, table } from '../lib.ts';
import { idleFootprint, moduleMemoryRows } from './modules.ts';

const QUICK = process.env.BENCH_QUICK === '1';
const ROUNDS = QUICK ? 3 : 8;
const BOOT_DELAY_S = 0.2;

const median = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 50);
const ms = (x: number) => x.toFixed(0);
/** `median (min–max)` in ms. */
const spread = (xs: number[]) => `${ms(median(xs))} (${ms(Math.min(...xs))}–${ms(Math.max(...xs))})`;
const sleep = (t: number) => new Promise((r) => setTimeout(r, t));

/** The same VM work the agent does before the first step, by hand. */
async function manualPrepare(farm: Farm, i: number): Promise<{ prepareMs: number; releaseMs: number }> {
  const name = `manual-${i}`;
  const t0 = performance.now();
  await farm.sim.tart(['clone', 'base', name]);
  await farm.sim.tart(['set', name, '--random-mac']);
  const run = farm.sim.startRun(name, ['--no-graphics']);
  const ip = (await farm.sim.tart(['ip', name, '--wait', '30'])).stdout.trim();
  for (;;) {
    const r = spawnSync('ssh', [...farm.sim.sshArgs(ip), 'echo alive && df -h / >/dev/null'], { encoding: 'utf8', timeout: 10_000 });
    if (r.status === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const prepareMs = performance.now() - t0;
  const t1 = performance.now();
  await farm.sim.tart(['stop', name, '--timeout', '2']);
  await run.exited;
  await farm.sim.tart(['delete', name]);
  return { prepareMs, releaseMs: performance.now() - t1 };
}

async function main(): Promise<void> {
  // The agent runs as in production, from the build (`npm run build` first).
  const root = new URL('../../', import.meta.url);
  const agentCli = new URL('dist/src/cli.js', root).pathname;
  const farm = await startFarm({ heartbeatTimeoutS: 30, sim: { bootDelayS: BOOT_DELAY_S }, agentCli });
  try {
    const agent = farm.agents[0]!;
    const idleS = QUICK ? 5 : 20;
    // 4a: idle before any build (after its start-up work settles).
    await sleep(2000);
    const idleFresh = await idleFootprint(agent.proc.pid!, idleS);

    // 1 + 2: agent builds whose first step prints the time it starts, alternating with the same
    // VM work by hand.
    const firstByte: number[] = [];
    const slotFree: number[] = [];
    const manual: { prepareMs: number; releaseMs: number }[] = [];
    const loads: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      loads.push(load1());
      const id = await farm.submit({ steps: [{ name: 'stamp', run: 'echo "T0=$(date +%s%3N)"' }] });
      const b = await farm.waitBuild(id, (x) => ['succeeded', 'failed'].includes(x.status), 60_000);
      if (b.status !== 'succeeded') throw new Error(`build ${id} ${b.status}: ${await farm.log(id)}`);
      const stamp = Number(/T0=(\d+)/.exec(await farm.log(id))?.[1]);
      firstByte.push(stamp - Date.parse(b.assignedAt));
      const done = await agent.waitFor('build done', 30_000, (e) => e.buildId === id);
      slotFree.push(Number(done.time) - Date.parse(b.finishedAt));
      manual.push(await manualPrepare(farm, i));
    }
    const overhead = firstByte.map((f, i) => f - manual[i]!.prepareMs);

    // 3: crash detection.
    const crash: number[] = [];
    for (let i = 0; i < (QUICK ? 2 : 4); i++) {
      const id = await farm.submit({ steps: [{ name: 'wait', run: 'sleep 60' }] });
      await farm.waitBuild(id, (x) => x.status === 'running', 60_000);
      await sleep(500);
      const t = Date.now();
      await farm.sim.fault(`expo-mac-1-${id}-1`, 'crash');
      const b = await farm.waitBuild(id, (x) => x.status === 'failed', 30_000);
      if (b.failureReason !== 'vm_crashed') throw new Error(`crash reported as ${b.failureReason}`);
      crash.push(Date.parse(b.finishedAt) - t);
      await agent.waitFor('build done', 30_000, (e) => e.buildId === id);
    }

    // 4b: idle again, now that the build code is loaded.
    await sleep(2000);
    const idleAfter = await idleFootprint(agent.proc.pid!, idleS);

    const boot = BOOT_DELAY_S * 1000;
    console.log(
      table(`Agent overhead per build (${ROUNDS} interleaved rounds; simulator boot delay ${boot} ms)`, [
        { measure: 'baseline: clone + set + run + ip + SSH by hand', 'median (range), ms': spread(manual.map((m) => m.prepareMs)) },
        { measure: 'agent: claim → first step byte', 'median (range), ms': spread(firstByte) },
        { measure: 'agent overhead over the baseline, per round (goal ≤ 500 ms)', 'median (range), ms': spread(overhead) },
        { measure: 'baseline: tart stop + delete by hand', 'median (range), ms': spread(manual.map((m) => m.releaseMs)) },
        { measure: 'build end → slot free (goal ≤ 2 s plus stop/delete)', 'median (range), ms': spread(slotFree) },
      ]) + `\n${loadLine(loads)}\n`,
    );
    const mb = (x: number) => `${x.toFixed(1)} MB`;
    const pct = (x: number) => `${x.toFixed(2)} %`;
    console.log(
      table('Crash detection and idle footprint', [
        { measure: 'VM crash → build failed (vm_crashed), median (goal ≤ 5 s)', value: `${ms(median(crash))} ms` },
        { measure: 'VM crash → build failed, worst', value: `${ms(Math.max(...crash))} ms` },
        { measure: `idle agent RSS before any build (goal ≤ 80 MB; bare Node ${mb(idleFresh.bareMb)})`, value: mb(idleFresh.agentMb) },
        { measure: `idle agent RSS after the builds (build code loaded; bare Node ${mb(idleAfter.bareMb)})`, value: mb(idleAfter.agentMb) },
        { measure: `idle agent CPU over ${idleS} s (bare Node ${pct(idleFresh.bareCpuPct)})`, value: pct(idleFresh.agentCpuPct) },
      ]),
    );
    console.log(table("The agent's memory by module (the built agent's graph, RSS after a GC; shares by leaving one out)", moduleMemoryRows(root)));

    // ---- Sections of the other parts of issue 15: ONE call line each, printing the table(s)
    // their own bench/agent/<part>.ts returns (they may use `farm`, still running here).
    // standby: (bench/agent/standby.ts)
    // caches: (bench/agent/caches.ts)
  } finally {
    await farm.stop();
  }
}

await main();
console.log(await (await import('./standby.ts')).benchStandby({ agentCli: new URL('../../dist/src/cli.js', import.meta.url).pathname, quick: QUICK }));
console.log(await (await import('./caches.ts')).benchCaches({ quick: QUICK, agentCli: new URL('../../dist/src/cli.js', import.meta.url).pathname }));
