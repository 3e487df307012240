/**
 * The controller as a real process: crash safety (SIGKILL with builds in every state, restart on
 * the same database, nothing lost), graceful SIGTERM (open long-polls answered 204), the start-up
 * grace, and configuration errors.
 */
import { spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { midway } from '../support/busy.ts';
import { CLI, killAllControllers, startControllerProcess } from '../support/controller-process.ts';

const KEY = 'process-test-admin-key';
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'expo-ctl-proc-'));
});
afterEach(async () => {
  await killAllControllers();
  rmSync(dir, { recursive: true, force: true });
});

async function call(base: string, method: 'GET' | 'POST', path: string, key: string, body?: unknown) {
  const res = await request(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.body.text();
  return { status: res.statusCode, text, json: () => JSON.parse(text) as Record<string, any> };
}

describe('crash safety', () => {
  it('loses nothing when SIGKILLed with builds queued, running and finished, and logs written', async () => {
    const db = join(dir, 'c.db');
    const c1 = await startControllerProcess({ dbPath: db, apiKey: KEY });
    const { apiKey: wk } = (await call(c1.url, 'POST', '/api/v1/workers', KEY, { id: 'mac-1' })).json();
    const submit = async () => (await call(c1.url, 'POST', '/api/v1/builds', KEY, { steps: [{ name: 'b', run: 'make' }] })).json().id as string;
    const finished = await submit();
    const running = await submit();
    const queued = await submit();
    const poll = async () => (await call(c1.url, 'POST', '/api/v1/workers/mac-1/poll', wk, { slotsFree: 1, runningBuilds: [], waitS: 0 })).json();
    const f = await poll();
    await call(c1.url, 'POST', `/api/v1/builds/${finished}/logs`, wk, { lease: f.lease, offset: 0, data: 'done\n' });
    await call(c1.url, 'POST', `/api/v1/builds/${finished}/complete`, wk, { lease: f.lease, status: 'succeeded' });
    const r = await poll();
    await call(c1.url, 'POST', `/api/v1/builds/${running}/phase`, wk, { lease: r.lease, phase: 'running' });
    await call(c1.url, 'POST', `/api/v1/builds/${running}/logs`, wk, { lease: r.lease, offset: 0, data: 'line 1\n' });
    expect(await c1.stop('SIGKILL')).toBe('SIGKILL');

    const c2 = await startControllerProcess({ dbPath: db, apiKey: KEY });
    const get = async (id: string) => (await call(c2.url, 'GET', `/api/v1/builds/${id}`, KEY)).json();
    expect(await get(finished)).toMatchObject({ status: 'succeeded' });
    expect(await get(running)).toMatchObject({ status: 'running', workerId: 'mac-1' });
    expect(await get(queued)).toMatchObject({ status: 'queued' });
    expect((await call(c2.url, 'GET', `/api/v1/builds/${finished}/logs`, KEY)).text).toBe('done\n');
    expect((await call(c2.url, 'GET', `/api/v1/builds/${running}/logs`, KEY)).text).toBe('line 1\n');
    // The worker's key, the lease and the build token survived too: the build carries on.
    expect((await call(c2.url, 'POST', `/api/v1/builds/${running}/heartbeat`, r.buildToken, { progress: 50 })).status).toBe(200);
    expect((await call(c2.url, 'POST', `/api/v1/builds/${running}/logs`, wk, { lease: r.lease, offset: 7, data: 'line 2\n' })).status).toBe(200);
    expect((await call(c2.url, 'POST', `/api/v1/builds/${running}/complete`, wk, { lease: r.lease, status: 'succeeded' })).json()).toMatchObject({ status: 'succeeded' });
    expect((await call(c2.url, 'GET', `/api/v1/builds/${running}/logs`, KEY)).text).toBe('line 1\nline 2\n');
    await expect(poll()).rejects.toThrow(); // the first controller is really gone
    await c2.stop();
  });

  it('grants one heartbeat timeout of grace after a restart, then fails the silent build', async () => {
    const db = join(dir, 'c.db');
    // Long enough that a busy machine reads the build within the grace, from "listening" on (the
    // watchdog fails it on the grace's end, not a polling interval after: the margin is the grace's).
    const heartbeatTimeoutS = 5;
    const c1 = await startControllerProcess({ dbPath: db, apiKey: KEY, heartbeatTimeoutS });
    const { apiKey: wk } = (await call(c1.url, 'POST', '/api/v1/workers', KEY, { id: 'mac-1' })).json();
    const id = (await call(c1.url, 'POST', '/api/v1/builds', KEY, { steps: [{ name: 'b', run: 'make' }] })).json().id as string;
    const claim = (await call(c1.url, 'POST', '/api/v1/workers/mac-1/poll', wk, { slotsFree: 1, runningBuilds: [], waitS: 0 })).json();
    await call(c1.url, 'POST', `/api/v1/builds/${id}/phase`, wk, { lease: claim.lease, phase: 'running' });
    await c1.stop('SIGKILL');
    await new Promise((r) => setTimeout(r, heartbeatTimeoutS * 1000 + 500)); // longer than the timeout while the controller is down
    const c2 = await startControllerProcess({ dbPath: db, apiKey: KEY, heartbeatTimeoutS });
    const get = async () => (await call(c2.url, 'GET', `/api/v1/builds/${id}`, KEY)).json();
    expect((await get()).status).toBe('running');
    // Then it fails, once the grace is over: a generous wait that ends as soon as it does.
    for (const deadline = Date.now() + 60_000; (await get()).status === 'running' && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 100));
    expect(await get()).toMatchObject({ status: 'failed', failureReason: 'heartbeat_timeout' });
    await c2.stop();
  });
});

