/**
 * One attempt of one build, from claim to a deleted VM.
 *
 * States: `preparing` (phase updates keep the build alive; clone, boot, health checks) →
 * `starting-monitor` (vm-monitor.sh takes over build liveness) → `running` (steps over SSH,
 * output streamed, progress markers forwarded) → `finishing` (stop the monitor, last log bytes,
 * completion retried until the controller accepts or refuses it) → `done` (VM released, on
 * every path).
 *
 * What can end it early, each an abort reason: `cancelled` (the controller asked),
 * `prepare_timeout` (not running its steps within the controller's prepare timeout, counted from
 * the claim), `timed_out` (the steps and artifact upload ran past the build's `timeoutS`, counted
 * from the `running` phase: a slow boot never eats the build's time), `vm_crashed` (`tart run` exited or SSH keepalives failed — reported
 * at once, without waiting for the controller's watchdog), `attempt_over` (a 409: the controller
 * already ended or reassigned the attempt — nothing to report, just recycle), `shutdown` (the
 * agent is aborting its builds: reported as `worker_lost` so the build may be retried).
 * Once the attempt is `finishing` its outcome is decided: later aborts (a VM exit after its
 * release, a controller saying the attempt is over) change nothing and are not logged.
 *
 * Everything the runner touches is a port it declares here and receives (the agent wires the
 * real ones): the clock that runs every limit, keepalive, backoff and deadline; the controller
 * client; the VM; the workspace with its monitor; the log stream; metrics. So its unit tests
 * drive a whole attempt with a fake clock and fakes, no time and no processes.
 */
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import type { Logger } from 'pino';
import { isExpoError } from '../protocol/errors.ts';
import { artifactNameProblem, type FailureReason } from '../protocol/domain.ts';
import { LIMITS, type ArtifactProblem, type AssignedBuild, type CompleteBody, type PollResponse } from '../protocol/schemas.ts';
import type { CancelTimer, Clock } from '../sys/clock.ts';
import type { SshSession } from '../sys/ssh.ts';
import type { VmExit } from '../vm/vm-driver.ts';
import { RawBody, isAttemptOver, type RetryOptions } from './controller-client.ts';
import type { LogStreamOptions } from './log-stream.ts';
import { LineSplitter, parseProgressMarker, stepProgress } from './progress.ts';

export type AbortReason = 'cancelled' | 'prepare_timeout' | 'timed_out' | 'vm_crashed' | 'attempt_over' | 'shutdown';
export type RunnerState = 'preparing' | 'starting-monitor' | 'running' | 'finishing' | 'done';

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

/** What the runner tells the controller (ControllerClient fits). */
export interface RunnerClient {
  phase(buildId: string, lease: string, phase: 'preparing' | 'running', r?: RetryOptions): Promise<void>;
  appendLog(buildId: string, lease: string, offset: number, data: string, r?: RetryOptions): Promise<number>;
  /** Uploads one artifact, not retried (a retry needs a fresh stream). */
  uploadArtifact(buildId: string, lease: string, name: string, body: RawBody): Promise<{ sizeBytes: number; sha256: string }>;
  complete(buildId: string, body: CompleteBody, r?: RetryOptions): Promise<{ status: string }>;
}

/** The attempt's log on its way to the controller (LogStream fits). */
export interface RunnerLog {
  append(text: string): void;
  /** Sends what is left until delivered, the attempt is over, or `deadline` (ms since epoch); true when delivered. */
  close(deadline: number): Promise<boolean>;
}

/** The build's workspace in its VM, with its vm-monitor (RemoteWorkspace fits). */
export interface RunnerWorkspace {
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
}

export interface RunnerDeps {
  /** Every wait and limit of the attempt runs on it. */
  clock: Clock;
  client: RunnerClient;
  acquireVm: (req: { buildId: string; attempt: number; signal: AbortSignal; onProgress: (line: string) => void }) => Promise<BuildVm>;
  /** The workspace (and monitor) of the build in its VM, once the VM is healthy. */
  openWorkspace: (vm: BuildVm, build: WorkspaceSpec) => RunnerWorkspace;
  /** The attempt's log stream. */
  openLog: (options: LogStreamOptions) => RunnerLog;
  settings: RunnerSettings;
  log: Logger;
  metrics?: RunnerMetrics;
  /** Jitter of the artifact upload backoff, in [0, 1). Default Math.random. */
  random?: () => number;
}

