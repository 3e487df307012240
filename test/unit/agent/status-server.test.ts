/**
 * The agent's status server on a real loopback port: /metrics from the real prom-client
 * adapter (accepted by promtool), /health's 200 and 503, unknown paths and methods, and an
 * address that is not host:port refused naming the option.
 */
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import type { AgentStatus } from '../../../src/agent/agent.ts';
import { buildResultOf, controllerCallOf, PromAgentMetrics } from '../../../src/agent/metrics.ts';
import { parseListenAddress, startStatusServer, type StatusServer } from '../../../src/agent/status-server.ts';
import { promtoolCheckMetrics, sampleValue } from '../../support/prom-text.ts';

let server: StatusServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

const status = (over: Partial<AgentStatus> = {}): AgentStatus => ({
  state: 'polling',
  slotsTotal: 2,
  slotsBusy: 1,
  runningBuilds: ['abcdefghijklmnop'],
  lastPollAt: Date.parse('2026-01-01T10:00:00Z'),
  lastError: null,
  preflight: [{ name: 'tart-found', ok: true, detail: 'tart 2.22.4', durationMs: 3 }],
  ...over,
});

describe('agent status server', () => {
  it('serves the metrics the port was told of, and promtool accepts them', async () => {
    let current = status();
    const metrics = new PromAgentMetrics({ slots: () => ({ total: current.slotsTotal, busy: current.slotsBusy }), hostDiskFreeBytes: async () => 5e10 });
    server = await startStatusServer({ address: '127.0.0.1:0', metrics, status: () => current });
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    metrics.vmPreparePhase('clone', 1.5);
    metrics.vmPrepared('failed');
    metrics.healthCheck('disk-space', false);
    metrics.buildFinished('failed', 'vm_unhealthy');
    metrics.controllerError(controllerCallOf('/api/v1/workers/mac-1/poll'), 'unreachable');
    metrics.orphansReaped(2, 1);
    metrics.monitorStartFailed();
    const res = await request(`${server.url}/metrics`);
    expect(res.headers['content-type']).toContain('text/plain');
    const text = await res.body.text();
    expect(sampleValue(text, 'expo_worker_agent_slots')).toBe(2);
    expect(sampleValue(text, 'expo_worker_agent_slots_busy')).toBe(1);
    expect(sampleValue(text, 'expo_worker_agent_host_disk_free_bytes')).toBe(5e10);
    expect(sampleValue(text, 'expo_worker_agent_vm_prepare_duration_seconds_sum', { phase: 'clone' })).toBe(1.5);
    expect(sampleValue(text, 'expo_worker_agent_vm_prepares_total', { result: 'failed' })).toBe(1);
    expect(sampleValue(text, 'expo_worker_agent_health_checks_total', { check: 'disk-space', result: 'failed' })).toBe(1);
    expect(sampleValue(text, 'expo_worker_agent_builds_total', { result: 'failed', reason: 'vm_unhealthy' })).toBe(1);
    expect(sampleValue(text, 'expo_worker_agent_controller_errors_total', { call: 'poll', kind: 'unreachable' })).toBe(1);
    expect(sampleValue(text, 'expo_worker_agent_orphans_reaped_total')).toBe(2);
    expect(sampleValue(text, 'expo_worker_agent_orphan_reap_failures_total')).toBe(1);
    expect(sampleValue(text, 'expo_worker_agent_monitor_start_failures_total')).toBe(1);
    expect(promtoolCheckMetrics(text)).toEqual({ status: 0, output: '' });
    current = status({ slotsBusy: 0 });
    expect(sampleValue(await (await request(`${server.url}/metrics`)).body.text(), 'expo_worker_agent_slots_busy')).toBe(0);
  });

  it('answers /health with 200 while healthy and 503 when the preflight fails; 404 and 405 otherwise', async () => {
    let current = status();
    const metrics = new PromAgentMetrics({ slots: () => ({ total: 2, busy: 1 }), hostDiskFreeBytes: async () => Promise.reject(new Error('gone')) });
    server = await startStatusServer({ address: '127.0.0.1:0', metrics, status: () => current });
    let res = await request(`${server.url}/health`);
    expect(res.statusCode).toBe(200);
    expect(await res.body.json()).toEqual({
      status: 'ok',
      state: 'polling',
      slotsTotal: 2,
      slotsBusy: 1,
      runningBuilds: ['abcdefghijklmnop'],
      lastPollAt: '2026-01-01T10:00:00.000Z',
      lastError: null,
      preflight: [{ name: 'tart-found', ok: true, detail: 'tart 2.22.4' }],
    });
    current = status({ preflight: [{ name: 'host-disk', ok: false, detail: '2.0 GiB free, below 10 GiB', durationMs: 1 }], lastError: 'controller unreachable' });
    res = await request(`${server.url}/health`);
    expect(res.statusCode).toBe(503);
    expect(await res.body.json()).toMatchObject({ status: 'unhealthy', lastError: 'controller unreachable', preflight: [{ name: 'host-disk', ok: false }] });
    // A disk that cannot be measured reads NaN (not a false 0); the scrape still works.
    res = await request(`${server.url}/metrics`);
    expect(res.statusCode).toBe(200);
    const text = await res.body.text();
    expect(sampleValue(text, 'expo_worker_agent_host_disk_free_bytes')).toBeNaN();
    expect(promtoolCheckMetrics(text).status).toBe(0);
    res = await request(`${server.url}/nope`);
    expect(res.statusCode).toBe(404);
    await res.body.dump();
    res = await request(`${server.url}/metrics`, { method: 'POST' });
    expect(res.statusCode).toBe(405);
    await res.body.dump();
  });

  it('refuses an address that is not host:port, naming metricsAddress; fails to start on a taken port', async () => {
    expect(parseListenAddress('127.0.0.1:9464')).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(parseListenAddress('[::1]:9464')).toEqual({ host: '::1', port: 9464 });
    for (const bad of ['9464', '127.0.0.1', '127.0.0.1:99999', 'a b:1']) {
      expect(() => parseListenAddress(bad), bad).toThrow(/^metricsAddress: must be host:port/);
    }
    const metrics = new PromAgentMetrics({ slots: () => ({ total: 1, busy: 0 }), hostDiskFreeBytes: async () => 1 });
    server = await startStatusServer({ address: '127.0.0.1:0', metrics, status: () => status() });
    const port = new URL(server.url).port;
    await expect(startStatusServer({ address: `127.0.0.1:${port}`, metrics, status: () => status() })).rejects.toThrow(/EADDRINUSE/);
  });

  it('labels controller calls by route, never by id, and maps outcomes to results', () => {
    expect(controllerCallOf('/api/v1/workers/mac-1/poll')).toBe('poll');
    expect(controllerCallOf('/api/v1/workers/mac-1/heartbeat')).toBe('worker_heartbeat');
    expect(controllerCallOf('/api/v1/builds/abcdefghijklmnop/heartbeat')).toBe('build_heartbeat');
    expect(controllerCallOf('/api/v1/builds/abcdefghijklmnop/logs')).toBe('logs');
    expect(controllerCallOf('/api/v1/workers/mac-1')).toBe('worker');
    expect(controllerCallOf('/health')).toBe('other');
    expect(buildResultOf({ kind: 'abandoned', why: 'x' })).toEqual({ result: 'abandoned' });
    expect(buildResultOf({ kind: 'reported', body: { status: 'failed' }, answer: 'failed' })).toEqual({ result: 'failed', reason: 'build_failed' });
    expect(buildResultOf({ kind: 'reported', body: { status: 'succeeded', exitCode: 0 }, answer: 'succeeded' })).toEqual({ result: 'succeeded' });
  });
});
