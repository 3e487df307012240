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
 * the claim: the VM, its monitor and the host caches' copies), `timed_out` (the steps and artifact upload ran past the build's `timeoutS`, counted
 * from the `running` phase: a slow boot never eats the build's time), `vm_crashed` (`tart run` exited or SSH keepalives failed — reported
 * at once, without waiting for the controller's watchdog), `attempt_over` (a 409: the controller
 * already ended or reassigned the attempt — nothing to report, just recycle), `shutdown` (the
 * agent is aborting its builds: reported as `worker_lost` so the build may be retried).
 * Once the attempt is `finishing` its outcome is decided: later aborts (a VM exit after its
 * release, a controller saying the attempt is over) change nothing and are not logged.
 *
 * Everything the runner touches is a port it declares (runner-ports.ts) and receives (the
 * agent's main wires the real ones): the clock that runs every limit, keepalive, backoff and
 * deadline; the controller client; the VM; the workspace with its monitor; the log stream;
 * metrics. So its unit tests drive a whole attempt with a fake clock and fakes, no time and no
 * processes.
 */
import { join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import type { Logger } from 'pino';
import { isExpoError } from '../protocol/errors.ts';
import type { FailureReason } from '../protocol/domain.ts';
import type { ArtifactProblem, CompleteBody, PollResponse } from '../protocol/schemas.ts';
import type { CancelTimer } from '../sys/clock.ts';
import { clip, collectArtifacts, problemsField } from './artifact-collector.ts';
import { checkoutCommit, type CheckoutSpec } from './checkout.ts';
import { isAttemptOver } from './controller-client.ts';
import { LineSplitter, parseProgressMarker, stepProgress } from './progress.ts';
import type { RunnerCacheSession } from './build-caches.ts';
import type { BuildVm, RunnerDeps, RunnerLog, RunnerWorkspace } from './runner-ports.ts';

export type AbortReason = 'cancelled' | 'prepare_timeout' | 'timed_out' | 'vm_crashed' | 'attempt_over' | 'shutdown';
export type RunnerState = 'preparing' | 'starting-monitor' | 'running' | 'finishing' | 'done';

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

/** A workspace whose setup and monitor start were begun; `started` is awaited (or dropped with a failed acquire). */
interface EarlyStart {
  workspace: RunnerWorkspace;
  started: Promise<unknown>;
}

function startEarly(open: () => RunnerWorkspace, note: (l: string) => void): EarlyStart {
  const workspace = open();
  const started = workspace.startMonitor(note);
  // Awaited once the VM is healthy; a VM that fails its checks is released and this dropped.
  started.catch(() => undefined);
  return { workspace, started };
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
  /** The attempt's host caches: checked out into the VM's shares once it has its VM, promoted or discarded after it. */
  private caches: RunnerCacheSession | undefined;
  /** Cancels the prepare limit, then the steps' limit. */
  private cancelLimit: CancelTimer = () => undefined;
  /** When run() began (the claim), on the runner's clock: the claim → first step metric. */
  private startedAt = 0;

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
    this.startedAt = this.d.clock.now();
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
      const released = await this.releaseVm(vm, log, outcome?.status === 'succeeded');
      // The VM is gone: nothing writes the copies any more. A VM not deleted cleanly may still
      // be writing: its copies are discarded.
      await this.caches?.end(outcome?.status === 'succeeded' && released);
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

  /**
   * Tells the controller a step starts, for the build page's step durations; best effort and not
   * awaited: the step does not wait for the controller, and a report that fails is logged, never
   * the build's failure. A 409 still means the attempt is over, as for every call.
   */
  private reportStepStart(index: number): void {
    const signal = this.ac.signal;
    this.d.client.stepStarted(this.buildId, this.claim.lease, index, { signal, retries: 2 }).catch((err: unknown) => {
      if (isAttemptOver(err)) this.abort('attempt_over', (err as Error).message);
      else if (!signal.aborted) this.d.log.warn({ buildId: this.buildId, step: index, err: (err as Error).message }, 'step start not reported; the build goes on');
    });
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
      // The workspace and monitor start as soon as SSH answers, beside the last health checks.
      let early: EarlyStart | undefined;
      try {
        vm = await this.d.acquireVm({
          buildId: build.id,
          attempt: build.attempt,
          signal,
          onProgress: note,
          onSshReady: (v) => (early = startEarly(() => this.openBuildWorkspace(v), note)),
        });
      } catch (err) {
        // Whatever started early went with the released VM: nothing to stop.
        this.workspace = undefined;
        if (signal.aborted) return null;
        const reason: FailureReason = isExpoError(err, 'VM_EXITED') ? 'vm_crashed' : 'vm_unhealthy';
        return { status: 'failed', failureReason: reason, message: (err as Error).message };
      }
      keepVm(vm);
      // The VM booted with its (empty) cache shares, a standby too: the build's copies go in
      // now, beside the monitor's start. Still preparing: the prepare limit bounds the copy and
      // an abort kills it (a real copy of a large cache off APFS takes minutes).
      this.caches = this.d.caches?.open({ id: build.id, attempt: build.attempt, env: build.env }, vm.name, note);
      const copying = this.caches?.checkout(signal);
      note(`VM ${vm.name} is healthy at ${vm.ip}`);
      // Fail fast on what the agent can see for itself.
      void vm.exited.then((exit) => this.abort('vm_crashed', `tart run exited (${exit.code ?? exit.signal}): ${exit.logTail.trim().split('\n').pop() ?? ''}`));
      void vm.session.closed.then((info) => {
        if (info.error) this.abort('vm_crashed', `SSH connection lost: ${info.error.message}`);
      });
      if (signal.aborted) return null;

      this.stateValue = 'starting-monitor';
      early ??= startEarly(() => this.openBuildWorkspace(vm), note);
      const ws = early.workspace;
      try {
        await early.started;
      } catch (err) {
        if (signal.aborted) return null;
        log.error({ err: (err as Error).message }, 'monitor start failed');
        this.d.metrics?.monitorStartFailed();
        return { status: 'failed', failureReason: 'vm_unhealthy', message: `vm-monitor.sh could not be started: ${(err as Error).message}` };
      }
      // Never rejects; an abort ends it early (the copy is discarded at the end).
      await copying;
      if (signal.aborted) return null;
      stopKeepalive();
      // Ready: what remains is telling the controller, which its own retries bound.
      this.cancelLimit();
      if (!(await this.reportPhase('running'))) return null;
      this.cancelLimit = this.d.clock.after(build.timeoutS * 1000, () => this.abort('timed_out', `the steps ran past the build's timeout of ${build.timeoutS} s`));
      this.stateValue = 'running';
      await this.caches?.link(vm.session, signal);
      const result = await this.runSteps(ws, note);
      // Before the VM stops (a hard power-off): the caches' writes reach the host.
      if (result?.status === 'succeeded') await this.caches?.settle?.(vm.session, signal);
      return result;
    } finally {
      stopKeepalive();
    }
  }

  private openBuildWorkspace(vm: BuildVm): RunnerWorkspace {
    const { build } = this.claim;
    return (this.workspace = this.d.openWorkspace(vm, {
      id: build.id,
      attempt: build.attempt,
      env: { ...build.env, ...build.secretEnv },
      steps: build.steps,
      buildToken: this.claim.buildToken,
    }));
  }

  private async runSteps(ws: RunnerWorkspace, note: (l: string) => void): Promise<Omit<CompleteBody, 'lease'> | null> {
    const { build } = this.claim;
    const signal = this.ac.signal;
    if (build.checkout) {
      const failed = await this.checkout(ws, build.checkout, note);
      if (failed !== null || signal.aborted) return failed;
    }
    for (const [i, step] of build.steps.entries()) {
      if (signal.aborted) return null;
      note(`step ${i + 1}/${build.steps.length}: ${step.name}`);
      if (i === 0) this.d.metrics?.firstStepStarted?.((this.d.clock.now() - this.startedAt) / 1000);
      this.reportStepStart(i);
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

  /** Checks the build's commit out into work/ (checkout.ts); the attempt's failure, or null (done, or aborted). */
  private async checkout(ws: RunnerWorkspace, spec: CheckoutSpec, note: (l: string) => void): Promise<Omit<CompleteBody, 'lease'> | null> {
    const signal = this.ac.signal;
    const decoder = new StringDecoder('utf8');
    const started = this.d.clock.now();
    try {
      const failed = await checkoutCommit({
        buildId: this.buildId,
        lease: this.claim.lease,
        spec,
        client: this.d.client,
        workspace: ws,
        signal,
        note,
        onOutput: (chunk) => this.streamText(decoder.write(chunk)),
        mask: (values) => this.stream?.addSecrets(values),
        onAttemptOver: (detail) => this.abort('attempt_over', detail),
        retry: { onRetry: (err, n) => this.d.log.warn({ buildId: this.buildId, attempt: n, err: err.message }, 'checkout token not received yet; retrying') },
      });
      this.streamText(decoder.end());
      if (!signal.aborted) this.d.metrics?.checkoutFinished((this.d.clock.now() - started) / 1000, failed === null);
      // No exit status: the script was killed, or the session or the VM died under it.
      if (failed?.noExit && (await this.settleCrash(ws, 'the VM stopped answering during the checkout'))) return null;
      return failed?.body ?? null;
    } catch (err) {
      this.streamText(decoder.end());
      if (signal.aborted) return null;
      // The SSH call itself failed: the session or the VM is gone, or the agent's trouble.
      if (await this.settleCrash(ws, `the SSH session failed during the checkout: ${(err as Error).message}`)) return null;
      throw err;
    }
  }

  /** The attempt's artifacts (see artifact-collector.ts); null when the attempt ended meanwhile. */
  private collectArtifacts(ws: RunnerWorkspace, note: (l: string) => void): Promise<ArtifactProblem[] | null> {
    const { build, lease } = this.claim;
    return collectArtifacts({
      build,
      lease,
      workspace: ws,
      client: this.d.client,
      clock: this.d.clock,
      random: this.d.random ?? Math.random,
      log: this.d.log,
      signal: this.ac.signal,
      note,
      onAttemptOver: (detail) => this.abort('attempt_over', detail),
    });
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

  /** Stops and deletes the VM; whether that went cleanly (no VM: true). */
  private async releaseVm(vm: BuildVm | undefined, log: Logger, succeeded = false): Promise<boolean> {
    if (!vm) return true;
    try {
      await vm.release({ removeLog: succeeded });
      return true;
    } catch (err) {
      log.error({ vm: vm.name, err: (err as Error).message }, 'could not delete the VM; the reaper will retry');
      return false;
    }
  }
}
