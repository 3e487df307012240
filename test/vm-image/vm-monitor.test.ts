/**
 * vm-monitor.sh as it runs in a VM: real bash, real curl, real HTTP on 127.0.0.1 — the real
 * controller where its answers matter, a scripted server where a test needs particular statuses.
 * Every monitor runs with TMPDIR in the test's own directory, so its work directory is checked
 * there and nothing it leaves (even when killed) reaches the host's /tmp.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
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

/** Runs the monitor with TMPDIR in the test's directory and none of the optional settings from the outer environment. */
function monitor(args: string[], env: Record<string, string | undefined> = {}, input?: string) {
  const unset = { EXPO_MONITOR_PROGRESS_FILE: undefined, EXPO_MONITOR_CURL_TIMEOUT_S: undefined, EXPO_MONITOR_MAX_BACKOFF_S: undefined };
  return runScript(MONITOR, args, { TMPDIR: dir, ...unset, ...env }, input);
}

/** The monitor's work directories (vm-monitor.*) in the test's TMPDIR. */
const workDirs = (): string[] => readdirSync(dir).filter((name) => name.startsWith('vm-monitor.'));

async function scripted(answer: Parameters<typeof startScriptedServer>[0], port?: number): Promise<ScriptedServer> {
  const s = await startScriptedServer(answer, port);
  servers.push(s);
  return s;
}

/** A port on 127.0.0.1 that nothing listens on (a server was there a moment ago). */
async function closedPort(): Promise<number> {
  const probe = await startScriptedServer(() => [200, {}]);
  await probe.close();
  return probe.port;
}