/** How often one artifact upload is retried while the controller is away, and its backoff (ms): p-retry's former settings. */
const ARTIFACT_RETRIES = 5;
const ARTIFACT_MIN_DELAY_MS = 1000;
const ARTIFACT_MAX_DELAY_MS = 10_000;
/** How long a step that ended oddly gives the crash signals before asking the VM, ms; and how long the VM may take to answer. */
const CRASH_SETTLE_MS = 2000;
const ALIVE_TIMEOUT_MS = 5000;
/** How long the last log bytes of an attempt that is over may take, ms. */
const ABANDON_LOG_MS = 5000;

export type Outcome =
  | { kind: 'reported'; body: Omit<CompleteBody, 'lease'>; answer: string }
  | { kind: 'abandoned'; why: string };

/**
 * Calls `fn` with the latest value only, one call at a time: a burst of progress markers becomes
 * a couple of SSH commands instead of one channel each (sshd caps the channels of a session).
 */
function latestOnly(fn: (v: number) => Promise<unknown>): (v: number) => void {
  let latest: number | null = null;
  let running = false;
  const pump = async () => {
    running = true;
    while (latest !== null) {
      const v = latest;
      latest = null;
      await fn(v).catch(() => undefined);
    }
    running = false;
  };
  return (v) => {
    latest = v;
    if (!running) void pump();
  };
}

const infraReason = (reason: AbortReason): FailureReason | null => {
  switch (reason) {
    case 'vm_crashed':
    case 'timed_out':
    case 'prepare_timeout':
      return reason;
    case 'shutdown':
      return 'worker_lost';
    case 'cancelled':
    case 'attempt_over':
      return null;
    default: {
      const never: never = reason;
      throw new Error(`unknown abort reason ${String(never)}`);
    }
  }
};

/** The build's declared artifacts as patterns with their `required` flag; a pattern declared twice is one, required if either is. */
function declaredArtifacts(specs: AssignedBuild['artifacts']): { pattern: string; required: boolean }[] {
  const byPattern = new Map<string, boolean>();
  for (const s of specs) {
    const [pattern, required] = typeof s === 'string' ? [s, false] : [s.path, s.required === true];
    byPattern.set(pattern, (byPattern.get(pattern) ?? false) || required);
  }
  return [...byPattern].map(([pattern, required]) => ({ pattern, required }));
}

/** A matched file's artifact name: its path relative to work/, without `.` or empty segments (`./out//a` → `out/a`). */
const artifactNameOf = (file: string): string =>
  file
    .split('/')
    .filter((s) => s !== '' && s !== '.')
    .join('/');

/** The problems field of a completion: only when there are some, so a controller that predates it hears the same completion as before. */
const problemsField = (problems: ArtifactProblem[]): { artifactProblems?: ArtifactProblem[] } =>
  problems.length === 0 ? {} : { artifactProblems: problems.slice(0, LIMITS.maxArtifactProblems) };

/** Shortens text to the schema's bound for a problem's message (or name). */
const clip = (text: string, max = 1024): string => (text.length <= max ? text : `${text.slice(0, max - 1)}…`);

export class BuildRunner {
  readonly buildId: string;
  readonly attempt: number;
  private readonly claim: PollResponse;
  private readonly d: RunnerDeps;
  private readonly ac = new AbortController();
  private reason: AbortReason | null = null;
  private reasonDetail = '';
  private stateValue: RunnerState = 'preparing';
  private stream: RunnerLog | undefined;
  private workspace: RunnerWorkspace | undefined;
  /** Cancels the prepare limit, then the steps' limit. */
  private cancelLimit: CancelTimer = () => undefined;

  constructor(claim: PollResponse, deps: RunnerDeps) {
    this.claim = claim;
    this.buildId = claim.build.id;
    this.attempt = claim.build.attempt;
    this.d = deps;
  }

  get state(): RunnerState {
    return this.stateValue;
  }

