/**
 * The live demo: the whole system on this machine — a controller, the tart simulator with a
 * base VM (a real sshd), and the real agent — running a build with live logs and progress, then
 * a build whose VM freezes mid-build and is failed by the watchdog, its clone recycled, and a
 * next build on a fresh clone. Ends with a summary, exits 0, and leaves nothing running.
 *
 * The dashboard is up all along: its URL and a sign-in (a user `demo`, operator, with a
 * password the controller made) are printed first. With `--keep` the farm stays up after the
 * summary, for the dashboard, until Ctrl-C.
 */
import { FINAL, startFarm, type Farm } from '../test/support/farm.ts';

const HEARTBEAT_TIMEOUT_S = 5;
const keep = process.argv.includes('--keep');
const unknown = process.argv.slice(2).filter((a) => a !== '--keep');
if (unknown.length > 0) {
  console.error(`usage: ./script/demo [--keep]   (unknown: ${unknown.join(' ')})`);
  process.exit(64);
}
const tty = process.stdout.isTTY;
const paint = (code: string, s: string) => (tty ? `\u001b[${code}m${s}\u001b[0m` : s);
const bold = (s: string) => paint('1', s);
const dim = (s: string) => paint('2', s);
const green = (s: string) => paint('32', s);
const red = (s: string) => paint('31', s);
const step = (s: string) => console.log(`${paint('36', '→')} ${s}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Prints a build's log as it grows and its status/progress as they change, until it ends or `until` says so. */
async function follow(farm: Farm, id: string, until: (b: Record<string, any>) => boolean = FINAL, seen = new Set<number>()): Promise<Record<string, any>> {
  let offset = 0;
  let shown = '';
  for (;;) {
    const res = await farm.api('GET', `/api/v1/builds/${id}/logs?offset=${offset}`);
    const text = String(res.text);
    if (text.length > 0) {
      offset += Buffer.byteLength(text);
      for (const line of text.split('\n').filter(Boolean)) console.log(dim(`    │ ${line}`));
    }
    const b = await farm.build(id);
    const state = `${b.status}${b.progress !== null ? ` ${b.progress}%` : ''}`;
    if (b.status === 'running' && b.progress !== null) seen.add(b.progress);
    if (state !== shown) {
      step(`build ${id}: ${b.status === 'failed' ? red(state) : state}`);
      shown = state;
    }
    if (until(b)) return b;
    await sleep(300);
  }
}

async function main(): Promise<void> {
  console.log(bold('expo-worker demo — the whole system, live'));
  console.log(dim(`A controller, the real agent, and the tart simulator (its VMs are real sshd processes on 127.64.x.x).`));
  console.log(dim(`The heartbeat timeout is shortened to ${HEARTBEAT_TIMEOUT_S} s for the demo (production default: 120 s).\n`));
  const farm = await startFarm({ heartbeatTimeoutS: HEARTBEAT_TIMEOUT_S, agent: false });
  const stopAll = async () => {
    await farm.stop();
  };
  process.once('SIGINT', () => void stopAll().then(() => process.exit(130)));
  const results: { what: string; id: string }[] = [];
  try {
    step(`controller on ${farm.controller.url}; worker mac-1 enrolled; base VM 'base' in the simulator`);
    const user = await farm.api('POST', '/api/v1/users', { name: 'demo', role: 'operator' });
    if (user.status !== 201) throw new Error(`adding the dashboard's user: ${user.status} ${user.text}`);
    step(`dashboard: ${bold(`${farm.controller.url}/`)} — sign in as ${bold('demo')} with password ${bold(String(user.body.password))} (operator)`);
    await farm.startAgent();
    step('agent started: it reaped orphans, ran the host preflight, and is long-polling for builds');

    console.log(bold('\n1. A build, with live logs and progress'));
    // Each `::progress N` line sets the build's progress; vm-monitor.sh reports it with its next
    // heartbeat (every second with the demo's timeout), so the markers are 1.5 s apart to be seen.
    const b1 = await farm.submit({
      steps: [
        { name: 'install', run: 'echo "$ npm ci"; for p in 10 20 30; do sleep 1.5; echo "resolving packages…"; echo "::progress $p"; done; echo "added 1423 packages"' },
        // The agent sets 50 % as this second of two steps starts; the markers go on from there.
        { name: 'build', run: 'p=50; for t in App Pods Tests Archive; do echo "› Building $t"; sleep 1.5; p=$((p + 10)); echo "::progress $p"; done; echo "› Build Succeeded"' },
      ],
      env: { EXPO_TOKEN: 'demo-secret' },
    });
    results.push({ what: 'happy path', id: b1 });
    step(`submitted ${bold(b1)} (env values stay secret: the API shows only their names)`);
    const progress1 = new Set<number>();
    const done1 = await follow(farm, b1, FINAL, progress1);
    step(`build ${b1} → ${done1.status === 'succeeded' ? green(done1.status) : red(done1.status)}; progress seen while running: ${[...progress1].sort((a, b) => a - b).map((p) => `${p}%`).join(' → ')}`);

    console.log(bold('\n2. A VM that freezes mid-build'));
    const b2 = await farm.submit({ steps: [{ name: 'archive', run: 'for i in $(seq 1 60); do echo "archiving… $i"; sleep 1; done' }] });
    results.push({ what: 'frozen VM', id: b2 });
    step(`submitted ${bold(b2)}`);
    await follow(farm, b2, (b) => b.status === 'running' && b.logBytes > 200);
    const clone = `expo-mac-1-${b2}-1`;
    await farm.sim.fault(clone, 'freeze');
    const frozenAt = Date.now();
    step(red(`froze ${clone}: every process in it stopped — no more heartbeats from its monitor`));
    let b = await farm.build(b2);
    while (!FINAL(b)) {
      await sleep(500);
      b = await farm.build(b2);
      if (!FINAL(b)) console.log(dim(`    … ${((Date.now() - frozenAt) / 1000).toFixed(1)} s without a heartbeat; build is ${b.status}`));
    }
    step(`after ${((Date.now() - frozenAt) / 1000).toFixed(1)} s the watchdog failed it: ${red(`${b.status} (${b.failureReason})`)}`);
    await farm.agents[0]!.waitFor('build done', 30_000, (e) => e.buildId === b2);
    const workers = (await farm.api('GET', '/api/v1/workers')).body.workers as { id: string; status: string }[];
    step(`the agent recycled the VM (tart list: ${(await farm.vms()).join(', ')}); worker ${workers[0]!.id} is ${green(workers[0]!.status)}`);

    console.log(bold('\n3. The next build, on a fresh clone'));
    const b3 = await farm.submit({ steps: [{ name: 'build', run: 'echo "› Building App"; sleep 1; echo "› Build Succeeded"' }] });
    results.push({ what: 'after recycling', id: b3 });
    step(`submitted ${bold(b3)}`);
    const done3 = await follow(farm, b3);
    step(`build ${b3} → ${done3.status === 'succeeded' ? green(done3.status) : red(done3.status)}`);
    await farm.agents[0]!.waitFor('build done', 30_000, (e) => e.buildId === b3);

    console.log(bold('\nSummary'));
    for (const r of results) {
      const x = await farm.build(r.id);
      const secs = x.finishedAt && x.assignedAt ? ((Date.parse(x.finishedAt) - Date.parse(x.assignedAt)) / 1000).toFixed(1) : '?';
      const status = x.status === 'succeeded' ? green(x.status) : red(x.status);
      console.log(`  ${r.what.padEnd(16)} ${x.id}  ${status}${x.failureReason ? ` (${x.failureReason})` : ''}  ${secs} s`);
    }
    console.log(`  ${dim(JSON.stringify((await farm.api('GET', '/health')).body))}`);
    // The progress must have moved in steps, not jumped from 0 % to the end.
    const ok = [...progress1].filter((p) => p > 0 && p < 100).length >= 3 && (await farm.build(b1)).status === 'succeeded' && (await farm.build(b2)).failureReason === 'heartbeat_timeout' && (await farm.build(b3)).status === 'succeeded';
    if (!ok) process.exitCode = 1;
    if (keep) {
      console.log(bold(`\nThe farm stays up: dashboard at ${farm.controller.url}/ (demo / ${String(user.body.password)}). Ctrl-C stops it.`));
      await new Promise<never>(() => {});
    } else console.log(dim(`\n(./script/demo --keep leaves the farm and its dashboard up after the demo, until Ctrl-C.)`));
  } finally {
    await stopAll();
  }
  console.log(green('\nDemo finished: controller, agent and VMs stopped, temporary files removed.'));
}

main().catch((err: unknown) => {
  console.error(red(`demo failed: ${err instanceof Error ? err.message : String(err)}`));
  process.exitCode = 1;
});
