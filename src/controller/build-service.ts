/**
 * The rules of a build's life, on top of the Store port (which it receives and never bypasses).
 *
 * States: `queued → assigned → preparing → running → succeeded | failed | cancelled`.
 * - queued → assigned: a worker's poll claims it (`poll`), with a fresh lease and build token.
 * - assigned → preparing → running: the worker's phase updates (`phase`).
 * - any active state → final: the worker's completion (`complete`), or the watchdog
 *   (`heartbeat_timeout`, `worker_lost`), or a cancel the worker carried out.
 * - active → queued: an infrastructure failure with attempts left (a fresh claim follows), or an
 *   assignment the worker never received (taken back, the attempt not counted).
 * - queued → cancelled: `cancel` before any worker took it (or `supersede`, for a newer commit).
 * A final build is never moved again; `rerun` makes a new build of the same work instead.
 * How an attempt ends — requeue, take back or fail — is decided in one place (`settlement.ts`)
 * and applied in one (`AttemptEndings`): the worker's completion and every ending of the
 * controller's own (`giveUp`: watchdog, reconcile, unopenable secrets) go through it.
 * Every change made on a worker's behalf is checked against its lease (fencing); a stale lease
 * is refused with 409 so the agent aborts and recycles its VM. The store keeps only the lease's
 * SHA-256 digest: what a worker presents is hashed here before any lookup or comparison.
 *
 * Secret env values are sealed (`SecretBox`) before they reach the store (values too short to
 * mask are refused), opened only for the worker's claim, masked in log chunks and completion
 * messages stored here as a defence (the agent masks first), and erased by the store when the
 * build is final.
 */
import { ExpoError } from '../protocol/errors.ts';
import { artifactPatternMatches, type BuildPhase, type FailureReason, type FinalBuildStatus } from '../protocol/domain.ts';
import type { ArtifactProblem, BuildHeartbeatBody, BuildSource, CompleteBody, CreateBuildBody, LogChunkBody, PollBody, WorkerHeartbeatBody } from '../protocol/schemas.ts';
import { hashSecret, newBuildId, type Principal } from './auth.ts';
import { Dispatcher, type Reservation } from './dispatcher.ts';
import { WorkerWaits } from './worker-waits.ts';
import type { Liveness } from '../protocol/liveness.ts';
import { livenessOf } from '../monitor/watchdog-policy.ts';
import type { AttemptRecord, BuildPulse, BuildRecord, Claim, ListBuildsFilter, NewBuild, Store, WorkerRecord } from './store/store.ts';
import type { SecretBox } from './secret-box.ts';
import { unopenable, WorkerLiveness, type PollResult } from './worker-liveness.ts';
import { AttemptEndings, type AttemptEndingsOptions, type BuildEvent, type Settled } from './attempt-endings.ts';
import { maskSameLength, MIN_SECRET_CHARS, secretNeedles } from '../protocol/secret-mask.ts';
import { pageOf } from './utf8-cut.ts';
import type { ClusterEvent } from './cluster.ts';

/** What the build service reads and writes. */
export type BuildStore = AttemptEndingsOptions['store'] &
  Pick<Store, 'createBuild' | 'createAndClaim' | 'listBuilds' | 'countQueuedBuilds' | 'requestCancel' | 'cancelQueued' | 'touchWorker' | 'touchWorkers' | 'getWorker' | 'activeBuildsOfWorker' | 'unfinishedBuildsOfRef'> &
  Pick<Store, 'claimBuild' | 'getAttemptByLease' | 'getAttemptByTokenHash' | 'hasAttemptOnWorker' | 'touchBuild' | 'setBuildPhase' | 'recordStepStart' | 'appendLog' | 'readLog' | 'readLogRange'> &
  Pick<Store, 'listArtifacts' | 'setArtifactProblems'>;