/** Polls `find` every 20 ms until it returns something, for up to `timeoutMs`. */
async function poll<T>(find: () => T | undefined, timeoutMs = 10_000): Promise<T | undefined> {
  for (const end = Date.now() + timeoutMs; Date.now() < end; await new Promise((r) => setTimeout(r, 20))) {
    const found = find();
    if (found !== undefined) return found;
  }
  return find();
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

describe('vm-monitor.sh with the ids of the base-image test command', () => {
  // `vm-monitor.sh http://localhost:3000 test-build-123 test-worker-456 test-api-key 10`, as the
  // image docs have it, only on another port (3000 is the controller's default and may be taken).
  const IDS = ['test-build-123', 'test-worker-456', 'test-api-key', '10'];

  it('runs the test command that exited 64 (test-build-123 refused): Starting, Sending every 10s, Heartbeat sent (progress: 0%)', async () => {
    const s = await scripted(ok);
    const url = `http://localhost:${s.port}`;
    const m = monitor([url, ...IDS]);
    await m.waitFor(/Heartbeat sent/);
    expect(m.stdout().split('\n').slice(0, 3)).toEqual([
      '[VM Monitor] Starting for build test-build-123',
      `[VM Monitor] Sending heartbeats every 10s to ${url}`,
      '[VM Monitor] Heartbeat sent (progress: 0%)',
    ]);
    const req = s.requests[0]!;
    expect(req.url).toBe('/api/v1/builds/test-build-123/heartbeat');
    expect(req.headers.authorization).toBe('Bearer test-api-key');
    expect(JSON.parse(req.body)).toEqual({ workerId: 'test-worker-456', progress: 0 });
    // Its work directory is in TMPDIR while it runs, named by its pid…
    expect(workDirs()).toEqual([expect.stringMatching(new RegExp(`^vm-monitor\\.${m.pid}\\.`))]);
    process.kill(m.pid, 'SIGTERM');
    expect(await m.exited).toEqual({ code: 0, signal: null });
    // …and gone once it has stopped.
    expect(workDirs()).toEqual([]);
  });

  it('keeps retrying the test command while nothing listens, and exits 0 on SIGTERM leaving nothing behind', async () => {
    const m = monitor([`http://localhost:${await closedPort()}`, ...IDS]);
    // Retries after 1, 2, 4 s (the interval, 10 s, caps them): three failures take about 3 s.
    await m.waitFor(/retrying in 1s/, 20_000);
    await m.waitFor(/retrying in 2s/, 20_000);
    await m.waitFor(/retrying in 4s/, 20_000);
    expect(alive(m.pid)).toBe(true);
    expect(m.stderr()).toMatch(/Heartbeat failed: .*\(curl exit 7\)/);
    const kids = descendants(m.pid);
    process.kill(m.pid, 'SIGTERM');
    expect(await m.exited).toEqual({ code: 0, signal: null });
    expect(m.stdout().trimEnd().split('\n').at(-1)).toBe('[VM Monitor] Stopped by signal');
    expect(kids.filter(alive)).toEqual([]);
    expect(workDirs()).toEqual([]);
  });

  it('accepts build ids other than ours: any 1-128 of A-Z a-z 0-9 . _ - not starting with a dot', async () => {
    const s = await scripted(() => [410, {}]);
    for (const id of ['test-build-123', 'Build_42.x', '-x', 'b'.repeat(128)]) {
      const m = monitor([s.url, id, 'test-worker-456', 'test-api-key', '10']);
      expect((await m.exited).code, `${id}: ${m.stderr()}`).toBe(0);
      expect(s.requests.at(-1)!.url).toBe(`/api/v1/builds/${id}/heartbeat`);
    }
    expect(workDirs()).toEqual([]);
  });
});

describe('vm-monitor.sh against the real controller', () => {
  it('prints the start lines, lands heartbeats with the progress from the file, and exits 0 once the build completes', async () => {
    const b = await claimedBuild();
    // TMPDIR with a trailing slash, as macOS sets it; the default progress file lives under it.
    const progressFile = join(dir, `expo-worker-${b.id}.progress`);
    writeFileSync(progressFile, '37\n');
    const m = monitor([b.url, b.id, 'mac-1', b.token, '1'], { TMPDIR: `${dir}/` });

    await m.waitFor(/Heartbeat sent \(progress: 37%\)/);
    expect(m.stdout().split('\n').slice(0, 3)).toEqual([
      `[VM Monitor] Starting for build ${b.id}`,
      `[VM Monitor] Sending heartbeats every 1s to ${b.url}`,
      '[VM Monitor] Heartbeat sent (progress: 37%)',
    ]);
    expect(m.stderr()).toContain(`[VM Monitor] Reading progress from ${progressFile}\n`);
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
    expect(await m.waitFor(/Heartbeat sent/, 10_000, mark)).toContain('progress: 80%');

    const done = await b.c.post(`/api/v1/builds/${b.id}/complete`, b.worker.auth, { lease: b.lease, status: 'succeeded', exitCode: 0 });
    expect(done.statusCode).toBe(200);
    expect(await m.exited).toEqual({ code: 0, signal: null });
    expect(m.stdout()).toContain(`[VM Monitor] Build ${b.id} is over (HTTP 409); exiting`);
    expect(workDirs()).toEqual([]);
  });

  it('exits 2 when the controller refuses the token (401)', async () => {
    const b = await claimedBuild();
    const m = monitor([b.url, b.id, 'mac-1', 'ewb_not-a-real-token', '1']);
    expect(await m.exited).toEqual({ code: 2, signal: null });
    expect(m.stderr()).toMatch(/Heartbeat refused \(HTTP 401\).*AUTH_INVALID/);
    expect(m.stdout()).not.toContain('Heartbeat sent');
    expect(workDirs()).toEqual([]);
  });

  it('exits 2 on 403: the token of one build for another', async () => {
    const b = await claimedBuild();
    const other = await b.c.submit();
    const m = monitor([b.url, other.id, 'mac-1', b.token, '1']);
    expect(await m.exited).toEqual({ code: 2, signal: null });
    expect(m.stderr()).toContain('HTTP 403');
    expect((await b.c.post(`/api/v1/builds/${b.id}/heartbeat`, bearer(b.token), {})).statusCode).toBe(200);
    expect(workDirs()).toEqual([]);
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
    const m = monitor([], {
      EXPO_MONITOR_CONTROLLER: `${s.url}/`,
      EXPO_MONITOR_BUILD_ID: BUILD_ID,
      EXPO_MONITOR_WORKER_ID: 'mac-mini.1',
      EXPO_MONITOR_TOKEN: token,
      EXPO_MONITOR_INTERVAL_S: '1',
      EXPO_MONITOR_PROGRESS_FILE: progressFile,
    });
    monitorPid = m.pid;
    await m.waitFor(/Heartbeat sent \(progress: 12%\)/);
    await m.waitFor(/Heartbeat sent/, 10_000, m.lines.length);

    const req = s.requests[0]!;
    expect(req.method).toBe('POST');
    expect(req.url).toBe(`/api/v1/builds/${BUILD_ID}/heartbeat`);
    expect(req.headers.authorization).toBe(`Bearer ${token}`);
    expect(req.headers['content-type']).toBe('application/json');
    expect(JSON.parse(req.body)).toEqual({ workerId: 'mac-mini.1', progress: 12 });
    expect(m.stdout().split('\n')[1]).toBe(`[VM Monitor] Sending heartbeats every 1s to ${s.url}`);

    expect(seen.some((p) => p.argv[0]?.endsWith('curl'))).toBe(true);
    for (const p of seen) expect(p.argv.join(' ')).not.toContain('SecretToken');
    // Nor does curl inherit it in its environment.
    const curl = seen.find((p) => p.argv[0]?.endsWith('curl'));
    expect(curl?.env).toContain('EXPO_MONITOR_BUILD_ID=');
    expect(curl?.env).not.toContain('SecretToken');
  });

  it('retries 503 answers with backoff and carries on when they stop', async () => {
    const s = await scripted((n) => (n <= 2 ? [503, { code: 'API_SHUTTING_DOWN', message: 'stopping' }] : ok()));
    const m = monitor([s.url, BUILD_ID, 'w1', 'ewb_x', '4']);
    await m.waitFor(/Heartbeat sent \(progress: 0%\)/, 20_000);
    expect(m.stderr()).toContain('Heartbeat failed (HTTP 503); retrying in 1s');
    expect(m.stderr()).toContain('Heartbeat failed (HTTP 503); retrying in 2s');
    expect(alive(m.pid)).toBe(true);
  });

  it('survives the controller being down, backing off up to the interval, and beats again once it is up', async () => {
    const port = await closedPort();
    const m = monitor([`http://127.0.0.1:${port}`, BUILD_ID, 'w1', 'ewb_x', '2'], { EXPO_MONITOR_CURL_TIMEOUT_S: '2' });
    await m.waitFor(/retrying in 1s/);
    const firstCapped = m.lines.indexOf(await m.waitFor(/retrying in 2s/));
    await m.waitFor(/retrying in 2s/, 10_000, firstCapped + 1);
    expect(m.stderr()).not.toMatch(/retrying in [3-9]s/); // never above the interval
    expect(m.stderr()).toMatch(/Heartbeat failed: .*\(curl exit 7\)/);

    const s = await scripted(ok, port);
    await m.waitFor(/Heartbeat sent \(progress: 0%\)/, 10_000);
    expect(s.requests.length).toBeGreaterThan(0);
    expect(alive(m.pid)).toBe(true);
  });

  it('with a list [dead, live], beats through the live one without waiting, and comes back round to the first when the second dies', async () => {
    const deadPort = await closedPort();
    const b = await scripted(ok);
    const a = `http://127.0.0.1:${deadPort}`;
    // From the environment, as the agent gives it; the interval is long so any backoff would show.
    const m = monitor([], { EXPO_MONITOR_CONTROLLER: `${a} ${b.url}/`, EXPO_MONITOR_BUILD_ID: BUILD_ID, EXPO_MONITOR_WORKER_ID: 'w1', EXPO_MONITOR_TOKEN: 'ewb_x', EXPO_MONITOR_INTERVAL_S: '1' });
    await m.waitFor(/Heartbeat sent/, 20_000);
    expect(m.stdout().split('\n')[1]).toBe(`[VM Monitor] Sending heartbeats every 1s to ${a} ${b.url}`);
    expect(m.stderr()).toMatch(/Heartbeat failed: .*\(curl exit 7\)\n/);
    expect(m.stderr()).toContain(`Controller unreachable, switching to ${b.url}\n`);
    // The first failure moved on at once: no backoff while another controller was left to try.
    expect(m.stderr()).not.toContain('retrying in');
    expect(b.requests[0]!.url).toBe(`/api/v1/builds/${BUILD_ID}/heartbeat`);

    // B goes, A comes back: round-robin returns to A.
    const aServer = await scripted(ok, deadPort);
    await b.close();
    await poll(() => (aServer.requests.length > 0 ? true : undefined), 30_000);
    expect(aServer.requests.length).toBeGreaterThan(0);
    expect(m.stderr()).toContain(`Controller unreachable, switching to ${a}\n`);
    expect(alive(m.pid)).toBe(true);
  });

  it('moves to the next controller on a 502/503/504 too, and backs off only once every controller failed in a row', async () => {
    const a = await scripted(() => [502, null]);
    const b = await scripted(() => [503, { code: 'API_SHUTTING_DOWN', message: 'stopping' }]);
    const m = monitor([`${a.url} ${b.url}`, BUILD_ID, 'w1', 'ewb_x', '4']);
    await m.waitFor(/retrying in 2s/, 20_000);
    const err = m.stderr();
    // A (502, switch at once), B (503, every one failed: back off 1 s), A, B (back off 2 s).
    expect(err.indexOf('Heartbeat failed (HTTP 502). ')).toBeGreaterThanOrEqual(0);
    expect(err).toContain(`Controller unreachable, switching to ${b.url}`);
    expect(err).toContain('Heartbeat failed (HTTP 503); retrying in 1s');
    expect(err).not.toContain('HTTP 502); retrying in 1s');
    expect(a.requests.length).toBeGreaterThanOrEqual(2);
    expect(b.requests.length).toBeGreaterThanOrEqual(2);
  });

  it('refuses a list with a bad URL in it, naming that URL', async () => {
    const m = monitor(['http://127.0.0.1:9 ftp://x', BUILD_ID, 'w1', 'ewb_x']);
    expect((await m.exited).code).toBe(64);
    expect(m.stderr()).toContain("got 'ftp://x'");
  });

  it('exits 0 on 410 and 3 on another 4xx, leaving no work directory', async () => {
    const gone = await scripted(() => [410, {}]);
    const a = monitor([gone.url, BUILD_ID, 'w1', 'ewb_x', '1']);
    expect((await a.exited).code).toBe(0);
    expect(a.stdout()).toContain('is over (HTTP 410)');
    const bad = await scripted(() => [400, { code: 'API_BAD_REQUEST', message: 'nope' }]);
    const b = monitor([bad.url, BUILD_ID, 'w1', 'ewb_x', '1']);
    expect((await b.exited).code).toBe(3);
    expect(b.stderr()).toMatch(/Heartbeat refused \(HTTP 400\); exiting\. .*API_BAD_REQUEST/);
    expect(workDirs()).toEqual([]);
  });

  it.each(['SIGTERM', 'SIGHUP'] as const)('exits 0 at once on %s in the middle of its sleep, leaving no sleep and no work directory behind', async (signal) => {
    const s = await scripted(ok);
    const intervalS = 30;
    const m = monitor([s.url, BUILD_ID, 'w1', 'ewb_x', String(intervalS)]);
    await m.waitFor(/Heartbeat sent/);
    const sleeper = await poll(() => descendants(m.pid).find((pid) => cmdline(pid)?.[0] === 'sleep'));
    expect(sleeper).toBeDefined();
    const started = performance.now();
    process.kill(m.pid, signal);
    expect(await m.exited).toEqual({ code: 0, signal: null });
    // Not after the sleep: a trap deferred until `sleep 30` ends would take the whole interval.
    expect(performance.now() - started).toBeLessThan((intervalS * 1000) / 2);
    expect(m.stdout()).toContain('[VM Monitor] Stopped by signal');
    expect(alive(sleeper!)).toBe(false);
    expect(workDirs()).toEqual([]);
  });

  it('exits 0 on SIGINT in the middle of a request, stopping curl', async () => {
    let release: () => void = () => {};
    const s = await scripted(() => new Promise((r) => (release = () => r(ok()))));
    const curlTimeoutS = 20;
    const m = monitor([s.url, BUILD_ID, 'w1', 'ewb_x', '1'], { EXPO_MONITOR_CURL_TIMEOUT_S: String(curlTimeoutS) });
    expect(await poll(() => (s.requests.length > 0 ? true : undefined))).toBe(true);
    const curl = descendants(m.pid).find((pid) => cmdline(pid)?.[0]?.endsWith('curl'));
    expect(curl).toBeDefined();
    const started = performance.now();
    process.kill(m.pid, 'SIGINT');
    expect((await m.exited).code).toBe(0);
    // Not after curl gives up on the request, which it would only at its timeout.
    expect(performance.now() - started).toBeLessThan((curlTimeoutS * 1000) / 2);
    expect(alive(curl!)).toBe(false);
    expect(workDirs()).toEqual([]);
    release();
  });

  it('removes the work directories of monitors killed outright (their pid is gone), and only those', async () => {
    const dead = spawnSync('true').pid;
    expect(alive(dead)).toBe(false);
    mkdirSync(join(dir, `vm-monitor.${dead}.AbC123`));
    writeFileSync(join(dir, `vm-monitor.${dead}.AbC123`, 'body'), '{}');
    // Kept: a live monitor's (this process stands in for it), a pre-1.1.0 name without a pid,
    // and a symlink (its target untouched).
    mkdirSync(join(dir, `vm-monitor.${process.pid}.LiVe12`));
    mkdirSync(join(dir, 'vm-monitor.OldOne'));
    mkdirSync(join(dir, 'target'));
    writeFileSync(join(dir, 'target', 'keep'), 'x');
    symlinkSync(join(dir, 'target'), join(dir, `vm-monitor.${dead}.link`));

    const s = await scripted(() => [409, {}]);
    const m = monitor([s.url, BUILD_ID, 'w1', 'ewb_x', '1']);
    expect((await m.exited).code).toBe(0);
    expect(workDirs().sort()).toEqual([`vm-monitor.${dead}.link`, `vm-monitor.${process.pid}.LiVe12`, 'vm-monitor.OldOne'].sort());
    expect(existsSync(join(dir, 'target', 'keep'))).toBe(true);
  });
});

describe('vm-monitor.sh arguments', () => {
  const usage = /Usage: vm-monitor\.sh <controller> <build-id> <worker-id> <api-key> \[interval\]/;
  const ids = /1-128 of A-Z a-z 0-9 \. _ -/;
  const cases: [string, string[], Record<string, string>, RegExp][] = [
    ['no arguments', [], {}, /missing <controller>/],
    ['a missing token', ['http://127.0.0.1:9', BUILD_ID, 'w1'], {}, /missing <api-key>/],
    ['a controller that is not http(s)', ['ftp://127.0.0.1', BUILD_ID, 'w1', 'ewb_x'], {}, /<controller> \(or EXPO_MONITOR_CONTROLLER\) must be an http:\/\/ or https:\/\//],
    ['the build id .', ['http://127.0.0.1:9', '.', 'w1', 'ewb_x'], {}, /<build-id> \(or EXPO_MONITOR_BUILD_ID\) must be 1-128 .* not start with '\.', got '\.'/],
    ['the build id ..', ['http://127.0.0.1:9', '..', 'w1', 'ewb_x'], {}, /<build-id> .*got '\.\.'/],
    ['a build id with a slash', ['http://127.0.0.1:9', 'a/../b', 'w1', 'ewb_x'], {}, /<build-id> .*got 'a\/\.\.\/b'/],
    ['a build id of 129 characters', ['http://127.0.0.1:9', 'b'.repeat(129), 'w1', 'ewb_x'], {}, /<build-id> \(or EXPO_MONITOR_BUILD_ID\) must be 1-128/],
    ['a build id from the environment', ['http://127.0.0.1:9'], { EXPO_MONITOR_BUILD_ID: 'x?y', EXPO_MONITOR_WORKER_ID: 'w1', EXPO_MONITOR_TOKEN: 'ewb_x' }, /<build-id> \(or EXPO_MONITOR_BUILD_ID\).*got 'x\?y'/],
    ['a worker id with a quote', ['http://127.0.0.1:9', BUILD_ID, 'w"1', 'ewb_x'], {}, /<worker-id> \(or EXPO_MONITOR_WORKER_ID\) must be 1-128 of .*got 'w"1'/],
    ['a worker id with a space', ['http://127.0.0.1:9', BUILD_ID, 'w 1', 'ewb_x'], {}, /<worker-id> .*got 'w 1'/],
    ['a zero interval', ['http://127.0.0.1:9', BUILD_ID, 'w1', 'ewb_x', '0'], {}, /\[interval\] \(or EXPO_MONITOR_INTERVAL_S\) must be a positive/],
    ['a fractional interval', ['http://127.0.0.1:9', BUILD_ID, 'w1', 'ewb_x', '1.5'], {}, /\[interval\] .*got '1\.5'/],
    ['a token with a quote', ['http://127.0.0.1:9', BUILD_ID, 'w1', 'ewb_"x'], {}, /<api-key> \(or EXPO_MONITOR_TOKEN \/ EXPO_MONITOR_TOKEN_FILE\) may hold only A-Z a-z 0-9 - \. _ ~ \+ \/ =/],
    ['too many arguments', ['http://127.0.0.1:9', BUILD_ID, 'w1', 'ewb_x', '1', 'extra'], {}, /too many arguments/],
    ['a bad curl timeout', ['http://127.0.0.1:9', BUILD_ID, 'w1', 'ewb_x'], { EXPO_MONITOR_CURL_TIMEOUT_S: 'x' }, /EXPO_MONITOR_CURL_TIMEOUT_S/],
  ];
  it.each(cases)('refuses %s, naming the argument, with usage and exit 64', async (_name, args, env, message) => {
    const m = monitor(args, { EXPO_MONITOR_TOKEN: undefined, EXPO_MONITOR_CONTROLLER: undefined, EXPO_MONITOR_BUILD_ID: undefined, EXPO_MONITOR_WORKER_ID: undefined, ...env });
    expect((await m.exited).code).toBe(64);
    expect(m.stderr()).toMatch(message);
    expect(m.stderr()).toMatch(usage);
    expect(m.stdout()).toBe('');
    expect(workDirs()).toEqual([]);
  });

  it('never prints a refused token', async () => {
    const m = monitor(['http://127.0.0.1:9', BUILD_ID, 'w1', 'ewb_Secret"Value']);
    expect((await m.exited).code).toBe(64);
    expect(m.stderr()).not.toContain('Secret');
  });

  it('says what each argument accepts in its usage', async () => {
    const m = monitor(['--help']);
    expect((await m.exited).code).toBe(0);
    expect(m.stdout()).toMatch(new RegExp(`<build-id> +${ids.source} \\(no leading \\.\\)`));
    expect(m.stdout()).toMatch(new RegExp(`<worker-id> +${ids.source}`));
  });

  it('prints the version of its VM_MONITOR_VERSION line with --version', async () => {
    const line = readFileSync(MONITOR, 'utf8').split('\n').find((l) => l.startsWith('VM_MONITOR_VERSION='));
    expect(line).toMatch(/^VM_MONITOR_VERSION=\d+\.\d+\.\d+$/);
    const m = monitor(['--version']);
    expect((await m.exited).code).toBe(0);
    expect(m.stdout()).toBe(`${line!.split('=')[1]}\n`);
  });

  it('reads the token from EXPO_MONITOR_TOKEN_FILE (here /dev/stdin)', async () => {
    const s = await scripted(() => [409, { code: 'BUILD_OVER' }]);
    const m = monitor([s.url, BUILD_ID, 'w1'], { EXPO_MONITOR_TOKEN: undefined, EXPO_MONITOR_TOKEN_FILE: '/dev/stdin' }, 'ewb_fromstdin\n');
    expect((await m.exited).code).toBe(0);
    const out = m.stdout();
    expect(out).toContain('is over (HTTP 409)');
    expect(s.requests[0]!.headers.authorization).toBe('Bearer ewb_fromstdin');
  });
});
