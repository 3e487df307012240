/**
 * Metrics on the real system: a real controller process, the tart simulator and a real agent
 * process with its status server. The counters move as a build succeeds and as a frozen VM is
 * failed by the watchdog, and `promtool check metrics` accepts both outputs.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { request } from 'undici';
import { E2E_HEARTBEAT_TIMEOUT_S, FINAL, startFarm, type Farm, WAIT, E2E_TEST_TIMEOUT_MS } from '../support/farm.ts';
import { promtoolCheckMetrics, sampleValue } from '../support/prom-text.ts';

// Builds on the simulator are slow on a busy machine: see WAIT in test/support/farm.ts.
vi.setConfig({ testTimeout: E2E_TEST_TIMEOUT_MS, hookTimeout: E2E_TEST_TIMEOUT_MS });

let farm: Farm | undefined;
afterEach(async () => {
  await farm?.stop();
  farm = undefined;
});

async function fetchText(url: string): Promise<{ status: number; text: string; type: string }> {
  const res = await request(url);
  return { status: res.statusCode, text: await res.body.text(), type: String(res.headers['content-type']) };
}

describe('metrics across a build and a heartbeat timeout', () => {
  it('count the build, the VM phases and the checks, then the heartbeat timeout; promtool accepts both outputs', async () => {
    farm = await startFarm();
    const agent = farm.agents[0]!;
    const agentUrl = String((await agent.waitFor('status server listening', WAIT.logMs)).url);
    const controllerMetrics = async () => (await fetchText(`${farm!.controller.url}/metrics`)).text;
    const agentMetrics = async () => (await fetchText(`${agentUrl}/metrics`)).text;

    // The preflight runs as the agent starts; /health answers from the first moment.
    let health: { statusCode: number; body: Record<string, any> } = { statusCode: 0, body: { preflight: [] } };
    for (let i = 0; i < 100 && health.body.state !== 'polling'; i++) {
      const res = await request(`${agentUrl}/health`);
      health = { statusCode: res.statusCode, body: (await res.body.json()) as Record<string, any> };
      if (health.body.state !== 'polling') await new Promise((r) => setTimeout(r, 100));
    }
    const body = health.body;
    expect(health.statusCode).toBe(200);
    expect(body).toMatchObject({ status: 'ok', slotsTotal: 1, slotsBusy: 0, lastError: null });
    expect(body.preflight.map((c: { name: string }) => c.name)).toEqual(['tart-found', 'base-vm-exists', 'host-disk', 'vm-limit']);

    // A build that succeeds.
    const ok = await farm.submit({ steps: [{ name: 'hello', run: 'echo hi' }] });
    expect(await farm.waitBuild(ok, FINAL)).toMatchObject({ status: 'succeeded' });
    await agent.waitFor('build done', WAIT.logMs, (e) => e.buildId === ok);
    let c = await controllerMetrics();
    expect(sampleValue(c, 'expo_worker_builds_submitted_total')).toBe(1);
    expect(sampleValue(c, 'expo_worker_builds_finished_total', { status: 'succeeded' })).toBe(1);
    expect(sampleValue(c, 'expo_worker_builds', { status: 'succeeded' })).toBe(1);
    expect(sampleValue(c, 'expo_worker_queue_length')).toBe(0);
    expect(sampleValue(c, 'expo_worker_queue_wait_seconds_count')).toBe(1);
    expect(sampleValue(c, 'expo_worker_build_duration_seconds_count', { status: 'succeeded' })).toBe(1);
    expect(sampleValue(c, 'expo_worker_build_heartbeats_total')).toBeGreaterThan(0);
    expect(sampleValue(c, 'expo_worker_workers', { status: 'idle' })).toBe(1);
    expect(sampleValue(c, 'expo_worker_worker_state', { worker: 'mac-1', status: 'idle' })).toBe(1);
    expect(sampleValue(c, 'expo_worker_http_request_duration_seconds_count', { route: '/api/v1/builds/:id/complete', code: '200' })).toBeGreaterThanOrEqual(1);
    expect(c).not.toContain(ok); // never a build id in a label
    let a = await agentMetrics();
    expect(sampleValue(a, 'expo_worker_agent_builds_total', { result: 'succeeded' })).toBe(1);
    expect(sampleValue(a, 'expo_worker_agent_vm_prepares_total', { result: 'ok' })).toBe(1);
    for (const phase of ['clone', 'boot_to_ip', 'ssh_ready', 'checks']) {
      expect(sampleValue(a, 'expo_worker_agent_vm_prepare_duration_seconds_count', { phase }), phase).toBe(1);
    }
    for (const check of ['vm-exists', 'vm-ip', 'ssh-alive', 'disk-space', 'tart-found', 'host-disk']) {
      expect(sampleValue(a, 'expo_worker_agent_health_checks_total', { check, result: 'ok' }), check).toBeGreaterThanOrEqual(1);
    }
    expect(sampleValue(a, 'expo_worker_agent_slots')).toBe(1);
    expect(sampleValue(a, 'expo_worker_agent_slots_busy')).toBe(0);
    expect(sampleValue(a, 'expo_worker_agent_host_disk_free_bytes')).toBeGreaterThan(0);
    expect(sampleValue(a, 'expo_worker_agent_monitor_start_failures_total')).toBe(0);
    expect(a).not.toContain(ok);

    // A build whose VM freezes: the watchdog fails it with heartbeat_timeout.
    const frozen = await farm.submit({ steps: [{ name: 'long', run: 'echo started; sleep 300' }] });
    const running = await farm.waitBuild(frozen, (b) => (b.status === 'running' && b.progress !== null) || FINAL(b));
    expect(running.status).toBe('running');
    expect(sampleValue(await agentMetrics(), 'expo_worker_agent_slots_busy')).toBe(1);
    c = await controllerMetrics();
    expect(sampleValue(c, 'expo_worker_workers', { status: 'busy' })).toBe(1);
    expect(sampleValue(c, 'expo_worker_build_heartbeat_age_max_seconds', { status: 'running' })).toBeLessThan(E2E_HEARTBEAT_TIMEOUT_S);
    await farm.sim.fault(`expo-mac-1-${frozen}-1`, 'freeze');
    expect(await farm.waitBuild(frozen, FINAL)).toMatchObject({ status: 'failed', failureReason: 'heartbeat_timeout' });
    c = await controllerMetrics();
    expect(sampleValue(c, 'expo_worker_build_failures_total', { reason: 'heartbeat_timeout' })).toBe(1);
    expect(sampleValue(c, 'expo_worker_builds_finished_total', { status: 'failed' })).toBe(1);
    expect(sampleValue(c, 'expo_worker_build_heartbeat_age_max_seconds', { status: 'running' })).toBe(0);
    expect(sampleValue(c, 'expo_worker_heartbeat_timeout_seconds')).toBe(E2E_HEARTBEAT_TIMEOUT_S);
    await agent.waitFor('build done', WAIT.logMs, (e) => e.buildId === frozen);
    a = await agentMetrics();
    // The agent learns from its worker heartbeat that the attempt is over: abandoned, VM recycled.
    expect(sampleValue(a, 'expo_worker_agent_builds_total', { result: 'abandoned' })).toBe(1);
    expect(sampleValue(a, 'expo_worker_agent_slots_busy')).toBe(0);

    const checkC = promtoolCheckMetrics(c);
    expect(checkC.output).toBe('');
    expect(checkC.status).toBe(0);
    const checkA = promtoolCheckMetrics(a);
    expect(checkA.output).toBe('');
    expect(checkA.status).toBe(0);
    expect(c.length).toBeGreaterThan(1000);
    expect(a.length).toBeGreaterThan(1000);
  });
});