export interface BuildServiceOptions {
  store: BuildStore;
  /** The time source, in ms since the epoch. */
  now: () => number;
  /** A build or worker silent this long is failed / offline. Default 120 000 ms. */
  heartbeatTimeoutMs: number;
  /** How long a claimed build may prepare before it fails `prepare_timeout`, ms. Default 600 000. */
  prepareTimeoutMs: number;
  /** The most log bytes one build may store. */
  maxLogBytes: number;
  /** How long an `assigned` build may go unlisted by its worker before it counts as never received, in ms. */
  claimGraceMs: number;
  /** Default build timeout when a submission names none, in seconds. */
  defaultTimeoutS: number;
  /** Seals secret env values at rest. */
  secrets: SecretBox;
  /** Told of every build submitted, claimed, started (`running`), queued again or ended (metrics, logs, GitHub reports). */
  onBuildEvent?: (event: BuildEvent) => void;
  /**
   * Told of every change a live log stream shows that is not a build event: log bytes appended,
   * a phase, a heartbeat's progress, a cancel request (live log streams wake on it).
   */
  onBuildChange?: (buildId: string) => void;
  /**
   * Where this service's wake-ups go (a build queued → waiting polls; something for a worker →
   * its heartbeat wait; a build changed → `onBuildChange`): the cluster's `publish`, so that a
   * waiter on another controller hears of it too, and the app's one subscriber turns each event
   * back into the local wake-up. Default: straight to the local wake-ups (one controller).
   */
  publish?: (event: ClusterEvent) => void;
  /**
   * A project's current secret values (a rerun of a GitHub build takes them afresh); it rejects
   * with API_NOT_FOUND when the project is gone. Default: none (such a rerun is refused).
   */
  projectSecrets?: (projectId: string, names: readonly string[]) => Promise<{ values: Record<string, string>; missing: string[] }>;
  /** Told of an error that does not fail the request it happened in (logged as a warning). */
  onBackgroundError?: (err: unknown, what: string) => void;
  /** Told the digest of a build token whose heartbeat was refused (its attempt over or gone): the token cache drops it. */
  onBuildTokenRefused?: (tokenHash: string) => void;
}

export class BuildService {
  readonly dispatcher: Dispatcher;
  /** Workers inside a long poll or heartbeat wait (alive), and the wake-up of those waits. */
  readonly waits = new WorkerWaits();
  /** The clocks this controller states to its workers. */
  readonly liveness: Liveness;
  private readonly o: BuildServiceOptions;
  private readonly store: BuildStore;
  /** Where every attempt ends (`settle` for the worker's own ends, `giveUp` for the controller's). */
  private readonly endings: AttemptEndings;
  private readonly workerLiveness: WorkerLiveness;
  private readonly publish: (event: ClusterEvent) => void;

  constructor(options: BuildServiceOptions) {
    this.o = options;
    this.store = options.store;
    this.dispatcher = new Dispatcher(async () => (await this.store.countQueuedBuilds()) > 0);
    this.liveness = livenessOf(options.heartbeatTimeoutMs, options.prepareTimeoutMs);
    this.publish = options.publish ?? ((e) => this.wakeLocally(e));
    const publish = this.publish;
    // The endings' wake-ups go out as events too: the waiter may be on another controller.
    const dispatcher = { notify: () => publish({ kind: 'queued' }) };
    const waits = { wake: (workerId: string) => publish({ kind: 'worker', workerId }) };
    this.endings = new AttemptEndings({ store: options.store, now: options.now, dispatcher, waits, onBuildEvent: options.onBuildEvent });
    this.workerLiveness = new WorkerLiveness({ ...options, publish, dispatcher: this.dispatcher, waits: this.waits, liveness: this.liveness, endings: this.endings });
  }

  /**
   * Renews the store contact of every worker inside a wait here, so that the leader's watchdog,
   * which may run on another controller and cannot see these waits, finds them alive.
   */
  async touchWaiting(): Promise<void> {
    await this.store.touchWorkers([...this.waits.ids()], this.o.now());
  }

  /** An event as this controller acts on it: the default `publish`, and what the app's subscriber does with the cluster's events. */
  wakeLocally(e: ClusterEvent): void {
    switch (e.kind) {
      case 'queued':
        return this.dispatcher.notify();
      case 'worker':
        return this.waits.wake(e.workerId);
      case 'build':
        return this.o.onBuildChange?.(e.buildId);
      case 'report':
        return;
      default: {
        const never: never = e;
        throw new Error(`unknown cluster event ${JSON.stringify(never)}`);
      }
    }
  }

  // ---- admin ----