  /** Ends the attempt early; the first reason wins, and none once the attempt is finishing. True when this call did. */
  abort(reason: AbortReason, detail = ''): boolean {
    if (this.reason !== null || this.stateValue === 'finishing' || this.stateValue === 'done') return false;
    this.reason = reason;
    this.reasonDetail = detail;
    this.d.log.warn({ buildId: this.buildId, reason, detail }, 'aborting build');
    this.ac.abort(new Error(`build ${reason}${detail ? `: ${detail}` : ''}`));
    return true;
  }

  cancel(): boolean {
    return this.abort('cancelled', 'cancel requested');
  }

  async run(): Promise<Outcome> {
    const { build, lease } = this.claim;
    const log = this.d.log.child({ buildId: build.id, attempt: build.attempt });
    const note = (line: string) => stream.append(`[expo-worker] ${line}\n`);
    const stream = (this.stream = this.d.openLog({
      path: join(this.d.settings.logDir, `${build.id}-${build.attempt}.log`),
      startOffset: build.logOffset,
      send: (offset, data) => this.d.client.appendLog(build.id, lease, offset, data, { retries: 2 }),
      onAttemptOver: (err) => this.abort('attempt_over', (err as Error).message),
      secretValues: Object.values(build.secretEnv ?? {}),
      onSendError: (err) => log.warn({ err: (err as Error).message }, 'log chunk not sent yet; will retry'),
      onConflict: (err) => log.error({ err: (err as Error).message }, 'another writer holds this log range: streaming of this attempt\'s log stopped (the local copy is kept)'),
    }));
    const prepareS = Math.round(this.d.settings.prepareTimeoutMs / 100) / 10;
    this.cancelLimit = this.d.clock.after(this.d.settings.prepareTimeoutMs, () =>
      this.abort('prepare_timeout', `the VM was not ready to run the steps within the prepare timeout of ${prepareS} s`),
    );
    let vm: BuildVm | undefined;
    let outcome: Omit<CompleteBody, 'lease'> | null;
    try {
      outcome = await this.attemptBuild(note, log, (v) => (vm = v));
    } catch (err) {
      // Something the agent itself could not get past (the controller gone for too long, an SSH
      // call failing outside a step): an infrastructure failure, so the build may be retried.
      log.error({ err: (err as Error).message }, 'build attempt failed in the agent');
      outcome = { status: 'failed', failureReason: 'worker_lost', message: `agent error: ${(err as Error).message}` };
    } finally {
      this.cancelLimit();
      this.stateValue = 'finishing';
    }
    try {
      if (this.reason === 'attempt_over') {
        await stream.close(this.d.clock.now() + ABANDON_LOG_MS);
        return { kind: 'abandoned', why: this.reasonDetail };
      }
      outcome ??= this.outcomeFromReason();
      note(`build ${outcome.status}${outcome.failureReason ? ` (${outcome.failureReason})` : ''}${outcome.message ? `: ${outcome.message}` : ''}`);
      const deadline = this.d.clock.now() + this.d.settings.reportDeadlineMs;
      await stream.close(deadline);
      const answer = await this.report(outcome, deadline, log);
      return answer === null ? { kind: 'abandoned', why: 'the controller refused the completion: the attempt was already over' } : { kind: 'reported', body: outcome, answer };
    } finally {
      // The monitor kept the build alive while the result was delivered; now it may stop. A VM
      // that crashed or froze, or an attempt already over, is about to be deleted: talking to it
      // could only hang.
      if (this.reason !== 'vm_crashed' && this.reason !== 'attempt_over') await this.workspace?.stopMonitor().catch(() => undefined);
      await this.releaseVm(vm, log, outcome?.status === 'succeeded');
      this.stateValue = 'done';
    }
  }

  /** Tells the controller the attempt's phase; false when the attempt ended meanwhile (a 409 aborts it). */
  private async reportPhase(phase: 'preparing' | 'running'): Promise<boolean> {
    try {
      await this.d.client.phase(this.buildId, this.claim.lease, phase, { signal: this.ac.signal });
      return true;
    } catch (err) {
      if (isAttemptOver(err)) this.abort('attempt_over', (err as Error).message);
      if (this.ac.signal.aborted) return false;
      throw err;
    }
  }

