/**
 * Agent benchmarks (`node bench/agent/run.ts`): the real agent, controller and tart simulator.
 * 1. Overhead per build: claim → first byte of the first step, against a baseline measured in
 *    the same run — the same VM work done by hand (clone, set, run, ip --wait, SSH), no agent.
 * 2. Build end → slot free (completion accepted → VM deleted), against tart stop + delete by hand.
 * 3. Crash detection: `tart run` dies → build failed as vm_crashed.
 * 4. Idle agent RSS and CPU, against a bare Node process.
 * Prints markdown tables for docs/benchmarks.md. BENCH_QUICK=1 runs fewer builds.
 */
import { spawn, spawnSync } from 'node:child_process';
import { startFarm, type Farm } from '../../test/support/farm.ts';
import { percentile, sampleProcess, table } from '../lib.ts';

const QUICK = process.env.BENCH_QUICK === '1';
const BUILDS = QUICK ? 3 : 8;
const BOOT_DELAY_S = 0.2;

const median = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 50);

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
  const agentCli = new URL('../../dist/src/cli.js', import.meta.url).pathname;
  const farm = await startFarm({ heartbeatTimeoutS: 30, sim: { bootDelayS: BOOT_DELAY_S }, agentCli });
  try {
    const agent = farm.agents[0]!;
    // 1 + 2: builds whose first step prints the time it starts.
    const firstByte: number[] = [];
    const slotFree: number[] = [];
    for (let i = 0; i < BUILDS; i++) {
      const id = await farm.submit({ steps: [{ name: 'stamp', run: 'echo "T0=$(date +%s%3N)"' }] });
      const b = await farm.waitBuild(id, (x) => ['succeeded', 'failed'].includes(x.status), 60_000);
      if (b.status !== 'succeeded') throw new Error(`build ${id} ${b.status}: ${await farm.log(id)}`);
      const stamp = Number(/T0=(\d+)/.exec(await farm.log(id))?.[1]);
      firstByte.push(stamp - Date.parse(b.assignedAt));
      const done = await agent.waitFor('build done', 30_000, (e) => e.buildId === id);
      slotFree.push(Number(done.time) - Date.parse(b.finishedAt));
    }
    const manual = [];
    for (let i = 0; i < BUILDS; i++) manual.push(await manualPrepare(farm, i));

    // 3: crash detection.
    const crash: number[] = [];
    for (let i = 0; i < (QUICK ? 2 : 4); i++) {
      const id = await farm.submit({ steps: [{ name: 'wait', run: 'sleep 60' }] });
      await farm.waitBuild(id, (x) => x.status === 'running', 60_000);
      await new Promise((r) => setTimeout(r, 500));
      const t = Date.now();
      await farm.sim.fault(`expo-mac-1-${id}-1`, 'crash');
      const b = await farm.waitBuild(id, (x) => x.status === 'failed', 30_000);
      if (b.failureReason !== 'vm_crashed') throw new Error(`crash reported as ${b.failureReason}`);
      crash.push(Date.parse(b.finishedAt) - t);
      await agent.waitFor('build done', 30_000, (e) => e.buildId === id);
    }

    // 4: idle agent, against a bare Node process.
    await new Promise((r) => setTimeout(r, 2000));
    const bare = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 1000));
    const a0 = sampleProcess(agent.proc.pid!);
    const n0 = sampleProcess(bare.pid!);
    const idleS = QUICK ? 5 : 20;
    await new Promise((r) => setTimeout(r, idleS * 1000));
    const a1 = sampleProcess(agent.proc.pid!);
    const n1 = sampleProcess(bare.pid!);
    bare.kill();

    const boot = BOOT_DELAY_S * 1000;
    console.log(
      table(`Agent overhead per build (${BUILDS} builds; simulator boot delay ${boot} ms)`, [
        { measure: 'baseline: clone + set + run + ip + SSH by hand, median', ms: median(manual.map((m) => m.prepareMs)) },
        { measure: 'claim → first step byte, median', ms: median(firstByte) },
        { measure: 'claim → first step byte minus the boot delay, median (goal ≤ 500 ms of agent overhead over the baseline)', ms: median(firstByte) - boot },
        { measure: 'agent overhead over the baseline, median', ms: median(firstByte) - median(manual.map((m) => m.prepareMs)) },
        { measure: 'baseline: tart stop + delete by hand, median', ms: median(manual.map((m) => m.releaseMs)) },
        { measure: 'build end → slot free, median (goal ≤ 2 s plus stop/delete)', ms: median(slotFree) },
      ]),
    );
    console.log(
      table('Crash detection and idle footprint', [
        { measure: 'VM crash → build failed (vm_crashed), median (goal ≤ 5 s)', value: `${median(crash).toFixed(0)} ms` },
        { measure: 'VM crash → build failed, worst', value: `${Math.max(...crash).toFixed(0)} ms` },
        { measure: `idle agent RSS (baseline: bare Node ${(n1.rssBytes / 1e6).toFixed(1)} MB; goal ≤ 80 MB)`, value: `${(a1.rssBytes / 1e6).toFixed(1)} MB` },
        {
          measure: `idle agent CPU over ${idleS} s (baseline: bare Node ${(((n1.cpuS - n0.cpuS) / idleS) * 100).toFixed(2)} %)`,
          value: `${(((a1.cpuS - a0.cpuS) / idleS) * 100).toFixed(2)} %`,
        },
      ]),
    );
  } finally {
    await farm.stop();
  }
}

await main();
console.log(await (await import('./caches.ts')).benchCaches({ quick: QUICK, agentCli: new URL('../../dist/src/cli.js', import.meta.url).pathname }));
