/**
 * vm-monitor.sh as it runs in a VM: real bash, real curl, real HTTP on 127.0.0.1 — the real
 * controller where its answers matter, a scripted server where a test needs particular statuses.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { bearer, startTestController, type TestController } from '../controller/support.ts';
import { MONITOR, alive, cmdline, descendants, environ, killAll, runScript, startScriptedServer, type ScriptedServer } from './support.ts';

const BUILD_ID = 'abcdefghijklmnop';
let dir: string;
let servers: ScriptedServer[];
let controller: TestController | undefined;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vm-monitor-test-'));
  servers = [];
  controller = undefined;
});
afterEach(async () => {
  await killAll();
  await Promise.all(servers.map((s) => s.close()));
  await controller?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function scripted(answer: Parameters<typeof startScriptedServer>[0], port?: number): Promise<ScriptedServer> {
  const s = await startScriptedServer(answer, port);
  servers.push(s);
  return s;
}

/** A real controller on 127.0.0.1 with a claimed build: its id, token, lease and worker key. */
async function claimedBuild() {
  const c = await startTestController({ realClock: true });
  controller = c;
  const address = await c.app.listen({ host: '127.0.0.1', port: 0 });
  const worker = await c.enrol('mac-1');
  const { id } = await c.submit();
  const claim = await c.poll('mac-1', worker.auth);
  if (claim === null) throw new Error('the build was not claimed');
  return { c, url: address, id, token: claim.buildToken, lease: claim.lease, worker };
}

const ok = (): [number, unknown] => [200, { status: 'running', cancelRequested: false }];

describe('vm-monitor.sh against the real controller', () => {
  it('prints the seed lines, lands heartbeats with the progress from the file, and exits 0 once the build completes', async () => {
    const b = await claimedBuild();
    // TMPDIR with a trailing slash, as macOS sets it; the default progress file lives under it.
    const progressFile = join(dir, `expo-worker-${b.id}.progress`);
    writeFileSync(progressFile, '37\n');
    const m = runScript(MONITOR, [b.url, b.id, 'mac-1', b.token, '1'], { TMPDIR: `${dir}/`, EXPO_MONITOR_PROGRESS_FILE: undefined });

    await m.waitFor(/Heartbeat sent \(progress: 37%\)/);
    expect(m.lines.slice(0, 3)).toEqual([
      `out: [VM Monitor] Starting for build ${b.id}`,
      `out: [VM Monitor] Sending heartbeats every 1s to ${b.url}`,
      `out: [VM Monitor] Reading progress from ${progressFile}`,
    ]);
    const first = await b.c.get(b.id);
    expect(first.progress).toBe(37);
    expect(first.lastHeartbeatAt).not.toBeNull();

    writeFileSync(progressFile, '80');
    await m.waitFor(/progress: 80%/);
    const later = await b.c.get(b.id);
    expect(later.progress).toBe(80);
    expect(Date.parse(later.lastHeartbeatAt as string)).toBeGreaterThan(Date.parse(first.lastHeartbeatAt as string));

    // Garbage keeps the last good value.
    writeFileSync(progressFile, 'almost done\n');
    const mark = m.lines.length;
    expect(await m.waitFor(/Heartbeat sent/, 5000, mark)).toContain('progress: 80%');

    const done = await b.c.post(`/api/v1/builds/${b.id}/complete`, b.worker.auth, { lease: b.lease, status: 'succeeded', exitCode: 0 });
    expect(done.statusCode).toBe(200);
    expect(await m.exited).toEqual({ code: 0, signal: null });
    expect(m.stdout()).toContain(`[VM Monitor] Build ${b.id} is over (HTTP 409); exiting`);
  });

  it('exits 2 when the controller refuses the token (401)', async () => {
    const b = await claimedBuild();
    const m = runScript(MONITOR, [b.url, b.id, 'mac-1', 'ewb_not-a-real-token', '1']);
    expect(await m.exited).toEqual({ code: 2, signal: null });
    expect(m.stderr()).toMatch(/Heartbeat refused \(HTTP 401\).*AUTH_INVALID/);
    expect(m.stdout()).not.toContain('Heartbeat sent');
  });

  it('exits 2 on 403: the token of one build for another', async () => {
    const b = await claimedBuild();
    const other = await b.c.submit();
    const m = runScript(MONITOR, [b.url, other.id, 'mac-1', b.token, '1']);
    expect(await m.exited).toEqual({ code: 2, signal: null });
    expect(m.stderr()).toContain('HTTP 403');
    expect((await b.c.post(`/api/v1/builds/${b.id}/heartbeat`, bearer(b.token), {})).statusCode).toBe(200);
  });
});