describe('graceful stop', () => {
  it('answers an open long-poll with 204 on SIGTERM, then exits 0', async () => {
    const c = await startControllerProcess({ dbPath: join(dir, 'c.db'), apiKey: KEY });
    const { apiKey: wk } = (await call(c.url, 'POST', '/api/v1/workers', KEY, { id: 'mac-1' })).json();
    const waitS = 20;
    const pending = call(c.url, 'POST', '/api/v1/workers/mac-1/poll', wk, { slotsFree: 1, runningBuilds: [], waitS });
    // The poll has arrived once the worker was seen (a busy machine may take a while to send it).
    const seen = async () => (await call(c.url, 'GET', '/api/v1/workers/mac-1', KEY)).json().lastSeenAt !== null;
    for (const deadline = Date.now() + 30_000; !(await seen()) && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 50));
    const stoppedAt = Date.now();
    const exit = c.stop('SIGTERM');
    expect((await pending).status).toBe(204);
    // Answered by the stop, not by the end of its wait.
    expect(Date.now() - stoppedAt).toBeLessThan(midway(0, waitS * 1000));
    expect(await exit).toBe(0);
    expect(c.output.join('\n')).toContain('controller stopped');
  });
});

describe('configuration', () => {
  it('names every bad value at once and exits non-zero', () => {
    const res = spawnSync(process.execPath, [CLI, 'controller', '--port', 'eighty', '--heartbeat-timeout=-3'], {
      encoding: 'utf8',
      env: { ...process.env, EXPO_CONTROLLER_API_KEY: '', EXPO_CONTROLLER_DB: '' },
    });
    expect(res.status).toBe(64);
    expect(res.stderr).toContain("--port (EXPO_CONTROLLER_PORT): 'eighty' is not a port number");
    expect(res.stderr).toContain("--heartbeat-timeout (EXPO_CONTROLLER_HEARTBEAT_TIMEOUT): '-3'");
    expect(res.stderr).toContain('--db (EXPO_CONTROLLER_DB): required');
    expect(res.stderr).toContain('--api-key (EXPO_CONTROLLER_API_KEY): required');
  });

  it('takes every setting from the environment too, decimals included', async () => {
    const c = await startControllerProcess({
      dbPath: join(dir, 'ignored.db'),
      apiKey: KEY,
      extraArgs: [],
      env: { EXPO_CONTROLLER_HEARTBEAT_TIMEOUT: '0.5' },
    });
    expect(c.output.join('\n')).toContain('"heartbeatTimeoutS":0.5');
    await c.stop();
  });

  it('takes the GitHub webhook secret from the environment: a signed delivery is recorded, the secret never logged', async () => {
    const secret = 'process-github-secret-0123456789';
    const c = await startControllerProcess({ dbPath: join(dir, 'gh.db'), apiKey: KEY, env: { EXPO_CONTROLLER_GITHUB_SECRET: secret } });
    const body = JSON.stringify({ ref: 'refs/heads/main', repository: { full_name: 'octo/app' } });
    const deliver = (signature: string) =>
      request(`${c.url}/webhooks/github`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': '72d3162e-cc78-11e3-81ab-4c9367dc0958', 'x-hub-signature-256': signature },
        body,
      });
    const wrong = await deliver(`sha256=${createHmac('sha256', 'not-the-secret-0123456789').update(body).digest('hex')}`);
    expect(wrong.statusCode).toBe(401);
    await wrong.body.dump();
    const right = await deliver(`sha256=${createHmac('sha256', secret).update(body).digest('hex')}`);
    expect(right.statusCode).toBe(202);
    await right.body.dump();
    const listed = (await call(c.url, 'GET', '/api/v1/github/deliveries', KEY)).json();
    expect(listed.deliveries).toMatchObject([{ event: 'push', repository: 'octo/app', outcome: 'ignored' }]);
    expect(await c.stop()).toBe(0);
    expect(c.output.join('\n')).toContain('webhook delivery ignored: no project for octo/app');
    expect(c.output.join('\n')).not.toContain(secret);
  });

  it('refuses an unknown flag with the usage', () => {
    const res = spawnSync(process.execPath, [CLI, 'controller', '--prot', '1'], { encoding: 'utf8' });
    expect(res.status).toBe(64);
    expect(res.stderr).toContain("Unknown option '--prot'");
    expect(res.stderr).toContain('Usage: expo-worker controller');
  });
});
