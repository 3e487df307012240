/**
 * The lean agent on the real system (real controller and agent processes, the tart simulator,
 * real sshd): an idle agent has not loaded the code that runs builds (it loads at the first
 * claim), and a build's commands — health checks, workspace, monitor, steps — share one SSH
 * connection. The modules an agent loaded are read from a trace its own process writes as it
 * resolves them (test/support/module-trace.ts, preloaded through NODE_OPTIONS).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { FINAL, startFarm, type Farm, WAIT, E2E_TEST_TIMEOUT_MS } from '../support/farm.ts';

vi.setConfig({ testTimeout: E2E_TEST_TIMEOUT_MS, hookTimeout: E2E_TEST_TIMEOUT_MS });

const TRACE_HOOK = fileURLToPath(new URL('../support/module-trace.ts', import.meta.url));
/**
 * What only running a build needs: none of it may be loaded while the agent idles.
 */
const LAZY = [
  /\/src\/agent\/build-kit\.ts$/,
  /\/src\/agent\/build-runner\.ts$/,
  /\/src\/agent\/remote-workspace\.ts$/,
  /\/src\/agent\/checkout\.ts$/,
  /\/src\/vm\/ephemeral-vm\.ts$/,
  /\/src\/sys\/ssh2-client\.ts$/,
  /\/node_modules\/ssh2\//,
];

/**
 * What the idle agent does without (docs/benchmarks.md, Agent: the agent's memory by module): TypeBox and the protocol's
 * schemas (the client sends from the schema-free rows, protocol/agent-routes.ts), undici (the
 * client is on node:http), conf (the config is read as plain JSON) and prom-client's index.
 */
const NOT_IDLE = [
  /\/node_modules\/typebox\//,
  /\/src\/protocol\/schemas\.ts$/,
  /\/src\/protocol\/routes\.ts$/,
  /\/node_modules\/undici\//,
  /\/node_modules\/conf\//,
  /\/node_modules\/ajv\//,
  // prom-client's index (its Pushgateway loads node:https, TLS, zlib) and the CPU metric's
  // exemplar source: the agent requires the metric classes and default metrics alone (sys/prom-lite.ts).
  /\/node_modules\/prom-client\/index\.js$/,
  /\/node_modules\/prom-client\/lib\/pushgateway\.js$/,
  /\/node_modules\/@opentelemetry\//,
];

let farm: Farm | undefined;
let dir: string | undefined;
afterEach(async () => {
  await farm?.stop();
  farm = undefined;
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

/** The modules the agent process (not its tart children) has loaded so far. */
function loadedBy(trace: string, pid: number): string[] {
  return readFileSync(trace, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith(`${pid} `))
    .map((l) => l.slice(l.indexOf(' ') + 1));
}

describe('the lean agent', () => {
  it('idles without the build code, loads it at the first claim, and runs the build over one SSH connection', async () => {
    dir = mkdtempSync(join(tmpdir(), 'expo-lean-'));
    const trace = join(dir, 'modules.txt');
    farm = await startFarm({ agentEnv: { NODE_OPTIONS: `--import=${TRACE_HOOK}`, EXPO_TEST_MODULE_TRACE: trace } });
    const agent = farm.agents[0]!;
    const pid = agent.proc.pid!;
    // Idle: started, preflight and reaping done, polling the controller.
    await agent.waitFor('agent ready', WAIT.logMs);
    const idle = loadedBy(trace, pid);
    // The trace works: the agent's own modules are in it.
    expect(idle.some((u) => u.endsWith('/src/agent/agent.ts'))).toBe(true);
    expect(idle.some((u) => u.endsWith('/src/agent/controller-client.ts'))).toBe(true);
    // …and so are the CommonJS files it requires (prom-client's, beside its index).
    expect(idle.some((u) => u.endsWith('/node_modules/prom-client/lib/registry.js'))).toBe(true);
    for (const lazy of [...LAZY, ...NOT_IDLE]) expect(idle.filter((u) => lazy.test(u)), String(lazy)).toEqual([]);

    const id = await farm.submit({
      steps: [
        { name: 'one', run: 'echo first' },
        { name: 'two', run: 'echo second; echo ::progress 60' },
      ],
    });
    const b = await farm.waitBuild(id, FINAL);
    expect(b.status, await farm.log(id)).toBe('succeeded');
    await agent.waitFor('build done', WAIT.logMs, (e) => e.buildId === id);
    const after = loadedBy(trace, pid);
    for (const lazy of LAZY) expect(after.some((u) => lazy.test(u)), String(lazy)).toBe(true);

    // One connection for the whole build: its checks, workspace upload, monitor start and stop,
    // both steps and the progress write.
    const opened = agent.lines.filter((l) => l.includes('ssh connection opened') && l.includes(id));
    expect(opened).toHaveLength(1);
  });
});
