/**
 * A whole farm on one machine for end-to-end tests: a real controller process, the tart
 * simulator with a base VM (a real sshd), and a real agent process (`node src/cli.ts agent`)
 * configured against both. Timeouts are shrunk to seconds. `stop()` ends every process and VM
 * and removes every file, whatever state the test left them in.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { request } from 'undici';
import { AGENT_NODE_FLAGS } from '../../src/agent/node-flags.ts';
import { pathOf, ROUTES } from '../../src/protocol/routes.ts';
import { CLI, startControllerProcess, type ControllerProcess } from './controller-process.ts';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.ts';
import { createTartSim, type BaseVmOptions, type TartSim, type TartSimOptions } from './tart-sim.ts';

export const ADMIN = 'e2e-admin-key-0123456789';

/**
 * The controller's heartbeat timeout in the e2e tests, in seconds. The agent runs on its default
 * intervals against it: it derives them from what the controller states (a quarter of this).
 * The watchdog fires on the deadline itself, so a live agent stalled by a busy machine for more
 * than three quarters of this (6 s) loses its build: short enough for fast fault tests, long
 * enough for CI's shared cores.
 */
export const E2E_HEARTBEAT_TIMEOUT_S = 8;

/**
 * How long the e2e tests wait. A build on the simulator takes seconds on idle cores and several
 * times that with both cores busy (each simulated tart call starts a Node process), so every
 * wait is generous — each ends as soon as its condition holds, so a passing test pays nothing.
 * Where a test asserts the product's own promptness (a watchdog at most 1 s late, a cancel
 * within 2 s), it measures on the controller's timestamps and adds `BUSY_SLACK_MS`.
 */
export const WAIT = {
  /** A build to reach a state (running, ended) from its submission or from a fault. */
  buildMs: 180_000,
  /** The agent to log a line that follows from something that already happened. */
  logMs: 90_000,
} as const;
/** The lateness a busy machine may add to a timer of the controller or the agent. */
export const BUSY_SLACK_MS = 4_000;
/** vitest's per-test timeout for the e2e files: room for a few builds on a busy machine. */
export const E2E_TEST_TIMEOUT_MS = 8 * 60_000;

/** Whether a build (as the API shows it) has ended. */
export const FINAL = (b: Record<string, any>): boolean => ['succeeded', 'failed', 'cancelled'].includes(b.status);

export interface AgentProcess {
  proc: ChildProcess;
  lines: string[];
  /** Resolves with the first log line whose `msg` contains `text` (and matches `where`). */
  waitFor: (text: string, timeoutMs?: number, where?: (entry: Record<string, unknown>) => boolean) => Promise<Record<string, unknown>>;
  exited: Promise<number | string>;
  signal: (s: NodeJS.Signals) => void;
}

export interface Farm {
  sim: TartSim;
  controller: ControllerProcess;
  dbPath: string;
  workerKey: string;
  configPath: string;
  agents: AgentProcess[];
  proxy: TcpProxy | null;
  api: <T = any>(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown, key?: string) => Promise<{ status: number; body: T; text: string }>;
  submit: (body?: Record<string, unknown>) => Promise<string>;
  build: (id: string) => Promise<Record<string, any>>;
  /** Polls the build until `done(build)` or the timeout; returns the last state. */
  waitBuild: (id: string, done: (b: Record<string, any>) => boolean, timeoutMs?: number) => Promise<Record<string, any>>;
  log: (id: string) => Promise<string>;
  startAgent: (extraConfig?: Record<string, unknown>) => Promise<AgentProcess>;
  restartController: () => Promise<void>;
  /** Names of the VMs in tart list. */
  vms: () => Promise<string[]>;
  stop: () => Promise<void>;
}

export interface FarmOptions {
  heartbeatTimeoutS?: number;
  /** More controller flags (e.g. `--prepare-timeout 4`). */
  controllerArgs?: string[];
  sim?: TartSimOptions;
  baseVm?: BaseVmOptions;
  agentConfig?: Record<string, unknown>;
  /** Start an agent at once (default true). */
  agent?: boolean;
  /** Route the agent and its VMs to the controller through a TCP proxy the test can cut. */
  proxy?: boolean;
  /** The CLI the agent runs: default the TypeScript source; benchmarks pass the built `dist/src/cli.js`. */
  agentCli?: string;
  /** More environment for the agent process only (e.g. `NODE_OPTIONS` for a module trace). */
  agentEnv?: Record<string, string>;
}