  /** Prepare, monitor, run the steps. Returns the outcome, or null when an abort decides it. */
  private async attemptBuild(note: (l: string) => void, log: Logger, keepVm: (vm: BuildVm) => void): Promise<Omit<CompleteBody, 'lease'> | null> {
    const { build, lease } = this.claim;
    const signal = this.ac.signal;
    const stopKeepalive = this.d.clock.every(this.d.settings.preparingKeepaliveMs, () => {
      void this.d.client.phase(build.id, lease, 'preparing', { retries: 0 }).catch((err: unknown) => {
        if (isAttemptOver(err)) this.abort('attempt_over', (err as Error).message);
      });
    });
    try {
      if (!(await this.reportPhase('preparing'))) return null;
      note(`attempt ${build.attempt} of ${build.maxAttempts} on worker ${this.d.settings.workerId}: preparing a fresh VM`);
      let vm: BuildVm;
      try {
        vm = await this.d.acquireVm({ buildId: build.id, attempt: build.attempt, signal, onProgress: note });
      } catch (err) {
        if (signal.aborted) return null;
        const reason: FailureReason = isExpoError(err, 'VM_EXITED') ? 'vm_crashed' : 'vm_unhealthy';
        return { status: 'failed', failureReason: reason, message: (err as Error).message };
      }
      keepVm(vm);
      note(`VM ${vm.name} is healthy at ${vm.ip}`);
      // Fail fast on what the agent can see for itself.
      void vm.exited.then((exit) => this.abort('vm_crashed', `tart run exited (${exit.code ?? exit.signal}): ${exit.logTail.trim().split('\n').pop() ?? ''}`));
      void vm.session.closed.then((info) => {
        if (info.error) this.abort('vm_crashed', `SSH connection lost: ${info.error.message}`);
      });
      if (signal.aborted) return null;

      this.stateValue = 'starting-monitor';
      const ws = (this.workspace = this.d.openWorkspace(vm, {
        id: build.id,
        attempt: build.attempt,
        env: { ...build.env, ...build.secretEnv },
        steps: build.steps,
        buildToken: this.claim.buildToken,
      }));
      try {
        await ws.startMonitor(note);
      } catch (err) {
        if (signal.aborted) return null;
        log.error({ err: (err as Error).message }, 'monitor start failed');
        this.d.metrics?.monitorStartFailed();
        return { status: 'failed', failureReason: 'vm_unhealthy', message: `vm-monitor.sh could not be started: ${(err as Error).message}` };
      }
      stopKeepalive();
      // Ready: what remains is telling the controller, which its own retries bound.
      this.cancelLimit();
      if (!(await this.reportPhase('running'))) return null;
      this.cancelLimit = this.d.clock.after(build.timeoutS * 1000, () => this.abort('timed_out', `the steps ran past the build's timeout of ${build.timeoutS} s`));
      this.stateValue = 'running';
      return await this.runSteps(ws, note);
    } finally {
      stopKeepalive();
    }
  }

