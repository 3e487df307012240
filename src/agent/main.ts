/**
 * `expo-worker agent [--config PATH]`: the composition root of the agent. Builds the real
 * adapters (tart CLI, ssh2, the HTTP client), wires the daemon, and owns the signals: the first SIGTERM or
 * SIGINT drains (no new builds, running ones finish, exit 0); a second aborts the running builds
 * cleanly (reported, VMs deleted, exit 1); SIGHUP reloads the config file.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { Logger } from 'pino';
import { MAX_RUNNING_MACOS_VMS, runPreflight, statfsFreeBytes } from '../health/preflight.ts';
import { INSTALLED_MONITOR_PATH, loadMonitorScript } from '../monitor/vm-monitor.ts';
import { isExpoError } from '../protocol/errors.ts';
import { SystemClock } from '../sys/clock.ts';
import { NodeExec } from '../sys/exec.ts';
import { createLogger, LOG_FORMATS, logDestination, resolveLogFormat, type LogFormat } from '../sys/logger.ts';
import { takeOverSignals } from '../sys/signals.ts';
import { reapOrphans } from '../vm/reaper.ts';
import { pruneRunLogs } from '../vm/run-logs.ts';
import { VmStartLock } from '../vm/start-lock.ts';
import { TartCli } from '../vm/tart-cli.ts';
import { Agent, type AgentDeps } from './agent.ts';
import type { BuildKitContext } from './build-kit.ts';
import { BuildCaches, PromCacheMetrics, type CacheMetrics } from './build-caches.ts';
import { CacheLocks, CacheStore } from './caches.ts';
import { defaultConfigPath, loadAgentConfig, type AgentConfig } from './config.ts';
import { ControllerClient, isAttemptOver } from './controller-client.ts';
import { controllerCallOf, PromAgentMetrics, type AgentMetrics } from './metrics.ts';
import { LazyRunner } from './lazy-runner.ts';
import { baseImageFingerprint, StandbyPool, standbyVmShape, tartHomeOf } from './standby.ts';
import { startStatusServer, type StatusServer } from './status-server.ts';

export const AGENT_HELP = `Usage: expo-worker agent [--config PATH] [--log-level LEVEL] [--log-format F]

Runs the agent: polls the controller and runs each build in a fresh, health-checked Tart VM.

Options:
  --config PATH      agent config (default ~/.expo-worker/config.json)
  --log-level LEVEL  fatal|error|warn|info|debug|trace (default info, or EXPO_AGENT_LOG_LEVEL)
  --log-format F     auto|json|pretty: auto is readable lines on a terminal, JSON otherwise
                     (default auto, or EXPO_AGENT_LOG_FORMAT)
  -h, --help         show this help

Signals: SIGTERM/SIGINT drain (finish running builds, then exit 0); a second one aborts the
builds (reported, VMs deleted) and exits 1; SIGHUP reloads the config file.
`;

/** The parts of the daemon that follow the config file (rebuilt on SIGHUP). */
function buildParts(
  config: AgentConfig,
  log: Logger,
  client: ControllerClient,
  metrics: AgentMetrics,
  standby?: StandbyPool,
  cacheMetrics?: CacheMetrics,
): Pick<AgentDeps, 'makeRunner' | 'reap' | 'preflight' | 'settings'> {
  mkdirSync(config.logDir, { recursive: true });
  if (config.caches.length > 0) mkdirSync(config.cacheDir, { recursive: true });
  const caches =
    config.caches.length === 0
      ? undefined
      : new BuildCaches({
          store: new CacheStore({ cacheDir: config.cacheDir, locks: CACHE_LOCKS }),
          caches: config.caches,
          sharedFilesRoot: config.vmSharedFilesRoot,
          metrics: cacheMetrics,
          warn: (msg, err) => log.warn({ err: err.message }, msg),
        });
  const driver = new TartCli({ exec: new NodeExec(), tartPath: config.tartPath, tartHome: config.tartHome, callTimeoutMs: config.tartTimeoutS * 1000 });
  const sshPrivateKey = readFileSync(config.vmSshKey);
  const monitor = { ...loadMonitorScript(), installedPath: INSTALLED_MONITOR_PATH };
  const clock = new SystemClock();
  const ctx: BuildKitContext = { config, log, client, metrics, clock, driver, sshPrivateKey, monitor, startLock: START_LOCK, caches };
  const tartHome = tartHomeOf(config);
  const standbyGeneration = standby?.configure({
    acquire: async (req) => (await import('./build-kit.ts')).acquireFresh(ctx, { ...req, onProgress: (line) => log.debug({ standby: req.buildId }, line) }),
    driver,
    baseFingerprint: () => baseImageFingerprint(tartHome, config.vmName),
    maxAgeMs: config.standbyMaxAgeS * 1000,
    vmShape: standbyVmShape(config),
    removed: async (vmName) => caches?.removeVm(vmName),
  });
  return {
    settings: {
      slots: config.maxConcurrentBuilds,
      pollWaitS: config.pollWaitS,
      workerHeartbeatS: config.workerHeartbeatS,
      preparingKeepaliveS: config.preparingKeepaliveS,
      heartbeatIntervalS: config.heartbeatIntervalS,
      reconnectDelayS: config.reconnectDelayS,
      preflightRetryS: config.preflightRetryS,
      maintenanceCron: config.maintenanceCron,
    },
    reap: async (running) => {
      // A standby (booting, ready, running a build or being deleted) is no orphan.
      const live = new Set([...running, ...(standby?.liveIds() ?? [])]);
      const report = await reapOrphans({
        driver,
        workerId: config.workerId,
        clonePrefix: config.clonePrefix,
        liveBuildIds: live,
        keep: (id) => standby?.owns(id) ?? false,
        stopTimeoutS: config.vmStopTimeoutS,
      });
      // A deleted orphan's cache shares (a full copy each) would otherwise stay until a restart.
      for (const name of report.deleted) await caches?.removeVm(name);
      // The same schedule bounds the tart run logs that failed VMs leave behind.
      const logs = pruneRunLogs({
        logDir: config.logDir,
        workerId: config.workerId,
        clonePrefix: config.clonePrefix,
        maxAgeDays: config.vmLogRetentionDays,
        maxFiles: config.vmLogMaxFiles,
        liveBuildIds: live,
      });
      if (logs.removed.length > 0) log.info({ removed: logs.removed.length }, 'removed old tart run logs');
      for (const f of logs.failed) log.warn({ file: f.name, err: f.error.message }, 'could not remove an old tart run log');
      return report;
    },
    preflight: () =>
      runPreflight({
        driver,
        baseVm: config.vmName,
        tartHome: tartHomeOf(config),
        minHostFreeDiskGb: config.hostMinFreeDiskGb,
        // The standby's VM is the one the next claim takes, not one more: it must not pause polling.
        maxRunningVms: MAX_RUNNING_MACOS_VMS + (standby?.idleVms() ?? 0),
      }),
    // The build code (runner, VM, SSH, workspace) loads at the first claim: idle never needs it
    // (nor does the standby until it prepares its first VM).
    makeRunner: (claim, intervals, liveness) => {
      const runner: LazyRunner = new LazyRunner(
        claim.build.id,
        async () => {
          const kit = await import('./build-kit.ts');
          return kit.makeBuildRunner(ctx, claim, intervals, liveness, async (req, ssh) => (await standby?.take(req.signal, req.onProgress, standbyGeneration)) ?? kit.acquireFresh(ctx, req, ssh));
        },
        // The claim is acknowledged (`preparing`) at once and kept alive while the kit loads,
        // as the runner's own keepalive does once it runs (lazy-runner.ts says why).
        {
          everyMs: intervals.preparingKeepaliveMs,
          beat: () =>
            client.phase(claim.build.id, claim.lease, 'preparing', { retries: 0 }).catch((err: unknown) => {
              if (isAttemptOver(err)) runner.abort('attempt_over', (err as Error).message);
            }),
        },
      );
      return runner;
    },
  };
}