  /** Queues a build; `source` when GitHub started it (kept for filters, reports and reruns). */
  async submit(body: CreateBuildBody, source?: BuildSource): Promise<BuildRecord> {
    const secretEnv = body.secretEnv ?? {};
    const both = Object.keys(secretEnv).filter((name) => body.env !== undefined && Object.hasOwn(body.env, name));
    if (both.length > 0) throw new ExpoError('API_BAD_REQUEST', `env and secretEnv both name ${both.join(', ')}; give each name once`);
    // A value too short to mask would show in the log as it is: refused rather than leaked.
    const short = Object.keys(secretEnv).filter((name) => secretEnv[name]!.length < MIN_SECRET_CHARS);
    if (short.length > 0) {
      throw new ExpoError('API_BAD_REQUEST', `secretEnv ${short.join(', ')}: a secret value must have at least ${MIN_SECRET_CHARS} characters (shorter ones cannot be masked in the log)`);
    }
    const id = newBuildId();
    const secretNames = Object.keys(secretEnv);
    const labels = body.labels ?? [];
    const made = await this.createHanded(labels, {
      id,
      steps: body.steps,
      env: body.env ?? {},
      secretEnvNames: secretNames,
      secretEnvSealed: secretNames.length > 0 ? this.o.secrets.seal(id, secretEnv) : null,
      labels,
      artifacts: body.artifacts ?? [],
      timeoutS: body.timeoutS ?? this.o.defaultTimeoutS,
      maxAttempts: body.maxAttempts ?? 1,
      createdAt: this.o.now(),
      source: source ?? null,
    });
    const { build, claim, taker } = made;
    this.o.onBuildEvent?.({ kind: 'submitted', build });
    if (claim === null) {
      await taker?.hand(null);
      this.publish({ kind: 'queued' });
      return build;
    }
    try {
      await taker!.hand(claim);
    } catch (err) {
      // The waiter had left and giving its claim back failed: the build exists all the same
      // (assigned under a lease nobody holds, taken back after the claim grace). Answering an
      // error here would have the client submit it again and the build run twice.
      this.o.onBackgroundError?.(err, `build ${build.id}: giving back the claim of a poll that had ended`);
      this.publish({ kind: 'queued' });
      return build;
    }
    // The waiting poll's answer goes out before the submitter's: its continuation (already due)
    // runs to its socket write while this one waits one turn of the event loop.
    await new Promise<void>((resolve) => setImmediate(resolve));
    return build;
  }

  /**
   * Creates the build; when a poll here waits for a build it may take (`Dispatcher.reserve`), in
   * the same store write claimed by that worker (`createAndClaim`): nothing is queued, no wake-up
   * goes out, no drain runs. The caller hands the claim (or nothing) back to `taker`.
   */
  private async createHanded(labels: readonly string[], b: NewBuild): Promise<{ build: BuildRecord; claim: Claim | null; taker: Reservation | null }> {
    const taker = this.dispatcher.reserve(labels);
    if (taker === null) return { build: await this.store.createBuild(b), claim: null, taker };
    try {
      return { ...(await this.store.createAndClaim(b, taker.request)), taker };
    } catch (err) {
      await taker.hand(null);
      // The write may have committed with its answer lost (a connection dropped after the
      // commit): the build may be queued, and the drains that passed over the held waiter will
      // not run again, so they are woken as for any queued build.
      this.publish({ kind: 'queued' });
      throw err;
    }
  }

  async getBuild(id: string): Promise<BuildRecord> {
    const build = await this.store.getBuild(id);
    if (!build) throw new ExpoError('API_NOT_FOUND', `no build '${id}'`);
    return build;
  }

  /**
   * Cancels a build: a queued one at once, an active one through its worker (it hears of it on
   * its next heartbeat). `message` (`superseded by <sha>`) becomes the build's message and stays
   * first in it when the build ends cancelled. A final build is left as it is.
   */
  async cancel(id: string, message?: string): Promise<BuildRecord> {
    const build = await this.getBuild(id);
    if (build.status === 'queued' && (await this.store.cancelQueued(id, this.o.now(), message))) {
      const done = await this.getBuild(id);
      this.o.onBuildEvent?.({ kind: 'finished', build: done });
      return done;
    }
    await this.store.requestCancel(id, message);
    const after = await this.getBuild(id);
    this.publish({ kind: 'build', buildId: id });
    // Its worker hears of it now, through the heartbeat it keeps waiting (here or on another controller).
    if (after.workerId !== null && after.cancelRequested) this.publish({ kind: 'worker', workerId: after.workerId });
    return after;
  }