  private async runSteps(ws: RunnerWorkspace, note: (l: string) => void): Promise<Omit<CompleteBody, 'lease'> | null> {
    const { build } = this.claim;
    const signal = this.ac.signal;
    for (const [i, step] of build.steps.entries()) {
      if (signal.aborted) return null;
      note(`step ${i + 1}/${build.steps.length}: ${step.name}`);
      const decoder = new StringDecoder('utf8');
      const lines = new LineSplitter();
      const progress = latestOnly((p: number) => ws.writeProgress(p));
      let exit: number | null;
      try {
        exit = await ws.runStep(i, stepProgress(i, build.steps.length), {
          signal,
          onOutput: (chunk) => {
            const text = decoder.write(chunk);
            this.streamText(text);
            for (const line of lines.push(text)) {
              const p = parseProgressMarker(line);
              if (p !== null) progress(p);
            }
          },
        });
      } catch (err) {
        if (!signal.aborted) {
          // The SSH call itself failed: the session or the VM is gone.
          await this.settleCrash(ws, `the SSH session failed during step '${step.name}': ${(err as Error).message}`);
          return null;
        }
        if (this.reason !== 'vm_crashed' && this.reason !== 'attempt_over') {
          note(`stopping step ${i + 1}: ${this.reason}`);
          await ws.stopStep(this.d.settings.stepStopGraceMs).catch(() => undefined);
        }
        return null;
      } finally {
        this.streamText(decoder.end());
      }
      if (exit === null) {
        // No exit status: the step was killed, or the session or the VM died under it.
        if (await this.settleCrash(ws, `the VM stopped answering during step '${step.name}'`)) return null;
        return { status: 'failed', failureReason: 'build_failed', message: `step '${step.name}' ended without an exit status` };
      }
      if (exit !== 0) {
        // A failed build's artifacts (test reports, logs) are often what explains it.
        // The step's failure stands even if the attempt is aborted while they upload.
        const problems = await this.collectArtifacts(ws, note);
        return { status: 'failed', failureReason: 'build_failed', exitCode: Math.min(255, exit), message: `step '${step.name}' exited with ${exit}`, ...(problems ? problemsField(problems) : {}) };
      }
    }
    const problems = await this.collectArtifacts(ws, note);
    if (problems === null || signal.aborted) return null;
    const missing = problems.filter((p) => p.required);
    if (missing.length > 0) {
      const what = [...new Set(missing.map((p) => `${p.pattern} (${p.reason})`))].join(', ');
      return { status: 'failed', failureReason: 'artifact_missing', message: clip(`required artifact${missing.length === 1 ? '' : 's'} not stored: ${what}`, 4000), ...problemsField(problems) };
    }
    await ws.writeProgress(100).catch(() => undefined);
    return { status: 'succeeded', exitCode: 0, ...problemsField(problems) };
  }

  /**
   * Uploads the files the build's artifact patterns match, while the monitor still keeps the
   * build alive, each under its path relative to work/ (`ios/build/App.ipa`: two files with one
   * base name stay two artifacts). Each upload is retried with a fresh stream while the
   * controller is away or failing (5xx). Nothing is lost without a word: a pattern that matched
   * nothing, a file that could not be stored — each is noted in the log and returned as a
   * problem, which the completion records on the build. Null when the attempt ended meanwhile.
   */
  private async collectArtifacts(ws: RunnerWorkspace, note: (l: string) => void): Promise<ArtifactProblem[] | null> {
    const { build } = this.claim;
    const declared = declaredArtifacts(build.artifacts);
    const problems: ArtifactProblem[] = [];
    if (this.ac.signal.aborted) return null;
    if (declared.length === 0) return problems;
    const problem = (p: ArtifactProblem) => {
      problems.push(p);
      note(`artifact${p.required ? ' (required)' : ''} ${p.name === undefined ? p.pattern : `${p.name} (${p.pattern})`} was not stored: ${p.reason}: ${p.message}`);
    };
    let found: Map<string, string[]>;
    try {
      found = await ws.findArtifacts(declared.map((d) => d.pattern));
    } catch (err) {
      for (const d of declared) problem({ pattern: d.pattern, reason: 'upload_failed', required: d.required, message: clip(`could not look for it in the VM: ${(err as Error).message}`) });
      return problems;
    }
    const stored = new Set<string>();
    for (const d of declared) {
      const files = found.get(d.pattern) ?? [];
      if (files.length === 0) problem({ pattern: d.pattern, reason: 'no_match', required: d.required, message: 'no file matches this pattern in the work directory' });
      for (const file of files) {
        const name = artifactNameOf(file);
        const bad = artifactNameProblem(name);
        if (bad !== null) {
          problem({ pattern: d.pattern, name: clip(name, 2048), reason: 'invalid_name', required: d.required, message: bad });
          continue;
        }
        // Two patterns matching one file: one artifact.
        if (stored.has(name)) continue;
        try {
          const r = await this.upload(ws, file, name, note);
          stored.add(name);
          note(`artifact ${name}: ${r.sizeBytes} bytes, sha256 ${r.sha256}`);
        } catch (err) {
          if (isAttemptOver(err)) {
            this.abort('attempt_over', (err as Error).message);
            return null;
          }
          if (this.ac.signal.aborted) return null;
          const tooLarge = isExpoError(err, 'HTTP_STATUS') && (err.details as { code?: string }).code === 'API_BODY_TOO_LARGE';
          problem({ pattern: d.pattern, name, reason: tooLarge ? 'too_large' : 'upload_failed', required: d.required, message: clip((err as Error).message) });
        }
      }
    }
    return problems;
  }

