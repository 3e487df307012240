/**
 * The ports of the build runner: what it needs of the VM, the controller, the workspace in the
 * VM (with its monitor), the log stream, the clock and metrics — each as narrow as the runner
 * uses it, so that its unit tests pass fakes without casts. The agent's main wires the real
 * ones (EphemeralVm, ControllerClient, RemoteWorkspace + VmMonitor, LogStream, SystemClock,
 * PromAgentMetrics).
 */
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { AssignedBuild, CompleteBody } from '../protocol/schemas.ts';
import type { Clock } from '../sys/clock.ts';
import type { SshSession } from '../sys/ssh.ts';
import type { VmExit } from '../vm/vm-driver.ts';
import type { RunnerCaches } from './build-caches.ts';
import type { CheckoutClient, CheckoutWorkspace } from './checkout.ts';
import type { RawBody, RetryOptions } from './controller-client.ts';
import type { LogStreamOptions } from './log-stream.ts';

/** The VM a build runs in (EphemeralVm fits). */
export interface BuildVm {
  readonly name: string;
  readonly ip: string;
  readonly session: SshSession;
  readonly exited: Promise<VmExit>;
  /** `removeLog`: the build went well, its VM's `tart run` log is not worth keeping. */
  release(options?: { removeLog?: boolean }): Promise<void>;
}

export interface RunnerSettings {
  workerId: string;
  /** How long from the claim the attempt may take to start its steps, ms (the controller's prepare timeout). */
  prepareTimeoutMs: number;
  /** Where attempt logs are kept locally. */
  logDir: string;
  /** TERM → KILL grace when stopping a step, ms. Default 10 000. */
  stepStopGraceMs: number;
  /** How often phase updates keep a preparing build alive, ms (a quarter of the controller's heartbeat timeout at most). */
  preparingKeepaliveMs: number;
  /** How long the completion (and the last log bytes) are retried, ms. Default 1 hour. */
  reportDeadlineMs: number;
}

/** What the runner tells the controller, and asks it for a clone token (ControllerClient fits). */
export interface RunnerClient extends CheckoutClient {
  phase(buildId: string, lease: string, phase: 'preparing' | 'running', r?: RetryOptions): Promise<void>;
  /** Tells the controller step `index` (0-based) of the attempt starts now (a `running` phase update with its step). */
  stepStarted(buildId: string, lease: string, index: number, r?: RetryOptions): Promise<void>;
  appendLog(buildId: string, lease: string, offset: number, data: string, r?: RetryOptions): Promise<number>;
  /** Uploads one artifact, not retried (a retry needs a fresh stream). */
  uploadArtifact(buildId: string, lease: string, name: string, body: RawBody): Promise<{ sizeBytes: number; sha256: string }>;
  complete(buildId: string, body: CompleteBody, r?: RetryOptions): Promise<{ status: string }>;
}

/** The attempt's log on its way to the controller (LogStream fits). */
export interface RunnerLog {
  append(text: string): void;
  /** Masks these values too from now on (a clone token fetched during the attempt). */
  addSecrets(values: readonly string[]): void;
  /** Sends what is left until delivered, the attempt is over, or `deadline` (ms since epoch); true when delivered. */
  close(deadline: number): Promise<boolean>;
}

/** The build's workspace in its VM, with its vm-monitor and the checkout of its commit (RemoteWorkspace fits). */
export interface RunnerWorkspace extends CheckoutWorkspace {
  /** Sets up the workspace and starts vm-monitor.sh in it; throws when it did not start. */
  startMonitor(note: (line: string) => void): Promise<number>;
  /** Stops the monitor when it runs. */
  stopMonitor(): Promise<void>;
  /** Runs step `index`; its exit status, or null when the channel ended without one. */
  runStep(index: number, progress: number, io: { onOutput: (chunk: Buffer) => void; signal?: AbortSignal }): Promise<number | null>;
  /** Stops the running step's processes: TERM, up to `graceMs`, then KILL. */
  stopStep(graceMs: number): Promise<void>;
  writeProgress(percent: number): Promise<void>;
  /** The files of work/ each pattern matches. */
  findArtifacts(patterns: readonly string[]): Promise<Map<string, string[]>>;
  openArtifact(path: string): Promise<{ stream: Readable; sizeBytes: number }>;
  /** Whether the VM still answers. */
  alive(timeoutMs: number): Promise<boolean>;
}

/** What the runner puts in the workspace: the build's env (secrets included: they travel in a 0600 file, never on a command line), its steps, and the token its monitor beats with. */
export interface WorkspaceSpec {
  id: string;
  attempt: number;
  env: Record<string, string>;
  steps: AssignedBuild['steps'];
  buildToken: string;
}

/** The runner's metrics (the agent's metrics fit). */
export interface RunnerMetrics {
  monitorStartFailed(): void;
  /** A checkout that ran to its end (not one aborted), how long it took in seconds and whether it worked. */
  checkoutFinished(seconds: number, ok: boolean): void;
  /** The attempt's first step starts, `seconds` after the runner started (the claim). */
  firstStepStarted?(seconds: number): void;
}

export interface RunnerDeps {
  /** Every wait and limit of the attempt runs on it. */
  clock: Clock;
  client: RunnerClient;
  /**
   * Clones, boots and health-checks the build's VM (or takes the standby), with the caches'
   * shares mounted (build-kit.ts). `onSshReady`, when the VM supports it, is called once SSH logs in and
   * before the last checks, so the workspace and monitor start beside them (the checks still
   * decide the acquire).
   */
  acquireVm: (req: {
    buildId: string;
    attempt: number;
    signal: AbortSignal;
    onProgress: (line: string) => void;
    onSshReady?: (vm: BuildVm) => void;
  }) => Promise<BuildVm>;
  /** The workspace (and monitor) of the build in its VM, once the VM is healthy. */
  openWorkspace: (vm: BuildVm, build: WorkspaceSpec) => RunnerWorkspace;
  /** The attempt's log stream. */
  openLog: (options: LogStreamOptions) => RunnerLog;
  settings: RunnerSettings;
  log: Logger;
  metrics?: RunnerMetrics;
  /** The host caches shared into each build's VM (build-caches.ts). Default none. */
  caches?: RunnerCaches;
  /** Jitter of the artifact upload backoff, in [0, 1). Default Math.random. */
  random?: () => number;
}