  /**
   * A new build of a final one's work: the same steps, env, labels, artifacts, timeout and
   * attempts, and for a GitHub build the same source (`rerunOf` the original) with its project's
   * current secret values. 409 BUILD_NOT_RERUNNABLE for a build not over yet, a GitHub build
   * whose project or one of whose secrets is gone, or an API build with secret env (its values
   * were erased when it ended: submit it again).
   */
  async rerun(id: string): Promise<BuildRecord> {
    const b = await this.getBuild(id);
    const refuse = (why: string) => new ExpoError('BUILD_NOT_RERUNNABLE', `build ${id} cannot be rerun: ${why}`);
    if (b.status !== 'succeeded' && b.status !== 'failed' && b.status !== 'cancelled') throw refuse(`it is ${b.status}; only a finished build (succeeded, failed or cancelled) can be`);
    let secretEnv: Record<string, string> | undefined;
    if (b.source !== null) {
      const found = await this.projectSecretsOf(b.source.projectId, b.secretEnvNames).catch((err: unknown) => {
        if (err instanceof ExpoError && err.code === 'API_NOT_FOUND') throw refuse(`its project ${b.source!.repo} was deleted`);
        throw err;
      });
      if (found.missing.length > 0) throw refuse(`its project ${b.source.repo} has no secret ${found.missing.join(', ')} any more; set it and rerun`);
      if (b.secretEnvNames.length > 0) secretEnv = found.values;
    } else if (b.secretEnvNames.length > 0) {
      throw refuse(`its secret env values (${b.secretEnvNames.join(', ')}) were erased when it ended; submit it again with them`);
    }
    const body: CreateBuildBody = { steps: b.steps, env: b.env, labels: b.labels, artifacts: b.artifacts, timeoutS: b.timeoutS, maxAttempts: b.maxAttempts, ...(secretEnv ? { secretEnv } : {}) };
    return this.submit(body, b.source === null ? undefined : { ...b.source, rerunOf: b.id });
  }

  private async projectSecretsOf(projectId: string, names: readonly string[]): Promise<{ values: Record<string, string>; missing: string[] }> {
    if (!this.o.projectSecrets) throw new ExpoError('API_NOT_FOUND', `no project '${projectId}'`);
    return this.o.projectSecrets(projectId, names);
  }

  /**
   * A push moved `ref` from `olderSha` to `bySha`: cancels that project's unfinished builds of
   * `ref` at `olderSha` (their message `superseded by <bySha>`). Only the commit the push
   * replaced, never others — deliveries may arrive out of order, and a newer commit's builds
   * must not be cancelled by an older push that arrived late. Returns the ids cancelled.
   */
  async supersede(projectId: string, ref: string, olderSha: string, bySha: string): Promise<string[]> {
    const older = (await this.store.unfinishedBuildsOfRef(projectId, ref)).filter((b) => b.source?.sha === olderSha && olderSha !== bySha);
    for (const b of older) await this.cancel(b.id, `superseded by ${bySha}`);
    return older.map((b) => b.id);
  }

  /** The newest builds first, at most `limit`, of one status when given. */
  async listBuilds(filter: ListBuildsFilter): Promise<BuildRecord[]> {
    return this.store.listBuilds(filter);
  }

  /**
   * The build (404 when there is none) and its log from byte `fromOffset` on: to its end, or at
   * most `limitBytes` stepped back to the last whole UTF-8 character (never to nothing: a
   * character longer than the limit comes whole, so a reader paging by `limit` always moves on).
   */
  async readLog(id: string, fromOffset: number, limitBytes?: number): Promise<{ build: BuildRecord; log: Buffer }> {
    const build = await this.getBuild(id);
    if (limitBytes === undefined) return { build, log: await this.store.readLog(build.id, fromOffset) };
    // Three bytes more than asked: enough to finish a character longer than the limit.
    return { build, log: pageOf(await this.store.readLogRange(build.id, fromOffset, fromOffset + limitBytes + 3), limitBytes) };
  }

  // ---- worker: poll and liveness (see `WorkerLiveness`) ----

  poll(worker: WorkerRecord, body: PollBody, signal?: AbortSignal): Promise<PollResult | null> {
    return this.workerLiveness.poll(worker, body, signal);
  }

  workerHeartbeat(worker: WorkerRecord, body: WorkerHeartbeatBody, signal?: AbortSignal): Promise<{ abort: string[]; cancel: string[] }> {
    return this.workerLiveness.workerHeartbeat(worker, body, signal);
  }