  /**
   * Uploads one artifact from a fresh stream, retried while the controller is away or failing
   * (HTTP_UNREACHABLE): up to 5 retries, backoff 1 s doubling to 10 s, with jitter ×1–2.
   * Rejects with the last error, or with the abort reason once the attempt is aborted.
   */
  private async upload(ws: RunnerWorkspace, file: string, name: string, note: (l: string) => void): Promise<{ sizeBytes: number; sha256: string }> {
    const { build, lease } = this.claim;
    const signal = this.ac.signal;
    const random = this.d.random ?? Math.random;
    for (let attempt = 1; ; attempt++) {
      signal.throwIfAborted();
      try {
        const { stream, sizeBytes } = await ws.openArtifact(file);
        return await this.d.client.uploadArtifact(build.id, lease, name, new RawBody(stream, sizeBytes));
      } catch (err) {
        signal.throwIfAborted();
        if (!isExpoError(err, 'HTTP_UNREACHABLE') || attempt > ARTIFACT_RETRIES) throw err;
        this.d.log.warn({ buildId: build.id, artifact: name, attempt, err: err.message }, 'artifact upload failed; retrying');
        note(`artifact ${name}: upload ${attempt} failed (${err.message}); retrying`);
        const delayMs = Math.min(ARTIFACT_MAX_DELAY_MS, Math.round((random() + 1) * ARTIFACT_MIN_DELAY_MS * 2 ** (attempt - 1)));
        await this.d.clock.sleep(delayMs, signal);
      }
    }
  }

  /**
   * After a step ended oddly: gives the crash signals (tart run exiting, keepalives failing) a
   * moment, then asks the VM directly. True when the attempt is over (now aborted as a crash).
   */
  private async settleCrash(ws: RunnerWorkspace, detail: string): Promise<boolean> {
    const signal = this.ac.signal;
    await this.d.clock.sleep(CRASH_SETTLE_MS, signal).catch(() => undefined);
    if (signal.aborted) return true;
    if (await ws.alive(ALIVE_TIMEOUT_MS)) return false;
    this.abort('vm_crashed', detail);
    return true;
  }

  private streamText(text: string): void {
    this.stream?.append(text);
  }

  private outcomeFromReason(): Omit<CompleteBody, 'lease'> {
    const reason = this.reason ?? 'shutdown';
    if (reason === 'cancelled') return { status: 'cancelled', message: this.reasonDetail };
    return { status: 'failed', failureReason: infraReason(reason) ?? 'worker_lost', message: this.reasonDetail };
  }

  /** Sends the completion until the controller answers; null when it refuses (409: already over). */
  private async report(body: Omit<CompleteBody, 'lease'>, deadline: number, log: Logger): Promise<string | null> {
    const timeout = new AbortController();
    const cancelTimeout = this.d.clock.after(Math.max(1000, deadline - this.d.clock.now()), () =>
      timeout.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError')),
    );
    try {
      const res = await this.d.client.complete(this.buildId, { ...body, lease: this.claim.lease }, {
        retries: Number.POSITIVE_INFINITY,
        signal: timeout.signal,
        onRetry: (err, n, delayMs) => log.warn({ attempt: n, delayMs, err: err.message }, 'completion not delivered yet; retrying'),
      });
      log.info({ status: body.status, failureReason: body.failureReason, answer: res.status }, 'build reported');
      return res.status;
    } catch (err) {
      if (isAttemptOver(err)) {
        log.warn({ err: (err as Error).message }, 'completion refused: the attempt was already over');
        return null;
      }
      log.error({ err: (err as Error).message }, 'completion could not be delivered');
      throw err;
    } finally {
      cancelTimeout();
    }
  }

  private async releaseVm(vm: BuildVm | undefined, log: Logger, succeeded = false): Promise<void> {
    if (!vm) return;
    try {
      await vm.release({ removeLog: succeeded });
    } catch (err) {
      log.error({ vm: vm.name, err: (err as Error).message }, 'could not delete the VM; the reaper will retry');
    }
  }
}
