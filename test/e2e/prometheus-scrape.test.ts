/**
 * A real Prometheus server (Debian's `prometheus`) scrapes a running controller and a running
 * agent every second: both targets are up and the queue metric can be queried. Prometheus, its
 * data directory and the farm are removed whatever happens.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startFarm, type Farm, WAIT, E2E_TEST_TIMEOUT_MS } from '../support/farm.ts';
import { freePort } from '../support/sshd.ts';

// Builds on the simulator are slow on a busy machine: see WAIT in test/support/farm.ts.
vi.setConfig({ testTimeout: E2E_TEST_TIMEOUT_MS, hookTimeout: E2E_TEST_TIMEOUT_MS });

let farm: Farm | undefined;
let prom: ChildProcess | undefined;
let promDir: string | undefined;
afterEach(async () => {
  if (prom && prom.exitCode === null && prom.signalCode === null) {
    const exited = once(prom, 'exit');
    prom.kill('SIGKILL');
    await exited;
  }
  prom = undefined;
  if (promDir) rmSync(promDir, { recursive: true, force: true });
  promDir = undefined;
  await farm?.stop();
  farm = undefined;
});

async function getJson(url: string): Promise<any> {
  const res = await request(url);
  return res.body.json();
}

async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number, output: () => string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what} within ${timeoutMs} ms; prometheus said:\n${output()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe('a real Prometheus', () => {
  it('scrapes the controller and the agent: both up, the queue metric queryable', async () => {
    farm = await startFarm({ agent: false });
    const agentPort = await freePort();
    await farm.startAgent({ metricsAddress: `127.0.0.1:${agentPort}` });
    await farm.agents[0]!.waitFor('status server listening', WAIT.logMs);
    const queued = await farm.submit({ labels: ['nobody-has-this'] }); // stays queued: the queue reads 1
    expect(queued).toMatch(/^[a-z2-7]{16}$/);

    promDir = mkdtempSync(join(tmpdir(), 'expo-prom-'));
    const promPort = await freePort();
    const controllerTarget = `127.0.0.1:${farm.controller.port}`;
    const agentTarget = `127.0.0.1:${agentPort}`;
    writeFileSync(
      join(promDir, 'prometheus.yml'),
      [
        'global: { scrape_interval: 1s, evaluation_interval: 1s }',
        'scrape_configs:',
        `  - { job_name: expo-worker-controller, static_configs: [{ targets: ['${controllerTarget}'] }] }`,
        `  - { job_name: expo-worker-agent, static_configs: [{ targets: ['${agentTarget}'] }] }`,
        '',
      ].join('\n'),
    );
    const output: string[] = [];
    prom = spawn(
      'prometheus',
      [
        `--config.file=${join(promDir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(promDir, 'data')}`,
        `--web.listen-address=127.0.0.1:${promPort}`,
      ],
      { env: process.env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    prom.stdout!.on('data', (d: Buffer) => output.push(d.toString()));
    prom.stderr!.on('data', (d: Buffer) => output.push(d.toString()));
    const api = `http://127.0.0.1:${promPort}/api/v1`;
    const tail = () => output.join('').split('\n').slice(-20).join('\n');

    const targets = await eventually(
      'both targets up',
      async () => {
        const body = await getJson(`${api}/targets`);
        const active = body.data.activeTargets as { labels: { job: string; instance: string }; health: string; lastError: string }[];
        return active.length === 2 && active.every((t) => t.health === 'up') ? active : undefined;
      },
      20_000,
      tail,
    );
    expect(targets.map((t) => [t.labels.job, t.labels.instance]).sort()).toEqual([
      ['expo-worker-agent', agentTarget],
      ['expo-worker-controller', controllerTarget],
    ]);

    const up = await getJson(`${api}/query?query=${encodeURIComponent('up')}`);
    expect(up.data.result.map((r: any) => r.value[1])).toEqual(['1', '1']);

    const queue = await eventually(
      'a value for expo_worker_queue_length',
      async () => {
        const body = await getJson(`${api}/query?query=${encodeURIComponent('expo_worker_queue_length')}`);
        return body.data.result.length > 0 ? body.data.result : undefined;
      },
      10_000,
      tail,
    );
    expect(queue[0].metric).toMatchObject({ job: 'expo-worker-controller', instance: controllerTarget });
    expect(queue[0].value[1]).toBe('1');

    const slots = await getJson(`${api}/query?query=${encodeURIComponent('expo_worker_agent_slots')}`);
    expect(slots.data.result[0].value[1]).toBe('1');
  });
});