  /**
   * A build heartbeat, from the monitor in the VM (build token) or the agent (worker key). The
   * common case — a live attempt — costs one statement; the checks that explain a refusal run
   * only when the pulse does not land.
   */
  async buildHeartbeat(principal: Principal, buildId: string, body: BuildHeartbeatBody): Promise<BuildPulse> {
    const now = this.o.now();
    switch (principal.kind) {
      case 'build': {
        const a = principal.attempt;
        if (a.buildId !== buildId) throw new ExpoError('AUTH_FORBIDDEN', 'this build token belongs to another build');
        if (body.workerId !== undefined && body.workerId !== a.workerId) {
          throw new ExpoError('AUTH_FORBIDDEN', `this build token was issued to worker '${a.workerId}', not '${body.workerId}'`);
        }
        const pulse = a.endedAt === null ? await this.store.touchBuild(buildId, a.lease, { now, progress: body.progress }) : null;
        if (pulse) return this.changed(buildId, pulse);
        // The attempt may come from the token cache (build-token-cache.ts), as it was when its
        // token was first seen: the refusal is decided on the store's current rows, and the
        // token is no longer cached (a monitor that keeps retrying pays two reads, not a write).
        this.o.onBuildTokenRefused?.(a.buildTokenHash);
        if (!(await this.store.getAttemptByTokenHash(a.buildTokenHash))) throw new ExpoError('AUTH_INVALID', 'the key is not valid');
        throw this.over(await this.getBuild(buildId));
      }
      case 'worker': {
        const w = principal.worker;
        if (body.workerId !== undefined && body.workerId !== w.id) {
          throw new ExpoError('AUTH_FORBIDDEN', `this key belongs to worker '${w.id}', not '${body.workerId}'`);
        }
        const build = await this.getBuild(buildId);
        if (build.workerId !== w.id && !(await this.store.hasAttemptOnWorker(buildId, w.id))) {
          throw new ExpoError('AUTH_FORBIDDEN', `build ${buildId} is not held by worker '${w.id}'`);
        }
        const pulse = build.workerId === w.id && build.lease ? await this.store.touchBuild(buildId, build.lease, { now, progress: body.progress }) : null;
        if (pulse) return this.changed(buildId, pulse);
        throw this.over(await this.getBuild(buildId));
      }
      case 'admin':
      case 'token':
      case 'session':
        throw new ExpoError('AUTH_FORBIDDEN', "build heartbeats need the build's token or its worker's key");
      default: {
        const never: never = principal;
        throw new Error(`unknown principal ${JSON.stringify(never)}`);
      }
    }
  }

  // ---- worker: writes fenced by the lease ----

  /**
   * Checks that `worker` may act on the build with `lease` (as presented: plain), and returns the
   * attempt, whose `lease` is the digest the store keeps. Throws 403 or 409.
   */
  private async attemptFor(worker: WorkerRecord, buildId: string, lease: string): Promise<{ build: BuildRecord; attempt: AttemptRecord }> {
    const build = await this.getBuild(buildId);
    if (!(await this.store.hasAttemptOnWorker(buildId, worker.id))) {
      throw new ExpoError('AUTH_FORBIDDEN', `build ${buildId} was never assigned to worker '${worker.id}'`);
    }
    const attempt = await this.store.getAttemptByLease(buildId, hashSecret(lease));
    if (!attempt) throw new ExpoError('LEASE_STALE', `the lease is not one of build ${buildId}'s; abort it`);
    if (attempt.workerId !== worker.id) throw new ExpoError('AUTH_FORBIDDEN', 'this lease belongs to another worker');
    return { build, attempt };
  }

  /** The current attempt of a build this worker holds under `lease`; 403 or 409 otherwise. */
  async currentAttempt(worker: WorkerRecord, buildId: string, lease: string): Promise<{ build: BuildRecord; attempt: AttemptRecord }> {
    const { build, attempt } = await this.attemptFor(worker, buildId, lease);
    if (build.lease !== attempt.lease) throw this.staleLease(build, attempt);
    return { build, attempt };
  }

