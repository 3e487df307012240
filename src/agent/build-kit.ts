/**
 * What running a build needs and idling does not: the build runner with its VM, SSH, workspace,
 * monitor and log stream (and through them ssh2, typebox and the checkout and artifact code).
 * The agent's main loads this module at its first claim (see lazy-runner.ts), so an agent that
 * waits for work never holds them in memory; once loaded it stays, and later claims pay nothing.
 */
import type { Logger } from 'pino';
import { VmMonitor, type MonitorImage } from '../monitor/vm-monitor.ts';
import { DEFAULT_PREPARE_TIMEOUT_MS } from '../protocol/liveness.ts';
import type { Liveness } from '../protocol/liveness.ts';
import type { PollResponse } from '../protocol/schemas.ts';
import type { Clock } from '../sys/clock.ts';
import type { SshClient } from '../sys/ssh.ts';
import { Ssh2Client } from '../sys/ssh2-client.ts';
import { EphemeralVm, type AcquireRequest } from '../vm/ephemeral-vm.ts';
import type { VmStartLock } from '../vm/start-lock.ts';
import type { TartCli } from '../vm/tart-cli.ts';
import type { VmDirShare } from '../vm/vm-driver.ts';
import type { AgentIntervals } from '../monitor/watchdog-policy.ts';
import { BuildRunner } from './build-runner.ts';
import type { AgentConfig } from './config.ts';
import type { ControllerClient } from './controller-client.ts';
import { LogStream } from './log-stream.ts';
import type { AgentMetrics } from './metrics.ts';
import type { BuildVm } from './runner-ports.ts';
import type { RunnerCaches } from './build-caches.ts';
import { RemoteWorkspace } from './remote-workspace.ts';

/** What main builds from the config and hands to every runner. */
export interface BuildKitContext {
  config: AgentConfig;
  log: Logger;
  client: ControllerClient;
  metrics: AgentMetrics;
  clock: Clock;
  driver: TartCli;
  sshPrivateKey: Buffer;
  monitor: MonitorImage;
  /** One lock for the whole agent, across reloads: never a third macOS VM. */
  startLock: VmStartLock;
  /** The host caches, when the config has any: every VM (a standby too) boots with their shares. */
  caches?: RunnerCaches;
}

/** One SSH client for every build of this process (it holds no connection itself). */
let ssh: Ssh2Client | undefined;
const sharedSsh = (): Ssh2Client => (ssh ??= new Ssh2Client());

/** What acquiring a VM is asked: the runner's request, with its abort signal and progress lines. */
export type FreshRequest = AcquireRequest & { signal: AbortSignal; onProgress: (line: string) => void };

/**
 * A VM's cache shares, made empty before it boots (the VM's name is the clone name acquire will
 * use); none when the config has no caches or they cannot be made (the build then goes without).
 */
async function cacheShares(ctx: BuildKitContext, req: FreshRequest): Promise<{ vmName: string; dirs: readonly VmDirShare[] } | undefined> {
  const { caches, config } = ctx;
  if (caches === undefined) return undefined;
  let vmName: string;
  try {
    vmName = EphemeralVm.nameFor(config, req);
  } catch {
    return undefined; // acquire reports the bad name
  }
  try {
    return { vmName, dirs: await caches.shares(vmName) };
  } catch (err) {
    req.onProgress(`caches left out: their shares could not be made: ${(err as Error).message}`);
    await caches.removeVm(vmName);
    return undefined;
  }
}

/** A fresh VM, cloned, booted with the caches' shares and checked: for a build, or for the standby (standby.ts). */
export async function acquireFresh(ctx: BuildKitContext, req: FreshRequest, sshClient: SshClient = sharedSsh()): Promise<EphemeralVm> {
  const { config, metrics } = ctx;
  const shares = await cacheShares(ctx, req);
  try {
    const vm = await EphemeralVm.acquire(
      {
        driver: ctx.driver,
        ssh: sshClient,
        baseVm: config.vmName,
        workerId: config.workerId,
        clonePrefix: config.clonePrefix,
        logDir: config.logDir,
        sshUser: config.vmUser,
        sshPrivateKey: ctx.sshPrivateKey,
        ipWaitS: config.vmIpWaitS,
        sshReadyTimeoutS: config.sshReadyTimeoutS,
        minFreeDiskGb: config.minFreeDiskGb,
        stopTimeoutS: config.vmStopTimeoutS,
        hostKey: config.vmHostKey.length > 0 ? { kind: 'pinned', fingerprints: config.vmHostKey } : { kind: 'any' },
        network: config.vmNetwork,
        dirs: shares?.dirs,
        startLock: ctx.startLock,
        onProgress: req.onProgress,
        onCheck: (r) => metrics.healthCheck(r.name, r.ok),
        onPhase: (phase, ms) => metrics.vmPreparePhase(phase, ms / 1000),
      },
      req,
    );
    metrics.vmPrepared('ok');
    return vm;
  } catch (err) {
    metrics.vmPrepared(req.signal.aborted ? 'aborted' : 'failed');
    // acquire deleted the VM: no build will clean its shares up.
    if (shares !== undefined) await ctx.caches?.removeVm(shares.vmName);
    throw err;
  }
}

/** The runner of one claimed attempt, wired to the real adapters. */
export function makeBuildRunner(
  ctx: BuildKitContext,
  claim: PollResponse,
  intervals: AgentIntervals,
  liveness: Liveness | null,
  acquireVm?: (req: FreshRequest, ssh: SshClient) => Promise<BuildVm>,
): BuildRunner {
  const { config, log, client, metrics } = ctx;
  const shared = sharedSsh();
  // Every command of the build (checks, workspace, monitor, steps, artifacts) shares the one
  // connection acquire opens; each connection is logged at debug, so a second one shows.
  let connections = 0;
  const sshClient: SshClient = {
    connect: async (options) => {
      const session = await shared.connect(options);
      connections++;
      log.debug({ buildId: claim.build.id, attempt: claim.build.attempt, host: options.host, connections }, 'ssh connection opened');
      return session;
    },
  };
  return new BuildRunner(claim, {
    clock: ctx.clock,
    client,
    log,
    metrics,
    // The one handle that also made the VM's shares (acquireFresh): so every share made is checked out or removed.
    caches: ctx.caches,
    openLog: (options) => new LogStream(options),
    openWorkspace: (vm, build) =>
      new RemoteWorkspace(vm.session, build, {
        monitor: new VmMonitor(vm.session, ctx.monitor, {
          controllerUrls: config.vmControllerUrls,
          buildId: build.id,
          workerId: config.workerId,
          buildToken: build.buildToken,
          intervalS: intervals.monitorIntervalS,
          requestTimeoutS: intervals.monitorRequestTimeoutS,
        }),
      }),
    settings: {
      workerId: config.workerId,
      // A controller too old to state it: the controller's own default.
      prepareTimeoutMs: liveness?.prepareTimeoutMs ?? DEFAULT_PREPARE_TIMEOUT_MS,
      logDir: config.logDir,
      stepStopGraceMs: config.stepStopGraceS * 1000,
      preparingKeepaliveMs: intervals.preparingKeepaliveMs,
      reportDeadlineMs: config.reportDeadlineS * 1000,
    },
    // A standby VM when the caller has a good one; else a fresh one, the same way.
    acquireVm: (req) => (acquireVm ? acquireVm(req, sshClient) : acquireFresh(ctx, req, sshClient)),
  });
}
