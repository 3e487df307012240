/** Secrets never reach the log, at any level; the metrics endpoint serves Prometheus text. */
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { buildApp } from '../../src/controller/app.ts';
import { createLogger } from '../../src/sys/logger.ts';
import { SqliteStore } from '../../src/controller/store/sqlite-store.ts';

describe('logging', () => {
  it('never writes keys, tokens, leases or env values, even at trace level', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'expo-log-test-'));
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const store = new SqliteStore({ path: join(dir, 'c.db') });
    await store.migrate();
    const adminKey = 'admin-secret-0123456789abcdef';
    const c = await buildApp({ store, adminKey, heartbeatTimeoutMs: 60_000, maxLogBytes: 1 << 20, artifactsDir: join(dir, 'artifacts'), defaultBuildTimeoutS: 60, logger: createLogger('expo-worker-controller', 'trace', sink) });
    try {
      const admin = { authorization: `Bearer ${adminKey}` };
      const { apiKey } = (await c.app.inject({ method: 'POST', url: '/api/v1/workers', headers: admin, payload: { id: 'mac-1' } })).json();
      const worker = { authorization: `Bearer ${apiKey}` };
      const { id } = (await c.app.inject({ method: 'POST', url: '/api/v1/builds', headers: admin, payload: { steps: [{ name: 's', run: 'true' }], env: { SIGNING_PASSWORD: 'hunter2-very-secret' } } })).json();
      const claim = (await c.app.inject({ method: 'POST', url: '/api/v1/workers/mac-1/poll', headers: worker, payload: { slotsFree: 1, runningBuilds: [], waitS: 0 } })).json();
      await c.app.inject({ method: 'POST', url: `/api/v1/builds/${id}/heartbeat`, headers: { authorization: `Bearer ${claim.buildToken}` }, payload: {} });
      await c.app.inject({ method: 'POST', url: `/api/v1/builds/${id}/complete`, headers: worker, payload: { lease: claim.lease, status: 'succeeded' } });
      // A refused call with a secret in the header is logged too.
      await c.app.inject({ method: 'GET', url: '/api/v1/builds', headers: { authorization: 'Bearer ewk_not-a-real-key-but-secret' } });
      const log = lines.join('');
      expect(log).toContain('build finished'); // the log was really written
      expect(log).toContain('"level":20'); // debug request lines included
      for (const secret of [adminKey, apiKey, claim.buildToken, claim.lease, 'hunter2-very-secret', 'ewk_not-a-real-key-but-secret']) {
        expect(log, secret).not.toContain(secret);
      }
    } finally {
      await c.shutdown();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a client aborting an artifact upload mid-body is an info line without a stack, not an error-level "request failed: aborted"', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'expo-log-test-'));
    const lines: string[] = [];
    let heard: () => void = () => {};
    const abortLogged = new Promise<void>((resolve) => (heard = resolve));
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        if (chunk.toString().includes('aborted')) heard();
        done();
      },
    });
    const store = new SqliteStore({ path: join(dir, 'c.db') });
    await store.migrate();
    const adminKey = 'admin-secret-0123456789abcdef';
    const c = await buildApp({ store, adminKey, heartbeatTimeoutMs: 60_000, maxLogBytes: 1 << 20, artifactsDir: join(dir, 'artifacts'), defaultBuildTimeoutS: 60, logger: createLogger('expo-worker-controller', 'info', sink) });
    let client: Socket | undefined;
    try {
      const admin = { authorization: `Bearer ${adminKey}` };
      const { apiKey } = (await c.app.inject({ method: 'POST', url: '/api/v1/workers', headers: admin, payload: { id: 'mac-1' } })).json();
      const { id } = (await c.app.inject({ method: 'POST', url: '/api/v1/builds', headers: admin, payload: { steps: [{ name: 's', run: 'true' }] } })).json();
      const claim = (await c.app.inject({ method: 'POST', url: '/api/v1/workers/mac-1/poll', headers: { authorization: `Bearer ${apiKey}` }, payload: { slotsFree: 1, runningBuilds: [], waitS: 0 } })).json();
      await c.app.listen({ port: 0, host: '127.0.0.1' });
      const port = (c.app.server.address() as { port: number }).port;
      // The client goes away once the controller has the request, its body only begun.
      c.app.server.once('request', () => client?.destroy());
      client = connect(port, '127.0.0.1', () => {
        client?.write(`PUT /api/v1/builds/${id}/artifacts/App.ipa HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${apiKey}\r\nX-Expo-Lease: ${claim.lease}\r\nContent-Length: 100000\r\n\r\n${'x'.repeat(1000)}`);
      });
      await abortLogged;
      const aborted = lines.map((l) => JSON.parse(l) as { level: number; msg: string; err?: unknown }).filter((l) => l.msg.includes('aborted'));
      expect(aborted).toHaveLength(1);
      expect(aborted[0]).toMatchObject({ level: 30, msg: expect.stringContaining('request aborted by the client') });
      expect(JSON.stringify(aborted[0])).not.toContain('stack');
      expect(lines.filter((l) => (JSON.parse(l) as { level: number }).level >= 50)).toEqual([]);
    } finally {
      client?.destroy();
      await c.shutdown();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('redacts secrets in objects logged by our code', () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const log = createLogger('expo-worker-controller', 'info', sink);
    log.info({ apiKey: 'k1-secret', build: { buildToken: 't1-secret', env: { A: 'e1-secret' } }, req: { headers: { authorization: 'Bearer h1-secret' } } }, 'x');
    const out = lines.join('');
    expect(out).toContain('[redacted]');
    for (const s of ['k1-secret', 't1-secret', 'e1-secret', 'h1-secret']) expect(out).not.toContain(s);
  });
});

describe('metrics', () => {
  it('serves Prometheus text with the build gauges, without build ids', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'expo-metrics-test-'));
    const store = new SqliteStore({ path: join(dir, 'c.db') });
    await store.migrate();
    const c = await buildApp({ store, adminKey: 'admin-secret-0123456789abcdef', heartbeatTimeoutMs: 60_000, maxLogBytes: 1 << 20, artifactsDir: join(dir, 'artifacts'), defaultBuildTimeoutS: 60, logger: createLogger('expo-worker-controller', 'silent') });
    try {
      const { id } = (await c.app.inject({ method: 'POST', url: '/api/v1/builds', headers: { authorization: 'Bearer admin-secret-0123456789abcdef' }, payload: { steps: [{ name: 's', run: 'true' }] } })).json();
      const res = await c.app.inject({ method: 'GET', url: '/metrics' });
      expect(res.headers['content-type']).toContain('text/plain');
      expect(res.body).toContain('expo_worker_builds{status="queued"} 1');
      expect(res.body).toContain('expo_worker_queue_length 1');
      expect(res.body).not.toContain(id);
    } finally {
      await c.shutdown();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