  /**
   * A phase update; with `step` (phase `running` only) also the start of that step of the
   * attempt. A step out of the build's range is refused (400) before anything moves.
   */
  async phase(worker: WorkerRecord, buildId: string, lease: string, phase: BuildPhase, step?: number): Promise<BuildRecord> {
    const { build, attempt } = await this.attemptFor(worker, buildId, lease);
    if (build.lease !== attempt.lease) throw this.staleLease(build, attempt);
    if (step !== undefined && phase !== 'running') throw new ExpoError('API_BAD_REQUEST', `a step start comes with phase 'running', not '${phase}'`);
    if (step !== undefined && step >= build.steps.length) {
      throw new ExpoError('API_BAD_REQUEST', `step ${step} is out of range: build ${buildId} has ${build.steps.length} step${build.steps.length === 1 ? '' : 's'} (0-based)`);
    }
    // A repeated phase is accepted (a sign of life). `running` is tried from the states before it
    // first, so the one call that moves the build to running in this attempt is known, and told.
    const now = this.o.now();
    const moved = await this.store.setBuildPhase(buildId, attempt.lease, ['assigned', 'preparing'], phase, now);
    if (!moved && !(phase === 'running' && (await this.store.setBuildPhase(buildId, attempt.lease, ['running'], phase, now)))) {
      throw await this.phaseRefused(buildId, attempt, phase);
    }
    // The build may end between the two writes; then the step is refused like a late phase.
    if (step !== undefined && !(await this.store.recordStepStart(buildId, attempt.lease, step, now))) throw await this.phaseRefused(buildId, attempt, phase);
    const after = await this.getBuild(buildId);
    if (moved && phase === 'running') this.o.onBuildEvent?.({ kind: 'started', build: after });
    return this.changed(buildId, after);
  }

  /** Why a phase update under this attempt's lease wrote nothing: the lease is stale (409), or the build is past that phase. */
  private async phaseRefused(buildId: string, attempt: AttemptRecord, phase: BuildPhase): Promise<ExpoError> {
    const current = await this.getBuild(buildId);
    if (current.lease !== attempt.lease) return this.staleLease(current, attempt);
    return new ExpoError('BUILD_BAD_TRANSITION', `build ${buildId} is ${current.status}; it cannot go back to ${phase}`);
  }

  async appendLog(worker: WorkerRecord, buildId: string, body: LogChunkBody): Promise<number> {
    const { build, attempt } = await this.attemptFor(worker, buildId, body.lease);
    if (build.lease !== attempt.lease) throw this.staleLease(build, attempt);
    const needles = await this.needlesOrEnd(build);
    const result = await this.store.appendLog(buildId, body.offset, Buffer.from(maskSameLength(body.data, needles), 'utf8'), this.o.maxLogBytes);
    switch (result.kind) {
      case 'appended':
        return this.changed(buildId, result.logBytes);
      case 'gap':
        throw new ExpoError('LOG_OFFSET_GAP', `chunk at offset ${body.offset} leaves a gap: the log has ${result.expectedOffset} bytes`, {
          details: { expectedOffset: result.expectedOffset },
        });
      case 'conflict':
        throw new ExpoError(
          'LOG_CONFLICT',
          `chunk at offset ${body.offset} differs from the log already stored there (${result.logBytes} bytes): another writer sent this range`,
        );
      case 'too-large':
        throw new ExpoError('LOG_TOO_LARGE', `the log of build ${buildId} would exceed ${this.o.maxLogBytes} bytes; it has ${result.logBytes}`);
      default: {
        const never: never = result;
        throw new Error(`unknown append result ${JSON.stringify(never)}`);
      }
    }
  }

  async complete(worker: WorkerRecord, buildId: string, body: CompleteBody): Promise<BuildRecord> {
    const { build, attempt } = await this.attemptFor(worker, buildId, body.lease);
    if (body.status !== 'failed' && body.failureReason !== undefined) {
      throw new ExpoError('API_BAD_REQUEST', `failureReason is only allowed with status "failed", not "${body.status}"`);
    }
    // The agent fails such a build itself; the controller holds to the declaration all the same
    // (an older or faulty agent): a required artifact that was not stored is never a success.
    const missing = body.status === 'succeeded' ? await this.missingRequired(build, attempt.attempt, body.artifactProblems ?? []) : undefined;
    const status: FinalBuildStatus = missing ? 'failed' : body.status;
    const reason: FailureReason | null = missing ? 'artifact_missing' : body.status === 'failed' ? (body.failureReason ?? 'build_failed') : null;
    const exitCode = body.exitCode ?? (body.status === 'succeeded' ? 0 : null);
    if (build.lease !== attempt.lease) return this.repeatedCompletion(build, attempt, status, reason, exitCode);
    const needles = await this.needlesOrEnd(build);
    const problems = body.artifactProblems?.map((p) => ({ ...p, message: maskSameLength(p.message, needles) }));
    // Recorded while the lease is current, before the attempt ends: a repeated completion sets them again.
    if (problems !== undefined) await this.store.setArtifactProblems(buildId, attempt.lease, problems);
    const sent = body.message === undefined ? null : maskSameLength(body.message, needles);
    const why = missing ? maskSameLength(`required artifact '${missing.pattern}' was not stored: ${missing.message}`, needles) : null;
    const message = why === null ? sent : sent === null ? why : `${why}; ${sent}`;
    const ended = (await this.endings.settle(build, { by: 'worker', status, reason }, exitCode, message)).build;
    if (ended) return ended;
    const after = await this.getBuild(buildId);
    const again = await this.store.getAttemptByLease(buildId, attempt.lease);
    return this.repeatedCompletion(after, again ?? attempt, status, reason, exitCode);
  }