const START_LOCK = new VmStartLock();
/** One per agent, across reloads: a reload never lets two promotions of one cache overlap. */
const CACHE_LOCKS = new CacheLocks();

/** Fields that identify the worker or shape the daemon: a reload cannot change them. */
const RESTART_ONLY = ['workerId', 'controllerUrl', 'apiKey', 'maxConcurrentBuilds', 'maintenanceCron', 'workerHeartbeatS', 'pollWaitS', 'standby'] as const;

export async function main(argv: string[]): Promise<number> {
  let values;
  try {
    values = parseArgs({ args: argv, options: { config: { type: 'string' }, 'log-level': { type: 'string' }, 'log-format': { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true }).values;
  } catch (err) {
    console.error(`expo-worker agent: ${(err as Error).message}\n\n${AGENT_HELP}`);
    return 64;
  }
  if (values.help) {
    console.log(AGENT_HELP);
    return 0;
  }
  const configPath = values.config ?? defaultConfigPath();
  let config: AgentConfig;
  try {
    config = loadAgentConfig(configPath);
  } catch (err) {
    if (isExpoError(err, 'CFG_INVALID')) {
      console.error(`expo-worker agent: ${err.message}`);
      return 64;
    }
    throw err;
  }
  const logFormat = values['log-format'] ?? process.env.EXPO_AGENT_LOG_FORMAT ?? 'auto';
  if (!(LOG_FORMATS as readonly string[]).includes(logFormat)) {
    console.error(`expo-worker agent: --log-format (EXPO_AGENT_LOG_FORMAT): '${logFormat}' is not one of ${LOG_FORMATS.join(', ')}`);
    return 64;
  }
  const log = createLogger(
    'expo-worker-agent',
    values['log-level'] ?? process.env.EXPO_AGENT_LOG_LEVEL ?? 'info',
    await logDestination(resolveLogFormat(logFormat as LogFormat, process.stdout.isTTY === true)),
  );
  // Built before the agent it reads its gauges from; scraped only once the agent exists.
  const metrics = new PromAgentMetrics({
    slots: () => {
      const s = agent.status();
      return { total: s.slotsTotal, busy: s.slotsBusy };
    },
    hostDiskFreeBytes: () => statfsFreeBytes(tartHomeOf(config)),
  });
  const client = new ControllerClient({
    baseUrl: config.controllerUrls,
    apiKey: config.apiKey,
    workerId: config.workerId,
    onRequestError: (err) => metrics.controllerError(controllerCallOf(String(err.details.path ?? '')), err.code === 'HTTP_STATUS' ? 'status' : 'unreachable'),
    onSwitch: (from, to, err) => {
      metrics.controllerSwitched();
      log.warn({ from, to, err: err.message }, `controller unreachable, switching to ${to}`);
    },
  });
  const standby = config.standby === 1 ? new StandbyPool({ log, metrics }) : undefined;
  // The copies an agent that died left behind (one agent per cacheDir); the gauges start from
  // what is on disk. An agent without caches leaves the directory alone.
  const cacheMetrics = new PromCacheMetrics(metrics.registry);
  if (config.caches.length > 0) {
    const cacheStore = new CacheStore({ cacheDir: config.cacheDir, locks: CACHE_LOCKS });
    // A copy that cannot be removed (or a disk error) is a warning: the agent starts anyway.
    const failed = await cacheStore.sweep().catch((err: Error) => [{ path: config.cacheDir, error: err }]);
    for (const f of failed) log.warn({ path: f.path, err: f.error.message }, 'could not remove a cache copy an earlier agent left');
    for (const c of config.caches) cacheMetrics.cacheBytes(c.name, cacheStore.totalBytes(c.name));
  }
  const agent: Agent = new Agent({
    client,
    log,
    metrics,
    standby,
    ...buildParts(config, log, client, metrics, standby, cacheMetrics),
  });
  // Set before any signal can be handled (no await between the handlers and the start). A stop
  // that arrives while it is still starting closes it once it has started, so it never outlives
  // the drain.
  let statusServer: Promise<StatusServer | undefined> = Promise.resolve(undefined);
  const closeStatusServer = async () => {
    await (await statusServer)?.close();
  };
  // Signals are ours before the first line that says we are up and before the first slow step
  // (reaping, preflight), so a stop or a reload sent the moment a line is read is handled like
  // any other, never by the default action.
  const stopped = new Promise<number>((resolve) => {
    let signals = 0;
    const stop = (signal: NodeJS.Signals) => {
      signals++;
      if (signals === 1) {
        log.info({ signal }, 'draining: finishing running builds (send the signal again to abort them)');
        void agent.drain().then(async () => {
          await client.close();
          await closeStatusServer();
          // Drained on its own: 0. Cut short by a second signal: 1 (the builds were aborted).
          resolve(signals > 1 ? 1 : 0);
        });
      } else if (signals === 2) {
        log.warn({ signal }, 'aborting running builds');
        void agent.abortAll().then(async () => {
          await client.close();
          await closeStatusServer();
          resolve(1);
        });
      }
    };
    takeOverSignals(['SIGTERM', 'SIGINT', 'SIGHUP']);
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    process.on('SIGHUP', () => {
      // A new config applies to builds claimed from now on; what identifies the worker needs a restart.
      let next: AgentConfig;
      try {
        next = loadAgentConfig(configPath);
      } catch (err) {
        log.error({ err: (err as Error).message }, 'config reload failed; keeping the current config');
        return;
      }
      // The config field controllerUrl is the whole list (controllerUrls), compared by value.
      const valueOf = (c: AgentConfig, k: (typeof RESTART_ONLY)[number]) => JSON.stringify(k === 'controllerUrl' ? c.controllerUrls : c[k]);
      const fixed = RESTART_ONLY.filter((k) => valueOf(next, k) !== valueOf(config, k));
      if (fixed.length > 0) {
        log.warn({ fields: fixed }, 'these fields change only when the agent restarts; keeping the current config');
        return;
      }
      try {
        agent.reconfigure(buildParts(next, log, client, metrics, standby, cacheMetrics));
      } catch (err) {
        log.error({ err: (err as Error).message }, 'config reload failed; keeping the current config');
        return;
      }
      config = next;
      log.info('config reloaded: builds claimed from now on use it');
    });
  });
  // A busy metrics port must not keep a host from building: Prometheus shows the agent down instead.
  statusServer = startStatusServer({ address: config.metricsAddress, metrics, status: () => agent.status() }).then(
    (server) => {
      log.info({ url: server.url }, `status server listening on ${server.url}`);
      return server;
    },
    (err: unknown) => {
      log.error({ err: (err as Error).message, metricsAddress: config.metricsAddress }, 'status server could not listen; /metrics and /health are off');
      return undefined;
    },
  );
  await statusServer;
  log.info({ workerId: config.workerId, controller: config.controllerUrl, controllers: config.controllerUrls, baseVm: config.vmName, slots: config.maxConcurrentBuilds }, 'agent starting');

  await agent.start();
  return stopped;
}