export async function startFarm(o: FarmOptions = {}): Promise<Farm> {
  const sim = await createTartSim({ bootDelayS: 0.2, ...o.sim });
  const agents: AgentProcess[] = [];
  let controller: ControllerProcess | undefined;
  try {
    await sim.createBaseVm('base', o.baseVm);
    const dbPath = join(sim.dir, 'controller.db');
    const heartbeatTimeoutS = o.heartbeatTimeoutS ?? E2E_HEARTBEAT_TIMEOUT_S;
    controller = await startControllerProcess({ dbPath, apiKey: ADMIN, heartbeatTimeoutS, extraArgs: o.controllerArgs });
    const api: Farm['api'] = async (method, path, body, key = ADMIN) => {
      const res = await request(`${farm.controller.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.body.text();
      return { status: res.statusCode, text, body: (text.startsWith('{') ? JSON.parse(text) : text) as any };
    };
    const farm: Farm = {
      sim,
      controller,
      dbPath,
      workerKey: '',
      configPath: join(sim.dir, 'agent.json'),
      agents,
      proxy: o.proxy ? await startTcpProxy(controller.port) : null,
      api,
      submit: async (body = {}) => {
        const res = await api(ROUTES.submitBuild.method, pathOf(ROUTES.submitBuild, {}), { steps: [{ name: 'build', run: 'echo hello from the VM' }], ...body });
        if (res.status !== 201) throw new Error(`submit: ${res.status} ${res.text}`);
        return res.body.id as string;
      },
      build: async (id) => (await api(ROUTES.getBuild.method, pathOf(ROUTES.getBuild, { id }))).body,
      waitBuild: async (id, done, timeoutMs = WAIT.buildMs) => {
        const deadline = Date.now() + timeoutMs;
        let b = await farm.build(id);
        while (!done(b) && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 100));
          b = await farm.build(id).catch(() => b);
        }
        return b;
      },
      log: async (id) => (await api(ROUTES.readLog.method, pathOf(ROUTES.readLog, { id }))).text,
      startAgent: async (extra = {}) => {
        const config = {
          vmName: 'base',
          vmUser: sim.user,
          vmSshKey: sim.sshKeyPath,
          controllerUrl: farm.proxy?.url ?? farm.controller.url,
          apiKey: farm.workerKey,
          workerId: 'mac-1',
          tartPath: sim.tartPath,
          tartHome: sim.tartHome,
          logDir: join(sim.dir, 'agent-logs'),
          // The liveness intervals (heartbeatIntervalS, workerHeartbeatS, preparingKeepaliveS,
          // pollWaitS) stay on their defaults: the agent derives them from the controller.
          vmIpWaitS: 10,
          sshReadyTimeoutS: 10,
          vmStopTimeoutS: 2,
          stepStopGraceS: 2,
          reconnectDelayS: 0.5,
          preflightRetryS: 1,
          minFreeDiskGb: 5,
          hostMinFreeDiskGb: 0,
          reportDeadlineS: 60,
          // A port of its own: parallel farms (and a real agent on this machine) never fight over 9464.
          metricsAddress: '127.0.0.1:0',
          ...o.agentConfig,
          ...extra,
        };
        writeFileSync(farm.configPath, JSON.stringify(config, null, 2));
        const agent = startAgentProcess(o.agentCli ?? CLI, farm.configPath, { ...sim.env, ...o.agentEnv });
        agents.push(agent);
        await agent.waitFor('agent ready', WAIT.logMs);
        return agent;
      },
      restartController: async () => {
        await farm.controller.stop('SIGKILL');
        farm.controller = await startControllerProcess({ dbPath, apiKey: ADMIN, heartbeatTimeoutS, port: farm.controller.port, extraArgs: o.controllerArgs });
      },
      vms: async () => (await sim.tart(['list', '--quiet'])).stdout.split('\n').filter(Boolean),
      stop: async () => {
        for (const a of agents) {
          a.signal('SIGKILL');
          await a.exited;
        }
        await farm.controller.stop('SIGKILL').catch(() => undefined);
        await farm.proxy?.close();
        await sim.cleanup();
      },
    };
    const res = await api(ROUTES.createWorker.method, pathOf(ROUTES.createWorker, {}), { id: 'mac-1' });
    farm.workerKey = res.body.apiKey;
    mkdirSync(join(sim.dir, 'agent-logs'), { recursive: true });
    if (o.agent ?? true) await farm.startAgent();
    return farm;
  } catch (err) {
    for (const a of agents) a.signal('SIGKILL');
    await controller?.stop('SIGKILL').catch(() => undefined);
    await sim.cleanup();
    throw err;
  }
}

function startAgentProcess(cli: string, configPath: string, env: NodeJS.ProcessEnv): AgentProcess {
  // Launched as the LaunchDaemon and bin/expo-worker launch it, so the benchmarks measure that.
  const proc = spawn(process.execPath, [...AGENT_NODE_FLAGS, cli, 'agent', '--config', configPath, '--log-level', 'debug'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const waiters: { text: string; where?: (e: Record<string, unknown>) => boolean; resolve: (e: Record<string, unknown>) => void }[] = [];
  const onLine = (line: string) => {
    lines.push(line);
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line) as Record<string, unknown>;
    } catch {
      entry = { msg: line };
    }
    for (const w of [...waiters]) {
      if (String(entry.msg).includes(w.text) && (!w.where || w.where(entry))) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(entry);
      }
    }
  };
  createInterface({ input: proc.stdout! }).on('line', onLine);
  createInterface({ input: proc.stderr! }).on('line', onLine);
  const exited = once(proc, 'exit').then(([code, signal]) => (code ?? signal) as number | string);
  return {
    proc,
    lines,
    exited,
    signal: (s) => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(s);
    },
    waitFor: (text, timeoutMs = WAIT.logMs, where) => {
      for (const line of lines) {
        try {
          const e = JSON.parse(line) as Record<string, unknown>;
          if (String(e.msg).includes(text) && (!where || where(e))) return Promise.resolve(e);
        } catch {
          if (line.includes(text)) return Promise.resolve({ msg: line });
        }
      }
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`agent never logged '${text}' within ${timeoutMs} ms:\n${lines.slice(-30).join('\n')}`)), timeoutMs);
        waiters.push({ text, where, resolve: (e) => (clearTimeout(t), resolve(e)) });
        void exited.then((code) => {
          clearTimeout(t);
          reject(new Error(`agent exited (${code}) before logging '${text}':\n${lines.slice(-30).join('\n')}`));
        });
      });
    },
  };
}
