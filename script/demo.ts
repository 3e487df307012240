/**
 * The live demo: a real controller process on a temporary database, and a scripted client that
 * plays an agent and the in-VM monitor over real HTTP. Prints each step; exits 0 and leaves
 * nothing running (the controller is stopped and the temp dir removed on every path).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { request } from 'undici';

const HEARTBEAT_TIMEOUT_S = 3;
const ADMIN_KEY = `demo-admin-${Math.random().toString(36).slice(2)}`;
const tty = process.stdout.isTTY;
const paint = (code: string, s: string) => (tty ? `\u001b[${code}m${s}\u001b[0m` : s);
const bold = (s: string) => paint('1', s);
const dim = (s: string) => paint('2', s);
const green = (s: string) => paint('32', s);
const red = (s: string) => paint('31', s);
const step = (s: string) => console.log(`${paint('36', '→')} ${s}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function api(base: string, method: 'GET' | 'POST', path: string, key: string, body?: unknown) {
  const res = await request(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.body.text();
  if (res.statusCode >= 400) throw new Error(`${method} ${path}: ${res.statusCode} ${text}`);
  return { status: res.statusCode, text, json: text && text[0] === '{' ? (JSON.parse(text) as Record<string, any>) : {} };
}

async function startController(dir: string): Promise<{ proc: ChildProcess; url: string }> {
  const cli = new URL('../dist/src/cli.js', import.meta.url).pathname;
  const proc = spawn(
    process.execPath,
    [cli, 'controller', '--db', join(dir, 'controller.db'), '--api-key', ADMIN_KEY, '--port', '0', '--heartbeat-timeout', String(HEARTBEAT_TIMEOUT_S)],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const url = await new Promise<string>((resolve, reject) => {
    proc.once('exit', (code) => reject(new Error(`controller exited with ${code}`)));
    // The controller logs pino JSON: take the address from its start line, show only warnings and errors.
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      const entry = JSON.parse(line) as { level: number; msg: string };
      const m = /controller listening on (http:\/\/\S+)/.exec(entry.msg);
      if (m) resolve(m[1]!);
      else if (entry.level >= 40) console.log(dim(`  controller: ${entry.msg}`));
    });
  });
  return { proc, url };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'expo-worker-demo-'));
  let controller: ChildProcess | undefined;
  try {
    console.log(bold('expo-worker demo'));
    console.log(dim(`The heartbeat timeout is shortened to ${HEARTBEAT_TIMEOUT_S} s for the demo (production default: 120 s).`));
    console.log(dim('A scripted client plays the agent and the in-VM monitor; the real agent arrives with the agent issue.\n'));
    const started = await startController(dir);
    controller = started.proc;
    const base = started.url;
    step(`controller listening on ${base}, database in ${dir}`);
    const health = await api(base, 'GET', '/health', '');
    step(`GET /health → ${health.text}`);

    const worker = (await api(base, 'POST', '/api/v1/workers', ADMIN_KEY, { id: 'demo-mac-1', labels: ['xcode-16'] })).json;
    step(`enrolled worker ${bold(worker.id)} (its key is shown once: ${worker.apiKey.slice(0, 8)}…)`);
    const wk = worker.apiKey as string;

    // ---- build 1: the happy path ----
    console.log(bold('\n1. A build from submission to success'));
    const b1 = (await api(base, 'POST', '/api/v1/builds', ADMIN_KEY, {
      steps: [
        { name: 'install', run: 'npm ci' },
        { name: 'build', run: 'npx expo run:ios --configuration Release' },
      ],
      env: { EXPO_TOKEN: 'demo-secret' },
      labels: ['xcode-16'],
    })).json;
    step(`submitted build ${bold(b1.id)} → ${b1.status} (env values are never shown: envNames = ${JSON.stringify(b1.envNames)})`);
    const claim1 = (await api(base, 'POST', '/api/v1/workers/demo-mac-1/poll', wk, { slotsFree: 1, slotsTotal: 1, runningBuilds: [], waitS: 5 })).json;
    step(`worker long-polled and claimed it: attempt ${claim1.build.attempt}, a lease and a build token for its heartbeats`);
    await api(base, 'POST', `/api/v1/builds/${b1.id}/phase`, wk, { lease: claim1.lease, phase: 'preparing' });
    step('phase → preparing (clone the snapshot, boot, health-check: simulated)');
    await api(base, 'POST', `/api/v1/builds/${b1.id}/phase`, wk, { lease: claim1.lease, phase: 'running' });
    step('phase → running');
    const lines = ['$ npm ci\n', 'added 1423 packages in 21s\n', '$ npx expo run:ios --configuration Release\n', '› Compiling app…\n', '› Build Succeeded\n'];
    let offset = 0;
    for (const [i, line] of lines.entries()) {
      const progress = Math.round(((i + 1) / lines.length) * 100);
      const hb = (await api(base, 'POST', `/api/v1/builds/${b1.id}/heartbeat`, claim1.buildToken, { workerId: 'demo-mac-1', progress })).json;
      const res = (await api(base, 'POST', `/api/v1/builds/${b1.id}/logs`, wk, { lease: claim1.lease, offset, data: line })).json;
      offset = res.logBytes;
      step(`heartbeat (progress ${String(progress).padStart(3)}%, status ${hb.status}) + log chunk → ${offset} bytes stored`);
      await sleep(250);
    }
    const done1 = (await api(base, 'POST', `/api/v1/builds/${b1.id}/complete`, wk, { lease: claim1.lease, status: 'succeeded', exitCode: 0 })).json;
    step(`completed → ${green(done1.status)}`);
    const again = await api(base, 'POST', `/api/v1/builds/${b1.id}/complete`, wk, { lease: claim1.lease, status: 'succeeded', exitCode: 0 });
    step(`the same completion sent again (a retry after a lost answer) → ${again.status}, still ${again.json.status}`);
    const log = await api(base, 'GET', `/api/v1/builds/${b1.id}/logs`, ADMIN_KEY);
    console.log(dim(log.text.replace(/^/gm, '    │ ')));

    // ---- build 2: the VM goes silent ----
    console.log(bold(`\n2. A build whose VM freezes: the watchdog fails it after ${HEARTBEAT_TIMEOUT_S} s of silence`));
    const b2 = (await api(base, 'POST', '/api/v1/builds', ADMIN_KEY, { steps: [{ name: 'build', run: 'xcodebuild archive' }] })).json;
    step(`submitted build ${bold(b2.id)}`);
    const claim2 = (await api(base, 'POST', '/api/v1/workers/demo-mac-1/poll', wk, { slotsFree: 1, slotsTotal: 1, runningBuilds: [], waitS: 5 })).json;
    await api(base, 'POST', `/api/v1/builds/${b2.id}/phase`, wk, { lease: claim2.lease, phase: 'running' });
    for (const p of [10, 20]) {
      await api(base, 'POST', `/api/v1/builds/${b2.id}/heartbeat`, claim2.buildToken, { progress: p });
      step(`heartbeat (progress ${p}%)`);
      await sleep(500);
    }
    const silentSince = Date.now();
    step(red('the VM freezes: no more heartbeats (the agent itself stays in touch)'));
    let b2now: Record<string, any> = {};
    let ticks = 0;
    while (Date.now() - silentSince < (HEARTBEAT_TIMEOUT_S + 5) * 1000) {
      await api(base, 'POST', '/api/v1/workers/demo-mac-1/heartbeat', wk, { runningBuilds: [b2.id], slotsTotal: 1 });
      b2now = (await api(base, 'GET', `/api/v1/builds/${b2.id}`, ADMIN_KEY)).json;
      if (b2now.status === 'failed') break;
      const waited = `  … ${((Date.now() - silentSince) / 1000).toFixed(1)} s silent, build is ${b2now.status}`;
      if (tty) process.stdout.write(dim(`${waited}\r`));
      else if (++ticks % 5 === 0) console.log(waited);
      await sleep(200);
    }
    if (tty) process.stdout.write('\n');
    step(`after ${((Date.now() - silentSince) / 1000).toFixed(1)} s: build ${b2.id} → ${red(b2now.status)} (${b2now.failureReason}: ${b2now.message})`);
    const workers = (await api(base, 'GET', '/api/v1/workers', ADMIN_KEY)).json.workers as { id: string; status: string }[];
    step(`worker ${workers[0]!.id} is ${green(workers[0]!.status)} again, free to recycle its VM and take the next build`);
    const late = await request(`${base}/api/v1/builds/${b2.id}/complete`, {
      method: 'POST',
      headers: { authorization: `Bearer ${wk}`, 'content-type': 'application/json' },
      body: JSON.stringify({ lease: claim2.lease, status: 'succeeded' }),
    });
    step(`a late completion from the frozen attempt is refused: ${late.statusCode} ${await late.body.text()}`);

    console.log(bold('\nSummary'));
    const all = (await api(base, 'GET', '/api/v1/builds', ADMIN_KEY)).json.builds as { id: string; status: string; failureReason: string | null }[];
    for (const b of all.reverse()) console.log(`  ${b.id}  ${b.status === 'succeeded' ? green(b.status) : red(b.status)}${b.failureReason ? ` (${b.failureReason})` : ''}`);
    console.log(`  ${dim((await api(base, 'GET', '/health', '')).text)}`);
  } finally {
    if (controller && controller.exitCode === null) {
      controller.kill('SIGTERM');
      await once(controller, 'exit');
    }
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(green('\nDemo finished: controller stopped, temporary files removed.'));
}

main().catch((err: unknown) => {
  console.error(red(`demo failed: ${err instanceof Error ? err.message : String(err)}`));
  process.exitCode = 1;
});