  /**
   * The first required artifact this attempt did not store: one the agent reports as such, or a
   * required pattern of the build's own declaration that no artifact stored by this attempt matches
   * (whatever the agent reported).
   */
  private async missingRequired(build: BuildRecord, attempt: number, reported: readonly ArtifactProblem[]): Promise<{ pattern: string; message: string } | undefined> {
    const flagged = reported.find((p) => p.required);
    if (flagged) return flagged;
    const required = build.artifacts.flatMap((a) => (typeof a === 'object' && a.required === true ? [a.path] : []));
    if (required.length === 0) return undefined;
    const stored = (await this.store.listArtifacts(build.id)).filter((a) => a.attempt === attempt).map((a) => a.name);
    const pattern = required.find((p) => !stored.some((name) => artifactPatternMatches(p, name)));
    if (pattern === undefined) return undefined;
    return reported.find((p) => p.pattern === pattern) ?? { pattern, message: 'no artifact this attempt stored matches it' };
  }

  private repeatedCompletion(
    build: BuildRecord,
    a: AttemptRecord,
    status: FinalBuildStatus,
    reason: FailureReason | null,
    exitCode: number | null,
  ): BuildRecord {
    const sameOutcome = a.outcome === status || (a.outcome === 'requeued' && status === 'failed');
    if (a.endedAt !== null && sameOutcome && a.failureReason === reason && a.exitCode === exitCode) return build;
    throw this.staleLease(build, a);
  }

  // ---- endings ----

  /**
   * The controller gives up on the build's current attempt (watchdog, reconcile, a rule of its
   * own): taken back, requeued or failed as `settlement` decides; see `AttemptEndings`.
   */
  async giveUp(build: BuildRecord, reason: FailureReason, message: string, staleBefore?: number): Promise<Settled> {
    return this.endings.giveUp(build, reason, message, staleBefore);
  }

  /**
   * What to star out of text a worker sends for this build (log chunks, completion messages),
   * byte for byte so log offsets stay true — a defence behind the agent's own masking. When the
   * values cannot be opened (secret-env.key was replaced while the build ran), nothing the
   * worker sends can be masked: the build ends here, as at a claim, and the worker hears 409
   * BUILD_OVER.
   */
  private async needlesOrEnd(build: BuildRecord): Promise<string[]> {
    if (build.secretEnvSealed === null) return [];
    try {
      return secretNeedles(Object.values(this.o.secrets.open(build.id, build.secretEnvSealed)));
    } catch (err) {
      const message = unopenable(err);
      const ended = (await this.giveUp(build, 'build_failed', message)).build;
      throw new ExpoError('BUILD_OVER', `build ${build.id} is ${ended?.status ?? 'over'}: ${message}`);
    }
  }

  /** Publishes a change to `buildId` (its live log streams wake, here or elsewhere); returns `value` (the call's answer). */
  private changed<T>(buildId: string, value: T): T {
    this.publish({ kind: 'build', buildId });
    return value;
  }

  private over(build: BuildRecord): ExpoError {
    return new ExpoError('BUILD_OVER', `build ${build.id} is ${build.status}${build.failureReason ? ` (${build.failureReason})` : ''}; this attempt is over`);
  }

  private staleLease(build: BuildRecord, a: AttemptRecord): ExpoError {
    const how = a.outcome ? `${a.outcome}${a.failureReason ? ` (${a.failureReason})` : ''}` : 'replaced';
    return new ExpoError('LEASE_STALE', `attempt ${a.attempt} of build ${build.id} is over (${how}); abort it and recycle its VM`);
  }
}