describe('vm-monitor.sh requests and retries', () => {
  it('posts the seed payload with the bearer header, from environment variables alone, and keeps the token out of every argv', async () => {
    const token = 'ewb_SecretTokenValue0123456789abcdef';
    let seen: { pid: number; argv: string[]; env: string }[] = [];
    let monitorPid = 0;
    const s = await scripted(async (n) => {
      if (n === 1) {
        // The request is in flight: curl is running now. Look at every process the monitor started.
        seen = [monitorPid, ...descendants(monitorPid)].map((pid) => ({ pid, argv: cmdline(pid) ?? [], env: environ(pid) }));
      }
      return ok();
    });
    const progressFile = join(dir, 'progress');
    writeFileSync(progressFile, ' 12 \n');
    const m = runScript(MONITOR, [], {
      EXPO_MONITOR_CONTROLLER: `${s.url}/`,
      EXPO_MONITOR_BUILD_ID: BUILD_ID,
      EXPO_MONITOR_WORKER_ID: 'mac-mini.1',
      EXPO_MONITOR_TOKEN: token,
      EXPO_MONITOR_INTERVAL_S: '1',
      EXPO_MONITOR_PROGRESS_FILE: progressFile,
    });
    monitorPid = m.pid;
    await m.waitFor(/Heartbeat sent \(progress: 12%\)/);
    await m.waitFor(/Heartbeat sent/, 5000, m.lines.length);

    const req = s.requests[0]!;
    expect(req.method).toBe('POST');
    expect(req.url).toBe(`/api/v1/builds/${BUILD_ID}/heartbeat`);
    expect(req.headers.authorization).toBe(`Bearer ${token}`);
    expect(req.headers['content-type']).toBe('application/json');
    expect(JSON.parse(req.body)).toEqual({ workerId: 'mac-mini.1', progress: 12 });
    expect(m.lines[1]).toBe(`out: [VM Monitor] Sending heartbeats every 1s to ${s.url}`);

    expect(seen.some((p) => p.argv[0]?.endsWith('curl'))).toBe(true);
    for (const p of seen) expect(p.argv.join(' ')).not.toContain('SecretToken');
    // Nor does curl inherit it in its environment.
    const curl = seen.find((p) => p.argv[0]?.endsWith('curl'));
    expect(curl?.env).toContain('EXPO_MONITOR_BUILD_ID=');
    expect(curl?.env).not.toContain('SecretToken');
  });

  it('retries 503 answers with backoff and carries on when they stop', async () => {
    const s = await scripted((n) => (n <= 2 ? [503, { code: 'API_SHUTTING_DOWN', message: 'stopping' }] : ok()));
    const m = runScript(MONITOR, [s.url, BUILD_ID, 'w1', 'ewb_x', '4']);
    await m.waitFor(/Heartbeat sent \(progress: 0%\)/, 10_000);
    expect(m.stderr()).toContain('Heartbeat failed (HTTP 503); retrying in 1s');
    expect(m.stderr()).toContain('Heartbeat failed (HTTP 503); retrying in 2s');
    expect(alive(m.pid)).toBe(true);
  });

  it('survives the controller being down, backing off up to the interval, and beats again once it is up', async () => {
    const probe = await startScriptedServer(ok);
    const port = probe.port;
    await probe.close(); // the port is now closed: connection refused
    const m = runScript(MONITOR, [`http://127.0.0.1:${port}`, BUILD_ID, 'w1', 'ewb_x', '2'], { EXPO_MONITOR_CURL_TIMEOUT_S: '2' });
    await m.waitFor(/retrying in 1s/);
    const firstCapped = m.lines.indexOf(await m.waitFor(/retrying in 2s/));
    await m.waitFor(/retrying in 2s/, 5000, firstCapped + 1);
    expect(m.stderr()).not.toMatch(/retrying in [3-9]s/); // never above the interval
    expect(m.stderr()).toMatch(/Heartbeat failed: .*\(curl exit 7\)/);

    const s = await scripted(ok, port);
    await m.waitFor(/Heartbeat sent \(progress: 0%\)/, 6000);
    expect(s.requests.length).toBeGreaterThan(0);
    expect(alive(m.pid)).toBe(true);
  });

  it('exits 0 on 410 and 3 on another 4xx', async () => {
    const gone = await scripted(() => [410, {}]);
    const a = runScript(MONITOR, [gone.url, BUILD_ID, 'w1', 'ewb_x', '1']);
    expect((await a.exited).code).toBe(0);
    expect(a.stdout()).toContain('is over (HTTP 410)');
    const bad = await scripted(() => [400, { code: 'API_BAD_REQUEST', message: 'nope' }]);
    const b = runScript(MONITOR, [bad.url, BUILD_ID, 'w1', 'ewb_x', '1']);
    expect((await b.exited).code).toBe(3);
    expect(b.stderr()).toMatch(/Heartbeat refused \(HTTP 400\); exiting\. .*API_BAD_REQUEST/);
  });

  it('exits 0 within a second of SIGTERM in the middle of its sleep, leaving no sleep behind', async () => {
    const s = await scripted(ok);
    const m = runScript(MONITOR, [s.url, BUILD_ID, 'w1', 'ewb_x', '30']);
    await m.waitFor(/Heartbeat sent/);
    let kids: number[] = [];
    for (let i = 0; i < 50 && kids.length === 0; i++) {
      kids = descendants(m.pid).filter((pid) => cmdline(pid)?.[0] === 'sleep');
      if (kids.length === 0) await new Promise((r) => setTimeout(r, 20));
    }
    expect(kids).toHaveLength(1);
    const started = performance.now();
    process.kill(m.pid, 'SIGTERM');
    expect(await m.exited).toEqual({ code: 0, signal: null });
    expect(performance.now() - started).toBeLessThan(1000);
    expect(m.stdout()).toContain('[VM Monitor] Stopped by signal');
    expect(alive(kids[0]!)).toBe(false);
  });

  it('exits 0 on SIGINT in the middle of a request, stopping curl', async () => {
    let release: () => void = () => {};
    const s = await scripted(() => new Promise((r) => (release = () => r(ok()))));
    const m = runScript(MONITOR, [s.url, BUILD_ID, 'w1', 'ewb_x', '1'], { EXPO_MONITOR_CURL_TIMEOUT_S: '20' });
    for (let i = 0; i < 100 && s.requests.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(s.requests).toHaveLength(1);
    const curl = descendants(m.pid).find((pid) => cmdline(pid)?.[0]?.endsWith('curl'));
    expect(curl).toBeDefined();
    const started = performance.now();
    process.kill(m.pid, 'SIGINT');
    expect((await m.exited).code).toBe(0);
    expect(performance.now() - started).toBeLessThan(1000);
    expect(alive(curl!)).toBe(false);
    release();
  });
});

describe('vm-monitor.sh arguments', () => {
  const usage = /Usage: vm-monitor\.sh <controller> <build-id> <worker-id> <api-key> \[interval\]/;
  const cases: [string, string[], Record<string, string>, RegExp][] = [
    ['no arguments', [], {}, /missing <controller>/],
    ['a missing token', ['http://127.0.0.1:9', BUILD_ID, 'w1'], {}, /missing <api-key>/],
    ['a controller that is not http(s)', ['ftp://127.0.0.1', BUILD_ID, 'w1', 'ewb_x'], {}, /http:\/\/ or https:\/\//],
    ['a malformed build id', ['http://127.0.0.1:9', 'test-build-123', 'w1', 'ewb_x'], {}, /build id must match/],
    ['a malformed worker id', ['http://127.0.0.1:9', BUILD_ID, '-w1', 'ewb_x'], {}, /worker id must match/],
    ['a zero interval', ['http://127.0.0.1:9', BUILD_ID, 'w1', 'ewb_x', '0'], {}, /interval must be a positive/],
    ['a fractional interval', ['http://127.0.0.1:9', BUILD_ID, 'w1', 'ewb_x', '1.5'], {}, /interval must be a positive/],
    ['a token with a quote', ['http://127.0.0.1:9', BUILD_ID, 'w1', 'ewb_"x'], {}, /token has characters/],
    ['too many arguments', ['http://127.0.0.1:9', BUILD_ID, 'w1', 'ewb_x', '1', 'extra'], {}, /too many arguments/],
    ['a bad curl timeout', ['http://127.0.0.1:9', BUILD_ID, 'w1', 'ewb_x'], { EXPO_MONITOR_CURL_TIMEOUT_S: 'x' }, /EXPO_MONITOR_CURL_TIMEOUT_S/],
  ];
  it.each(cases)('refuses %s with usage and exit 64', async (_name, args, env, message) => {
    const m = runScript(MONITOR, args, { EXPO_MONITOR_TOKEN: undefined, EXPO_MONITOR_CONTROLLER: undefined, ...env });
    expect((await m.exited).code).toBe(64);
    expect(m.stderr()).toMatch(message);
    expect(m.stderr()).toMatch(usage);
    expect(m.stdout()).toBe('');
  });

  it('prints the version of its VM_MONITOR_VERSION line with --version', async () => {
    const line = readFileSync(MONITOR, 'utf8').split('\n').find((l) => l.startsWith('VM_MONITOR_VERSION='));
    expect(line).toMatch(/^VM_MONITOR_VERSION=\d+\.\d+\.\d+$/);
    const m = runScript(MONITOR, ['--version']);
    expect((await m.exited).code).toBe(0);
    expect(m.stdout()).toBe(`${line!.split('=')[1]}\n`);
  });

  it('reads the token from EXPO_MONITOR_TOKEN_FILE (here /dev/stdin)', async () => {
    const s = await scripted(() => [409, { code: 'BUILD_OVER' }]);
    const m = runScript(MONITOR, [s.url, BUILD_ID, 'w1'], { EXPO_MONITOR_TOKEN: undefined, EXPO_MONITOR_TOKEN_FILE: '/dev/stdin' }, 'ewb_fromstdin\n');
    expect((await m.exited).code).toBe(0);
    const out = m.stdout();
    expect(out).toContain('is over (HTTP 409)');
    expect(s.requests[0]!.headers.authorization).toBe('Bearer ewb_fromstdin');
  });
});
