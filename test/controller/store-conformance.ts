/**
 * The Store conformance suite: what every adapter must do, run unchanged against each one
 * (SQLite today; a PostgreSQL adapter registers itself the same way). `PORT_METHODS` names the
 * tests that hold an adapter to each port method: a new method does not compile until it is
 * listed, and the last test fails when a listed test is not in the suite.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { BuildSource } from '../../src/protocol/schemas.ts';
import type { ApiTokenRecord, ClaimRequest, DeliveryRecord, DeliveryWork, NewBuild, Store } from '../../src/controller/store/store.ts';

/** The suite's tests, each title written once. */
const T = {
  migrate: 'migrates idempotently',
  workerKeys: 'refuses a duplicate worker id and finds workers by key hash',
  workers: 'lists workers by id and records their contact: slots, draining, offline; one never seen is never silent',
  claimOrder: 'claims oldest first, respects labels, and never hands one build out twice',
  claimRace: 'claims under concurrency exactly once each',
  createAndClaim:
    'creates a build claimed at once by a waiting worker that may take it (labels, not drained, nothing older for it), and queued otherwise, answering it as queued',
  fencing: 'fences phase, heartbeat and finish on the lease',
  touchBatch: 'answers many heartbeat touches in one turn each as its own statement would, matching or not, twice for one build in arrival order',
  requeue: 'requeues for another attempt and writes the attempt banner into the log',
  stepStarts: "records step starts of a running build under its lease, first report standing, and empties them with the next claim",
  unassign: 'unassigns an assignment nobody received without spending the attempt',
  attempts: 'finds an attempt by its build token, current or over, and tells which workers held a build',
  held: "lists a worker's active builds oldest first, and none once they end",
  appendLog: 'appends logs by offset: repeat is a no-op, overlap appends the tail, gaps and overflow are refused',
  logConflict: 'two writers at the same offset: a chunk whose overlap differs is a conflict and changes nothing',
  logUtf8: 'never splices a chunk into the middle of a stored character',
  logRange: 'reads a byte range of a log across chunks, clipped to what is stored, and nothing of an unknown build',
  silence: 'finds stale builds and silent workers by cutoff',
  staleFence:
    "the watchdog's writes hold only while the staleness it read holds: a heartbeat or contact newer than the cutoff keeps the build (finish, requeue, unassign) or the worker online",
  overdue: "finds overdue builds: steps past timeoutS from this attempt's running start, preparing past the prepare limit from its claim",
  deadline: 'tells the earliest liveness deadline from a time on: heartbeats and worker contact plus the timeout, and both backstops',
  cancel: 'cancels only queued builds outright and counts by status',
  cancelFinal: 'a cancel asked for a final build leaves it as it is',
  secrets: 'keeps sealed secret env through a requeue and erases it when the build is final',
  prune: 'finds only final builds finished before the cutoff to prune, and deletes them with their attempts, logs and artifacts',
  artifacts: 'replaces an artifact record by name unless it came from a later attempt, and lists them by name',
  artifactProblems: 'keeps declared artifacts as given and records artifact problems only under the current lease',
  cleanAttempt: 'a new attempt starts with no artifact problems: those of a failed attempt do not survive into a successful retry',
  reopen: 'keeps everything across a reopen',
  close: 'closes twice without complaint',
  diskError: "calls none of the port's own refusals, nor an ordinary error, a disk error",
  deliveries: 'records a webhook delivery once (a redelivery, concurrent or later, writes nothing), lists newest first, and prunes by receipt time',
  settle: 'lists pending deliveries oldest first with their work, and settles each once (of two settlers one wins)',
  redeliver: 'reopens a failed delivery as pending with new work (a redelivery), and nothing else',
  cancelMessage: 'a cancel with a message: a queued build ends with it, an active one keeps it first when it ends cancelled, not when it ends otherwise',
  projects: 'registers one project per repository in any case, finds it by id and by repo in any case, lists by repo, deletes it with its secrets',
  projectSecrets: 'puts, replaces, lists by name and deletes project secrets; nothing for an unknown project',
  sources: 'keeps a build source and filters builds by repo (any case), ref and sha, with status and limit',
  ofRef: "lists a project ref's unfinished builds oldest first, not those of other refs, projects or final ones",
  since: 'lists the builds and attempts that reach into a window (created, unfinished or finished in it; claimed, running or ended in it), bounded by the limit',
  reports: 'lists builds to report until reported as far as they go (pending, running, final), and reports only move forward',
  users: 'adds a user once by name, lists users by name, stamps sign-ins, replaces a password ending every session of that user only, deletes a user with their sessions and tokens',
  sessions: "finds a session with its user until it expires (then deletes it), and deletes one session or all of a user's",
  expiredSessions: 'purges every expired session and keeps the live ones',
  userRole: "sets a user's role and answers the role before (null for no such user)",
  tokens: "finds API tokens by secret digest whatever their state with their owner, lists all, an owner's or the ownerless newest first, revokes once, stamps last use",
  audit: 'appends audit entries and lists them newest first, paged below an id and filtered by action',
  drainRemove: "sets and clears a worker's drain; removes a worker unless it holds an active build, its key gone and its finished builds keeping its id",
} as const;

/**
 * Every port method and the tests that hold an adapter to it. Typed over `keyof Store`: a method
 * added to the port without a line here does not compile.
 */
const PORT_METHODS: Record<keyof Store, readonly (typeof T)[keyof typeof T][]> = {
  migrate: [T.migrate],
  close: [T.reopen, T.close],
  diskError: [T.diskError],
  createWorker: [T.workerKeys],
  getWorker: [T.migrate, T.workers],
  getWorkerByKeyHash: [T.workerKeys],
  listWorkers: [T.workers],
  touchWorker: [T.silence, T.workers],
  touchWorkers: [T.silence],
  markWorkerOffline: [T.silence, T.workers, T.staleFence],
  findSilentWorkers: [T.silence, T.workers],
  createBuild: [T.claimOrder, T.secrets, T.sources, T.createAndClaim],
  createAndClaim: [T.createAndClaim],
  getBuild: [T.fencing, T.prune],
  listBuilds: [T.cancel, T.sources],
  countBuildsByStatus: [T.cancel],
  countQueuedBuilds: [T.claimOrder],
  activeBuildsOfWorker: [T.held],
  activeBuildsByWorker: [T.silence, T.held],
  findStaleBuilds: [T.silence],
  findOverdueBuilds: [T.overdue],
  nextLivenessDeadline: [T.deadline],
  claimBuild: [T.claimOrder, T.claimRace, T.requeue, T.cleanAttempt],
  getAttemptByLease: [T.fencing],
  getAttemptByTokenHash: [T.unassign, T.attempts],
  listAttempts: [T.requeue, T.prune],
  hasAttemptOnWorker: [T.requeue, T.attempts],
  touchBuild: [T.fencing, T.touchBatch],
  setBuildPhase: [T.fencing, T.overdue],
  recordStepStart: [T.stepStarts],
  requestCancel: [T.cancel, T.cancelFinal, T.cancelMessage],
  cancelQueued: [T.cancel, T.secrets, T.cancelMessage],
  unassign: [T.unassign, T.staleFence],
  finishAttempt: [T.fencing, T.requeue, T.secrets, T.cancelMessage, T.staleFence],
  putArtifact: [T.artifacts, T.prune],
  setArtifactProblems: [T.artifactProblems],
  listArtifacts: [T.artifacts, T.prune],
  findPrunableBuilds: [T.prune],
  deleteBuilds: [T.prune, T.sources],
  appendLog: [T.appendLog, T.logConflict, T.logUtf8],
  readLog: [T.appendLog, T.requeue, T.prune],
  readLogRange: [T.logRange],
  recordDelivery: [T.deliveries, T.settle],
  listDeliveries: [T.deliveries, T.settle],
  listPendingDeliveries: [T.settle],
  settleDelivery: [T.settle],
  reopenDelivery: [T.redeliver],
  createProject: [T.projects],
  getProject: [T.projects, T.projectSecrets],
  getProjectByRepo: [T.projects],
  listProjects: [T.projects, T.projectSecrets],
  deleteProject: [T.projects],
  putProjectSecret: [T.projectSecrets, T.projects],
  deleteProjectSecret: [T.projectSecrets],
  getProjectSecrets: [T.projectSecrets, T.projects],
  unfinishedBuildsOfRef: [T.ofRef],
  listBuildsToReport: [T.reports],
  setReported: [T.reports],
  countDeliveriesBefore: [T.deliveries],
  deleteDeliveriesBefore: [T.deliveries],
  listBuildsSince: [T.since],
  listAttemptsSince: [T.since],
  createUser: [T.users],
  getUser: [T.users],
  listUsers: [T.users],
  deleteUser: [T.users],
  setUserPassword: [T.users],
  recordSignIn: [T.users],
  createSession: [T.sessions, T.users],
  getSession: [T.sessions, T.users],
  deleteSession: [T.sessions],
  deleteSessionsOfUser: [T.sessions],
  deleteExpiredSessions: [T.expiredSessions],
  setUserRole: [T.userRole],
  createApiToken: [T.tokens, T.users],
  getApiTokenBySecretHash: [T.tokens, T.users],
  getApiToken: [T.tokens],
  listApiTokens: [T.tokens],
  revokeApiToken: [T.tokens],
  touchApiToken: [T.tokens],
  appendAudit: [T.audit],
  listAudit: [T.audit],
  setWorkerDrainRequested: [T.drainRemove],
  deleteWorker: [T.drainRemove],
};

export interface StoreFactory {
  /** A fresh, migrated, empty store. */
  open: () => Promise<Store>;
  /** Reopens the same database (for durability checks). */
  reopen: () => Promise<Store>;
  dispose: () => Promise<void>;
}

let n = 0;
const build = (over: Partial<NewBuild> = {}): NewBuild => ({
  id: `b${String(++n).padStart(15, 'a')}`.slice(0, 16),
  steps: [{ name: 's', run: 'true' }],
  env: { A: '1' },
  secretEnvNames: [],
  secretEnvSealed: null,
  labels: [],
  artifacts: [],
  timeoutS: 60,
  maxAttempts: 1,
  createdAt: 1000 + n,
  ...over,
});
const SHA_A = 'a'.repeat(40);
const SHA_B = 'b'.repeat(40);
const source = (over: Partial<BuildSource> = {}): BuildSource => ({
  projectId: 'p1',
  repo: 'Octo/App',
  name: 'ios',
  event: 'push',
  ref: 'refs/heads/main',
  sha: SHA_A,
  prNumber: null,
  deliveryId: '00000000-0000-4000-8000-0000000000aa',
  rerunOf: null,
  cloneUrl: 'https://github.com/Octo/App.git',
  checkout: { submodules: false, lfs: false },
  ...over,
});
const delivery = (id: string, receivedAt: number, over: Partial<DeliveryRecord> = {}): DeliveryRecord => ({
  id,
  event: 'push',
  action: null,
  repository: 'octo/app',
  receivedAt,
  outcome: 'ignored',
  reason: 'no project for octo/app',
  work: null,
  builds: [],
  ...over,
});
const claimReq = (workerId: string, now: number, over: Partial<ClaimRequest> = {}): ClaimRequest => ({
  workerId,
  workerLabels: [],
  now,
  lease: `lease-${workerId}-${now}-${Math.random()}`,
  buildTokenHash: `hash-${Math.random()}`,
  attemptBanner: (a, m) => `[attempt ${a}/${m}]\n`,
  ...over,
});

export function describeStoreConformance(name: string, makeFactory: () => StoreFactory): void {
  describe(`Store conformance: ${name}`, () => {
    let f: StoreFactory;
    let s: Store;
    /** The titles this suite registered: what `PORT_METHODS` names must be among them. */
    const registered = new Set<string>();
    const test = (title: string, fn: () => Promise<void>) => {
      registered.add(title);
      it(title, fn);
    };
    beforeEach(async () => {
      f = makeFactory();
      s = await f.open();
      await s.createWorker({ id: 'w1', labels: ['mac'], keyHash: 'k1', createdAt: 1 });
      await s.createWorker({ id: 'w2', labels: [], keyHash: 'k2', createdAt: 1 });
    });
    afterEach(async () => {
      await s.close();
      await f.dispose();
    });

    test(T.migrate, async () => {
      await s.migrate();
      expect(await s.getWorker('w1')).toMatchObject({ id: 'w1', labels: ['mac'], offline: false, draining: false });
    });

    test(T.workerKeys, async () => {
      await expect(s.createWorker({ id: 'w1', labels: [], keyHash: 'other', createdAt: 2 })).rejects.toMatchObject({ code: 'WORKER_EXISTS' });
      expect((await s.getWorkerByKeyHash('k2'))?.id).toBe('w2');
      expect(await s.getWorkerByKeyHash('nope')).toBeNull();
    });

    test(T.claimOrder, async () => {
      const a = await s.createBuild(build({ labels: ['mac'] }));
      const b = await s.createBuild(build());
      const c1 = await s.claimBuild(claimReq('w2', 5000));
      expect(c1?.build.id).toBe(b.id);
      expect(await s.claimBuild(claimReq('w2', 5001))).toBeNull();
      const c2 = await s.claimBuild(claimReq('w1', 5002, { workerLabels: ['mac'] }));
      expect(c2?.build).toMatchObject({ id: a.id, status: 'assigned', workerId: 'w1', attempt: 1, lastHeartbeatAt: 5002 });
      expect(c2?.attempt).toMatchObject({ attempt: 1, workerId: 'w1', logOffset: 0, endedAt: null });
      expect(await s.countQueuedBuilds()).toBe(0);
    });

    test(T.createAndClaim, async () => {
      // Answered as queued, exactly as createBuild answers the same build.
      const sealed = Buffer.from('sealed-secret-env');
      const nb = build({ labels: ['mac'], secretEnvNames: ['K'], secretEnvSealed: sealed, source: source() });
      const req = claimReq('w1', 9000, { workerLabels: ['mac'] });
      const made = await s.createAndClaim(nb, req);
      const plain = await s.createBuild({ ...nb, id: 'plain-twin-00001' });
      expect({ ...made.build, id: plain.id }).toEqual(plain);
      expect(await s.cancelQueued(plain.id, 9001)).toBe(true);
      // Claimed as claimBuild claims a first attempt, in the same write.
      expect(made.claim?.build).toEqual(await s.getBuild(nb.id));
      expect(made.claim?.build).toMatchObject({ id: nb.id, status: 'assigned', attempt: 1, workerId: 'w1', lease: req.lease, assignedAt: 9000, lastHeartbeatAt: 9000, logBytes: 0 });
      expect(made.claim?.attempt).toEqual(await s.getAttemptByLease(nb.id, req.lease));
      expect(await s.getAttemptByTokenHash(req.buildTokenHash)).toMatchObject({ buildId: nb.id, attempt: 1, workerId: 'w1', claimedAt: 9000, logOffset: 0, endedAt: null });
      expect((await s.activeBuildsOfWorker('w1')).map((b) => b.id)).toEqual([nb.id]);
      expect(await s.countQueuedBuilds()).toBe(0);
      // A worker without every label, one unknown, one drained: queued, nothing claimed.
      const noLabel = await s.createAndClaim(build({ labels: ['mac'] }), claimReq('w2', 9002));
      expect(noLabel.claim).toBeNull();
      expect(await s.getBuild(noLabel.build.id)).toMatchObject({ status: 'queued', attempt: 0, workerId: null, lease: null });
      // An older queued build the worker could take comes first: the new one stays queued.
      const older = await s.createAndClaim(build(), claimReq('w1', 9003, { workerLabels: ['mac'] }));
      expect(older.claim).toBeNull();
      expect(await s.claimBuild(claimReq('w1', 9004, { workerLabels: ['mac'] }))).toMatchObject({ build: { id: noLabel.build.id } });
      expect(await s.claimBuild(claimReq('w2', 9005))).toMatchObject({ build: { id: older.build.id } });
      expect((await s.createAndClaim(build(), claimReq('ghost', 9006))).claim).toBeNull();
      expect(await s.setWorkerDrainRequested('w2', true)).toBe(true);
      const drained = await s.createAndClaim(build(), claimReq('w2', 9007));
      expect(drained.claim).toBeNull();
      expect(await s.countQueuedBuilds()).toBe(2);
      // A queued build whose labels the worker lacks does not hold back one it may take.
      expect(await s.setWorkerDrainRequested('w2', false)).toBe(true);
      expect(await s.claimBuild(claimReq('w2', 9008))).not.toBeNull();
      expect(await s.claimBuild(claimReq('w2', 9009))).not.toBeNull();
      await s.createBuild(build({ labels: ['mac'] }));
      expect((await s.createAndClaim(build(), claimReq('w2', 9010))).claim?.build).toMatchObject({ status: 'assigned', workerId: 'w2' });
    });

    test(T.claimRace, async () => {
      const ids = new Set<string>();
      for (let i = 0; i < 20; i++) ids.add((await s.createBuild(build())).id);
      const claims = await Promise.all(Array.from({ length: 40 }, (_, i) => s.claimBuild(claimReq(i % 2 ? 'w1' : 'w2', 6000 + i))));
      const got = claims.filter((c) => c !== null).map((c) => c.build.id);
      expect(got).toHaveLength(20);
      expect(new Set(got)).toEqual(ids);
    });

    test(T.fencing, async () => {
      const b = await s.createBuild(build());
      const c = (await s.claimBuild(claimReq('w1', 7000)))!;
      expect(await s.touchBuild(b.id, 'wrong', { now: 7001 })).toBeNull();
      expect(await s.touchBuild(b.id, c.attempt.lease, { now: 7002, progress: 30 })).toEqual({ status: 'assigned', cancelRequested: false });
      expect(await s.setBuildPhase(b.id, 'wrong', ['assigned'], 'preparing', 7003)).toBe(false);
      expect(await s.setBuildPhase(b.id, c.attempt.lease, ['assigned'], 'running', 7004)).toBe(true);
      expect(await s.getBuild(b.id)).toMatchObject({ status: 'running', progress: 30, startedAt: 7004, lastHeartbeatAt: 7004 });
      const end = { buildId: b.id, now: 7005, status: 'succeeded' as const, failureReason: null, exitCode: 0, message: null, requeue: false };
      expect(await s.finishAttempt({ ...end, lease: 'wrong' })).toBeNull();
      expect(await s.finishAttempt({ ...end, lease: c.attempt.lease })).toMatchObject({ status: 'succeeded', finishedAt: 7005, lease: null, progress: 100 });
      expect(await s.finishAttempt({ ...end, lease: c.attempt.lease })).toBeNull();
      expect(await s.getAttemptByLease(b.id, c.attempt.lease)).toMatchObject({ outcome: 'succeeded', endedAt: 7005 });
      expect(await s.touchBuild(b.id, c.attempt.lease, { now: 7006 })).toBeNull();
    });

    test(T.touchBatch, async () => {
      const ids: string[] = [];
      for (let i = 0; i < 6; i++) ids.push((await s.createBuild(build())).id);
      const leases: string[] = [];
      for (let i = 0; i < 6; i++) leases.push((await s.claimBuild(claimReq('w1', 7100 + i)))!.attempt.lease);
      const [b0, b1, b2, b3, b4, b5] = ids as [string, string, string, string, string, string];
      const [l0, l1, l2, l3, _l4, l5] = leases as [string, string, string, string, string, string];
      expect(await s.setBuildPhase(b1, l1, ['assigned'], 'running', 7110)).toBe(true);
      await s.requestCancel(b2);
      const end = { now: 7111, status: 'succeeded' as const, failureReason: null, exitCode: 0, message: null, requeue: false };
      expect(await s.finishAttempt({ ...end, buildId: b3, lease: l3 })).not.toBeNull();
      // All in one turn: matching, wrong lease, cancel asked, finished, unknown build, one build twice.
      const got = await Promise.all([
        s.touchBuild(b0, l0, { now: 7200, progress: 10 }),
        s.touchBuild(b1, l1, { now: 7201 }),
        s.touchBuild(b4, 'wrong', { now: 7202, progress: 99 }),
        s.touchBuild(b2, l2, { now: 7203, progress: 20 }),
        s.touchBuild(b3, l3, { now: 7204, progress: 30 }),
        s.touchBuild('no-such-build', l5, { now: 7205 }),
        s.touchBuild(b5, l5, { now: 7206, progress: 40 }),
        s.touchBuild(b5, l5, { now: 7207 }),
        s.touchBuild(b5, 'wrong', { now: 7208, progress: 1 }),
      ]);
      expect(got).toEqual([
        { status: 'assigned', cancelRequested: false },
        { status: 'running', cancelRequested: false },
        null,
        { status: 'assigned', cancelRequested: true },
        null,
        null,
        { status: 'assigned', cancelRequested: false },
        { status: 'assigned', cancelRequested: false },
        null,
      ]);
      expect(await s.getBuild(b0)).toMatchObject({ lastHeartbeatAt: 7200, progress: 10 });
      expect(await s.getBuild(b1)).toMatchObject({ lastHeartbeatAt: 7201 });
      expect(await s.getBuild(b4)).toMatchObject({ lastHeartbeatAt: 7104, progress: null });
      expect(await s.getBuild(b2)).toMatchObject({ lastHeartbeatAt: 7203, progress: 20 });
      expect(await s.getBuild(b3)).toMatchObject({ status: 'succeeded', lastHeartbeatAt: 7103 });
      // The later beat of b5 wrote last: its time, the earlier beat's progress kept.
      expect(await s.getBuild(b5)).toMatchObject({ lastHeartbeatAt: 7207, progress: 40 });
      // A lone touch after the batch still answers (nothing left queued).
      expect(await s.touchBuild(b0, l0, { now: 7300 })).toEqual({ status: 'assigned', cancelRequested: false });
    });

    test(T.requeue, async () => {
      const b = await s.createBuild(build({ maxAttempts: 2 }));
      const c = (await s.claimBuild(claimReq('w1', 8000)))!;
      await s.appendLog(b.id, 0, Buffer.from('first\n'), 1 << 20);
      const back = await s.finishAttempt({ buildId: b.id, lease: c.attempt.lease, now: 8001, status: 'failed', failureReason: 'vm_crashed', exitCode: null, message: 'boom', requeue: true });
      expect(back).toMatchObject({ status: 'queued', workerId: null, lease: null, failureReason: 'vm_crashed', attempt: 1 });
      const c2 = (await s.claimBuild(claimReq('w2', 8002)))!;
      expect(c2.attempt).toMatchObject({ attempt: 2, workerId: 'w2', logOffset: 6 + '[attempt 2/2]\n'.length });
      expect((await s.readLog(b.id, 0)).toString()).toBe('first\n[attempt 2/2]\n');
      expect((await s.listAttempts(b.id)).map((a) => a.outcome)).toEqual(['requeued', null]);
      expect(await s.hasAttemptOnWorker(b.id, 'w1')).toBe(true);
    });

    test(T.stepStarts, async () => {
      const b = await s.createBuild(build({ maxAttempts: 2, steps: [{ name: 'a', run: 'true' }, { name: 'b', run: 'true' }, { name: 'c', run: 'true' }] }));
      expect(b.stepStartedAt).toEqual([null, null, null]);
      const c = (await s.claimBuild(claimReq('w1', 8100)))!;
      // Not running yet: nothing is written.
      expect(await s.recordStepStart(b.id, c.attempt.lease, 0, 8101)).toBe(false);
      expect(await s.setBuildPhase(b.id, c.attempt.lease, ['assigned'], 'running', 8102)).toBe(true);
      expect(await s.recordStepStart(b.id, 'wrong', 0, 8103)).toBe(false);
      expect(await s.recordStepStart(b.id, c.attempt.lease, 3, 8103)).toBe(false);
      expect(await s.recordStepStart(b.id, c.attempt.lease, -1, 8103)).toBe(false);
      expect(await s.recordStepStart(b.id, c.attempt.lease, 0, 8104)).toBe(true);
      expect(await s.recordStepStart(b.id, c.attempt.lease, 0, 8999)).toBe(true);
      expect(await s.recordStepStart(b.id, c.attempt.lease, 2, 8110)).toBe(true);
      expect((await s.getBuild(b.id))?.stepStartedAt).toEqual([8104, null, 8110]);
      expect((await s.listBuilds({ limit: 10 })).find((x) => x.id === b.id)?.stepStartedAt).toEqual([8104, null, 8110]);
      // The attempt's times stay for the record once it ends, and go with the next claim.
      await s.finishAttempt({ buildId: b.id, lease: c.attempt.lease, now: 8120, status: 'failed', failureReason: 'vm_crashed', exitCode: null, message: 'boom', requeue: true });
      expect((await s.getBuild(b.id))?.stepStartedAt).toEqual([8104, null, 8110]);
      expect(await s.recordStepStart(b.id, c.attempt.lease, 1, 8121)).toBe(false);
      const c2 = (await s.claimBuild(claimReq('w2', 8130)))!;
      expect(c2.build.stepStartedAt).toEqual([null, null, null]);
      expect(await s.setBuildPhase(b.id, c2.attempt.lease, ['assigned'], 'running', 8131)).toBe(true);
      expect(await s.recordStepStart(b.id, c2.attempt.lease, 1, 8132)).toBe(true);
      expect((await s.getBuild(b.id))?.stepStartedAt).toEqual([null, 8132, null]);
    });

    test(T.unassign, async () => {
      const b = await s.createBuild(build());
      const c = (await s.claimBuild(claimReq('w1', 9000)))!;
      expect(await s.unassign(b.id, c.attempt.lease)).toBe(true);
      expect(await s.getBuild(b.id)).toMatchObject({ status: 'queued', attempt: 0, workerId: null });
      expect(await s.unassign(b.id, c.attempt.lease)).toBe(false);
      expect(await s.getAttemptByTokenHash(c.attempt.buildTokenHash)).toBeNull();
    });

    test(T.appendLog, async () => {
      const b = await s.createBuild(build());
      expect(await s.appendLog(b.id, 0, Buffer.from('abc'), 8)).toEqual({ kind: 'appended', logBytes: 3 });
      expect(await s.appendLog(b.id, 0, Buffer.from('abc'), 8)).toEqual({ kind: 'appended', logBytes: 3 });
      expect(await s.appendLog(b.id, 2, Buffer.from('cde'), 8)).toEqual({ kind: 'appended', logBytes: 5 });
      expect(await s.appendLog(b.id, 9, Buffer.from('x'), 8)).toEqual({ kind: 'gap', expectedOffset: 5 });
      expect(await s.appendLog(b.id, 5, Buffer.from('fghi'), 8)).toEqual({ kind: 'too-large', logBytes: 5 });
      expect((await s.readLog(b.id, 1)).toString()).toBe('bcde');
      expect((await s.readLog(b.id, 5)).length).toBe(0);
      expect((await s.getBuild(b.id))?.logBytes).toBe(5);
    });

    test(T.logConflict, async () => {
      const b = await s.createBuild(build());
      expect(await s.appendLog(b.id, 0, Buffer.from('first writer\n'), 1 << 20)).toEqual({ kind: 'appended', logBytes: 13 });
      expect(await s.appendLog(b.id, 0, Buffer.from('second writer, longer\n'), 1 << 20)).toEqual({ kind: 'conflict', logBytes: 13 });
      expect(await s.appendLog(b.id, 6, Buffer.from('WRITER\nmore'), 1 << 20)).toEqual({ kind: 'conflict', logBytes: 13 });
      // The same bytes again, and a matching overlap with a new tail, still work.
      expect(await s.appendLog(b.id, 6, Buffer.from('writer\nmore'), 1 << 20)).toEqual({ kind: 'appended', logBytes: 17 });
      expect((await s.readLog(b.id, 0)).toString()).toBe('first writer\nmore');
    });

    test(T.logUtf8, async () => {
      const b = await s.createBuild(build());
      await s.appendLog(b.id, 0, Buffer.from('é'), 1 << 20);
      // Offset 1 is the second byte of é: a chunk starting there cannot match it.
      expect(await s.appendLog(b.id, 1, Buffer.from('xyz'), 1 << 20)).toEqual({ kind: 'conflict', logBytes: 2 });
      expect(await s.appendLog(b.id, 0, Buffer.from('é€'), 1 << 20)).toEqual({ kind: 'appended', logBytes: 5 });
      const log = await s.readLog(b.id, 0);
      expect(new TextDecoder('utf-8', { fatal: true }).decode(log)).toBe('é€');
    });

    test(T.logRange, async () => {
      const b = await s.createBuild(build());
      // Three chunks: ranges inside one, across two and across all three read only what they cover.
      for (const [offset, data] of [[0, 'abc'], [3, 'defg'], [7, 'hij']] as const) await s.appendLog(b.id, offset, Buffer.from(data), 1 << 20);
      const range = async (from: number, to: number) => (await s.readLogRange(b.id, from, to)).toString();
      expect(await range(0, 10)).toBe('abcdefghij');
      expect(await range(4, 6)).toBe('ef');
      expect(await range(2, 8)).toBe('cdefgh');
      expect(await range(3, 7)).toBe('defg');
      expect(await range(8, 100)).toBe('ij');
      expect(await range(10, 20)).toBe('');
      expect(await range(50, 60)).toBe('');
      expect(await range(5, 5)).toBe('');
      expect(await range(6, 2)).toBe('');
      expect((await s.readLogRange('aaaaaaaaaaaaaaaa', 0, 10)).length).toBe(0);
    });

    test(T.silence, async () => {
      const b = await s.createBuild(build());
      await s.claimBuild(claimReq('w1', 10_000));
      await s.touchWorker('w1', { now: 10_000, slotsTotal: 2 });
      await s.touchWorker('w2', { now: 20_000 });
      expect((await s.findStaleBuilds(10_001)).map((x) => x.id)).toEqual([b.id]);
      expect(await s.findStaleBuilds(10_000)).toEqual([]);
      expect((await s.findSilentWorkers(15_000)).map((w) => w.id)).toEqual(['w1']);
      const byWorker = await s.activeBuildsByWorker();
      expect([...byWorker.keys()]).toEqual(['w1']);
      expect(byWorker.get('w1')!.map((x) => x.id)).toEqual([b.id]);
      await s.markWorkerOffline('w1');
      expect(await s.findSilentWorkers(15_000)).toEqual([]);
      await s.touchWorker('w1', { now: 30_000 });
      expect(await s.getWorker('w1')).toMatchObject({ offline: false, slotsTotal: 2, lastSeenAt: 30_000 });
      // Waiting workers renewed together: both, offline mark cleared, nothing else changed; an unknown id is skipped.
      await s.markWorkerOffline('w2');
      await s.touchWorkers(['w1', 'w2', 'nobody'], 40_000);
      expect(await s.getWorker('w1')).toMatchObject({ offline: false, slotsTotal: 2, lastSeenAt: 40_000 });
      expect(await s.getWorker('w2')).toMatchObject({ offline: false, lastSeenAt: 40_000 });
      expect(await s.getWorker('nobody')).toBeNull();
      await s.touchWorkers([], 50_000);
      expect((await s.getWorker('w1'))!.lastSeenAt).toBe(40_000);
    });

    test(T.staleFence, async () => {
      // Cutoff 10_001: all three were silent at the read (claimed at 10_000); two beat meanwhile.
      const [fresh, freshQueued, stale] = [await s.createBuild(build()), await s.createBuild(build({ maxAttempts: 2 })), await s.createBuild(build())];
      const cs = [(await s.claimBuild(claimReq('w1', 10_000)))!, (await s.claimBuild(claimReq('w1', 10_000)))!, (await s.claimBuild(claimReq('w1', 10_000)))!];
      expect(cs.map((c) => c.build.id)).toEqual([fresh.id, freshQueued.id, stale.id]);
      expect((await s.findStaleBuilds(10_001)).map((b) => b.id)).toEqual([fresh.id, freshQueued.id, stale.id]);
      await s.setBuildPhase(fresh.id, cs[0]!.attempt.lease, ['assigned'], 'running', 10_000);
      await s.setBuildPhase(freshQueued.id, cs[1]!.attempt.lease, ['assigned'], 'running', 10_000);
      await s.setBuildPhase(stale.id, cs[2]!.attempt.lease, ['assigned'], 'running', 10_000);
      await s.touchBuild(fresh.id, cs[0]!.attempt.lease, { now: 10_001 });
      await s.touchBuild(freshQueued.id, cs[1]!.attempt.lease, { now: 10_500 });
      const end = (i: number, requeue: boolean) => ({ buildId: cs[i]!.build.id, lease: cs[i]!.attempt.lease, now: 10_600, status: 'failed' as const, failureReason: 'heartbeat_timeout' as const, exitCode: null, message: null, requeue, staleBefore: 10_001 });
      expect(await s.finishAttempt(end(0, false))).toBeNull();
      expect(await s.finishAttempt(end(1, true))).toBeNull();
      expect(await s.getBuild(fresh.id)).toMatchObject({ status: 'running', lastHeartbeatAt: 10_001 });
      expect(await s.getBuild(freshQueued.id)).toMatchObject({ status: 'running', lastHeartbeatAt: 10_500 });
      expect(await s.finishAttempt(end(2, false))).toMatchObject({ status: 'failed', failureReason: 'heartbeat_timeout' });
      // Without the fence the same end lands.
      expect(await s.finishAttempt({ ...end(0, false), staleBefore: undefined })).toMatchObject({ status: 'failed' });
      // unassign: an `assigned` build that beat after the cutoff stays; one still silent is taken back.
      const [a1, a2] = [await s.createBuild(build()), await s.createBuild(build())];
      const c1 = (await s.claimBuild(claimReq('w1', 20_000)))!;
      const c2 = (await s.claimBuild(claimReq('w1', 20_000)))!;
      expect([c1.build.id, c2.build.id]).toEqual([a1.id, a2.id]);
      await s.touchBuild(a1.id, c1.attempt.lease, { now: 20_001 });
      expect(await s.unassign(a1.id, c1.attempt.lease, 20_001)).toBe(false);
      expect(await s.getBuild(a1.id)).toMatchObject({ status: 'assigned', lastHeartbeatAt: 20_001 });
      expect(await s.unassign(a2.id, c2.attempt.lease, 20_001)).toBe(true);
      expect(await s.getBuild(a2.id)).toMatchObject({ status: 'queued' });
      // markWorkerOffline: only a worker still silent at the cutoff, and only once.
      await s.touchWorker('w1', { now: 30_000 });
      await s.touchWorker('w2', { now: 30_000 });
      await s.touchWorker('w2', { now: 30_001 });
      expect(await s.markWorkerOffline('w2', 30_001)).toBe(false);
      expect(await s.getWorker('w2')).toMatchObject({ offline: false, lastSeenAt: 30_001 });
      expect(await s.markWorkerOffline('w1', 30_001)).toBe(true);
      expect(await s.markWorkerOffline('w1', 30_001)).toBe(false);
      expect(await s.getWorker('w1')).toMatchObject({ offline: true });
      expect(await s.markWorkerOffline('nobody', 30_001)).toBe(false);
    });

    test(T.overdue, async () => {
      // timeoutS 60 s; prepare limit 30 s; grace 5 s.
      const running = await s.createBuild(build({ timeoutS: 60, maxAttempts: 2 }));
      const preparing = await s.createBuild(build({ timeoutS: 60 }));
      const c1 = (await s.claimBuild(claimReq('w1', 10_000)))!;
      const c2 = (await s.claimBuild(claimReq('w2', 10_000)))!;
      expect(c1.build.id).toBe(running.id);
      await s.setBuildPhase(running.id, c1.attempt.lease, ['assigned'], 'preparing', 11_000);
      // A long prepare is not the steps' time: the clock starts at `running`.
      await s.setBuildPhase(running.id, c1.attempt.lease, ['preparing'], 'running', 40_000);
      await s.setBuildPhase(preparing.id, c2.attempt.lease, ['assigned'], 'preparing', 11_000);
      const overdue = async (now: number) => (await s.findOverdueBuilds({ now, prepareTimeoutMs: 30_000, graceMs: 5_000 })).map((b) => b.id);
      expect(await overdue(45_000)).toEqual([]);
      expect(await overdue(45_001)).toEqual([preparing.id]);
      expect(await overdue(105_000)).toEqual([preparing.id]);
      expect(await overdue(105_001)).toEqual([running.id, preparing.id]);
      // A second attempt counts from its own start, not the first one's.
      await s.finishAttempt({ buildId: running.id, lease: c1.attempt.lease, now: 106_000, status: 'failed', failureReason: 'vm_crashed', exitCode: null, message: null, requeue: true });
      const again = (await s.claimBuild(claimReq('w1', 200_000)))!;
      expect(again.build.id).toBe(running.id);
      await s.setBuildPhase(running.id, again.attempt.lease, ['assigned'], 'running', 200_000);
      expect(await overdue(265_000)).toEqual([preparing.id]);
      expect(await overdue(265_001)).toEqual([running.id, preparing.id]);
      expect((await s.getBuild(running.id))!.startedAt).toBe(40_000);
    });

    test(T.deadline, async () => {
      // Timeout 10 s; prepare limit 30 s; grace 5 s.
      const next = (from: number) => s.nextLivenessDeadline({ from, heartbeatTimeoutMs: 10_000, prepareTimeoutMs: 30_000, graceMs: 5_000 });
      expect(await next(0)).toBeNull();
      await s.touchWorker('w1', { now: 1_000 });
      await s.touchWorker('w2', { now: 1_000 });
      expect(await next(0)).toBe(11_000);
      // Contact moves a worker's deadline later; an offline worker has none.
      await s.markWorkerOffline('w2');
      await s.touchWorker('w1', { now: 3_000 });
      expect(await next(0)).toBe(13_000);
      const running = await s.createBuild(build({ timeoutS: 20 }));
      const preparing = await s.createBuild(build());
      await s.createBuild(build()); // queued: no deadline
      const c1 = (await s.claimBuild(claimReq('w1', 2_000)))!;
      const c2 = (await s.claimBuild(claimReq('w1', 4_000)))!;
      expect([c1.build.id, c2.build.id]).toEqual([running.id, preparing.id]);
      expect(await next(0)).toBe(12_000); // running's heartbeat (its claim)
      // A sign of life moves a build's deadline later: now the worker's contact comes first.
      await s.setBuildPhase(running.id, c1.attempt.lease, ['assigned'], 'running', 6_000);
      await s.setBuildPhase(preparing.id, c2.attempt.lease, ['assigned'], 'preparing', 8_000);
      expect(await next(0)).toBe(13_000);
      // Only deadlines at or after `from`: the worker 13 s, running's heartbeat 16 s, preparing's 18 s,
      expect(await next(13_000)).toBe(13_000);
      expect(await next(13_001)).toBe(16_000);
      expect(await next(16_001)).toBe(18_000);
      // then the backstops: running 6 s (its steps' start) + 20 s + 5 s; preparing 4 s (its claim) + 30 s + 5 s.
      expect(await next(18_001)).toBe(31_000);
      expect(await next(31_001)).toBe(39_000);
      expect(await next(39_001)).toBeNull();
      await s.finishAttempt({ buildId: running.id, lease: c1.attempt.lease, now: 20_000, status: 'failed', failureReason: 'vm_crashed', exitCode: null, message: null, requeue: false });
      expect(await next(13_001)).toBe(18_000);
      expect(await next(18_001)).toBe(39_000);
    });

    test(T.cancel, async () => {
      const a = await s.createBuild(build());
      const b = await s.createBuild(build());
      await s.claimBuild(claimReq('w1', 11_000));
      expect(await s.cancelQueued(a.id, 11_001)).toBe(false);
      expect(await s.cancelQueued(b.id, 11_002)).toBe(true);
      await s.requestCancel(a.id);
      expect((await s.getBuild(a.id))?.cancelRequested).toBe(true);
      expect(await s.countBuildsByStatus()).toMatchObject({ assigned: 1, cancelled: 1, queued: 0 });
      expect((await s.listBuilds({ limit: 10, status: 'cancelled' })).map((x) => x.id)).toEqual([b.id]);
      expect((await s.listBuilds({ limit: 10 })).map((x) => x.id)).toEqual([b.id, a.id]);
    });

    test(T.secrets, async () => {
      const sealed = Buffer.from([1, 2, 3, 4]);
      const b = await s.createBuild(build({ secretEnvNames: ['T'], secretEnvSealed: sealed, maxAttempts: 2 }));
      expect(await s.getBuild(b.id)).toMatchObject({ secretEnvNames: ['T'], secretEnvSealed: sealed });
      const c1 = (await s.claimBuild(claimReq('w1', 13_000)))!;
      expect(c1.build.secretEnvSealed).toEqual(sealed);
      const end = { buildId: b.id, status: 'failed' as const, failureReason: 'vm_crashed' as const, exitCode: null, message: null };
      await s.finishAttempt({ ...end, lease: c1.attempt.lease, now: 13_001, requeue: true });
      expect((await s.getBuild(b.id))!.secretEnvSealed).toEqual(sealed);
      const c2 = (await s.claimBuild(claimReq('w1', 13_002)))!;
      await s.finishAttempt({ ...end, lease: c2.attempt.lease, now: 13_003, requeue: false });
      expect(await s.getBuild(b.id)).toMatchObject({ status: 'failed', secretEnvNames: ['T'], secretEnvSealed: null });
      const q = await s.createBuild(build({ secretEnvNames: ['T'], secretEnvSealed: sealed }));
      await s.cancelQueued(q.id, 13_004);
      expect((await s.getBuild(q.id))!.secretEnvSealed).toBeNull();
    });

    test(T.prune, async () => {
      const old = await s.createBuild(build());
      const c = (await s.claimBuild(claimReq('w1', 14_000)))!;
      await s.appendLog(old.id, 0, Buffer.from('0123456789'), 1 << 20);
      await s.putArtifact({ buildId: old.id, name: 'a.ipa', attempt: 1, sizeBytes: 100, sha256: 'x', createdAt: 14_001 });
      await s.finishAttempt({ buildId: old.id, lease: c.attempt.lease, now: 14_002, status: 'succeeded', failureReason: null, exitCode: 0, message: null, requeue: false });
      const cancelled = await s.createBuild(build());
      await s.cancelQueued(cancelled.id, 14_003);
      const queued = await s.createBuild(build({ labels: ['nobody'] }));
      const late = await s.createBuild(build());
      await s.cancelQueued(late.id, 20_000);
      expect(await s.findPrunableBuilds(15_000)).toEqual([
        { id: old.id, logBytes: 10, artifacts: 1, artifactBytes: 100 },
        { id: cancelled.id, logBytes: 0, artifacts: 0, artifactBytes: 0 },
      ]);
      expect((await s.findPrunableBuilds(15_000, 1)).map((b) => b.id)).toEqual([old.id]);
      expect(await s.deleteBuilds([old.id, queued.id])).toEqual([old.id]);
      expect(await s.getBuild(old.id)).toBeNull();
      expect(await s.listAttempts(old.id)).toEqual([]);
      expect(await s.listArtifacts(old.id)).toEqual([]);
      expect((await s.readLog(old.id, 0)).length).toBe(0);
      expect(await s.getBuild(queued.id)).not.toBeNull();
      expect((await s.findPrunableBuilds(15_000)).map((b) => b.id)).toEqual([cancelled.id]);
    });

    test(T.deliveries, async () => {
      const d = (id: string, receivedAt: number) => delivery(id, receivedAt);
      const first = d('00000000-0000-4000-8000-000000000001', 1_000);
      expect(await s.recordDelivery(first)).toBe(true);
      // A redelivery keeps the first record as it was, whatever it says.
      expect(await s.recordDelivery({ ...first, event: 'issues', action: 'opened', receivedAt: 5_000 })).toBe(false);
      const twice = d('00000000-0000-4000-8000-000000000002', 2_000);
      expect(await Promise.all([s.recordDelivery(twice), s.recordDelivery(twice)])).toEqual(expect.arrayContaining([true, false]));
      await s.recordDelivery({ ...d('00000000-0000-4000-8000-000000000003', 3_000), action: 'opened', repository: null, reason: 'no repository in the payload' });
      const all = await s.listDeliveries(10);
      expect(all.map((x) => x.id)).toEqual(['00000000-0000-4000-8000-000000000003', twice.id, first.id]);
      expect(all[2]).toEqual(first);
      expect(all[0]).toMatchObject({ action: 'opened', repository: null, reason: 'no repository in the payload' });
      expect((await s.listDeliveries(1)).length).toBe(1);
      expect(await s.countDeliveriesBefore(2_500)).toBe(2);
      expect(await s.deleteDeliveriesBefore(2_500)).toBe(2);
      expect(await s.countDeliveriesBefore(2_500)).toBe(0);
      expect((await s.listDeliveries(10)).map((x) => x.id)).toEqual(['00000000-0000-4000-8000-000000000003']);
      // Pruned, an id may be recorded again.
      expect(await s.recordDelivery(first)).toBe(true);
    });

    test(T.artifactProblems, async () => {
      const declared = ['out/*.ipa', { path: 'App.ipa', required: true }];
      const b = await s.createBuild(build({ artifacts: declared }));
      expect(await s.getBuild(b.id)).toMatchObject({ artifacts: declared, artifactProblems: [] });
      const c = (await s.claimBuild(claimReq('w1', 13_000)))!;
      const problem = { pattern: 'App.ipa', reason: 'no_match' as const, required: true, message: 'none' };
      expect(await s.setArtifactProblems(b.id, 'wrong', [problem])).toBe(false);
      expect(await s.setArtifactProblems(b.id, c.attempt.lease, [problem])).toBe(true);
      const end = { buildId: b.id, lease: c.attempt.lease, now: 13_001, status: 'failed' as const, failureReason: 'artifact_missing' as const, exitCode: null, message: null, requeue: false };
      expect(await s.finishAttempt(end)).toMatchObject({ status: 'failed', artifactProblems: [problem] });
      expect(await s.setArtifactProblems(b.id, c.attempt.lease, [])).toBe(false);
      expect((await s.getBuild(b.id))?.artifactProblems).toEqual([problem]);
    });

    test(T.cleanAttempt, async () => {
      const b = await s.createBuild(build({ maxAttempts: 2, artifacts: ['App.ipa'] }));
      const c1 = (await s.claimBuild(claimReq('w1', 14_000)))!;
      const problem = { pattern: 'App.ipa', reason: 'no_match' as const, required: false, message: 'none' };
      expect(await s.setArtifactProblems(b.id, c1.attempt.lease, [problem])).toBe(true);
      await s.finishAttempt({ buildId: b.id, lease: c1.attempt.lease, now: 14_001, status: 'failed', failureReason: 'vm_crashed', exitCode: null, message: null, requeue: true });
      const c2 = (await s.claimBuild(claimReq('w2', 14_002)))!;
      expect(c2.build.artifactProblems).toEqual([]);
      const done = await s.finishAttempt({ buildId: b.id, lease: c2.attempt.lease, now: 14_003, status: 'succeeded', failureReason: null, exitCode: 0, message: null, requeue: false });
      expect(done).toMatchObject({ status: 'succeeded', artifactProblems: [] });
    });

    test(T.reopen, async () => {
      const b = await s.createBuild(build());
      const c = (await s.claimBuild(claimReq('w1', 12_000)))!;
      await s.appendLog(b.id, 0, Buffer.from('persisted'), 1 << 20);
      await s.close();
      s = await f.reopen();
      expect(await s.getBuild(b.id)).toMatchObject({ status: 'assigned', logBytes: 9, lease: c.attempt.lease });
      expect((await s.readLog(b.id, 0)).toString()).toBe('persisted');
      expect(await s.getWorkerByKeyHash('k1')).not.toBeNull();
    });

    test(T.workers, async () => {
      expect(await s.getWorker('nobody')).toBeNull();
      await s.createWorker({ id: 'a-first', labels: [], keyHash: 'k0', createdAt: 1 });
      expect((await s.listWorkers()).map((w) => w.id)).toEqual(['a-first', 'w1', 'w2']);
      expect(await s.getWorker('w2')).toMatchObject({ lastSeenAt: null, slotsTotal: null, draining: false, offline: false });
      await s.touchWorker('w2', { now: 5_000, slotsTotal: 3, draining: true });
      expect(await s.getWorker('w2')).toMatchObject({ lastSeenAt: 5_000, slotsTotal: 3, draining: true });
      // Fields not given are kept.
      await s.touchWorker('w2', { now: 6_000 });
      expect(await s.getWorker('w2')).toMatchObject({ lastSeenAt: 6_000, slotsTotal: 3, draining: true });
      await s.touchWorker('w2', { now: 7_000, draining: false });
      expect(await s.getWorker('w2')).toMatchObject({ draining: false, slotsTotal: 3 });
      // Enrolled long ago but never seen: not silent (its agent has not started yet).
      expect((await s.findSilentWorkers(1_000_000)).map((w) => w.id)).toEqual(['w2']);
      await s.markWorkerOffline('w2');
      expect(await s.getWorker('w2')).toMatchObject({ offline: true });
      expect(await s.findSilentWorkers(1_000_000)).toEqual([]);
      // Unknown ids change nothing and do not throw.
      await s.touchWorker('nobody', { now: 8_000 });
      await s.markWorkerOffline('nobody');
      expect(await s.getWorker('nobody')).toBeNull();
    });

    test(T.attempts, async () => {
      const b = await s.createBuild(build({ maxAttempts: 2 }));
      const c = (await s.claimBuild(claimReq('w1', 15_000)))!;
      expect(await s.getAttemptByTokenHash(c.attempt.buildTokenHash)).toMatchObject({ buildId: b.id, attempt: 1, workerId: 'w1', lease: c.attempt.lease, endedAt: null });
      expect(await s.getAttemptByTokenHash('no-such-token')).toBeNull();
      expect(await s.hasAttemptOnWorker(b.id, 'w1')).toBe(true);
      expect(await s.hasAttemptOnWorker(b.id, 'w2')).toBe(false);
      expect(await s.hasAttemptOnWorker('nosuchbuild', 'w1')).toBe(false);
      await s.finishAttempt({ buildId: b.id, lease: c.attempt.lease, now: 15_001, status: 'failed', failureReason: 'vm_crashed', exitCode: null, message: null, requeue: true });
      // An attempt that is over is still found (the monitor's late heartbeat is told it is over, not refused as unknown).
      expect(await s.getAttemptByTokenHash(c.attempt.buildTokenHash)).toMatchObject({ attempt: 1, outcome: 'requeued', endedAt: 15_001 });
      expect(await s.getAttemptByLease(b.id, 'no-such-lease')).toBeNull();
    });

    test(T.held, async () => {
      const a = await s.createBuild(build());
      const b = await s.createBuild(build());
      const other = await s.createBuild(build());
      const ca = (await s.claimBuild(claimReq('w1', 16_000)))!;
      const cb = (await s.claimBuild(claimReq('w1', 16_001)))!;
      await s.claimBuild(claimReq('w2', 16_002));
      expect([ca.build.id, cb.build.id]).toEqual([a.id, b.id]);
      expect((await s.activeBuildsOfWorker('w1')).map((x) => x.id)).toEqual([a.id, b.id]);
      expect((await s.activeBuildsOfWorker('w2')).map((x) => x.id)).toEqual([other.id]);
      expect(await s.activeBuildsOfWorker('nobody')).toEqual([]);
      await s.finishAttempt({ buildId: a.id, lease: ca.attempt.lease, now: 16_003, status: 'succeeded', failureReason: null, exitCode: 0, message: null, requeue: false });
      await s.unassign(b.id, cb.attempt.lease);
      expect(await s.activeBuildsOfWorker('w1')).toEqual([]);
      const byWorker = await s.activeBuildsByWorker();
      expect([...byWorker.keys()]).toEqual(['w2']);
      expect(byWorker.get('w2')!.map((x) => x.id)).toEqual([other.id]);
    });

    test(T.cancelFinal, async () => {
      const b = await s.createBuild(build());
      const c = (await s.claimBuild(claimReq('w1', 17_000)))!;
      await s.finishAttempt({ buildId: b.id, lease: c.attempt.lease, now: 17_001, status: 'succeeded', failureReason: null, exitCode: 0, message: null, requeue: false });
      await s.requestCancel(b.id);
      expect(await s.getBuild(b.id)).toMatchObject({ status: 'succeeded', cancelRequested: false });
      expect(await s.cancelQueued(b.id, 17_002)).toBe(false);
      await s.requestCancel('nosuchbuild');
      expect(await s.getBuild('nosuchbuild')).toBeNull();
    });

    test(T.artifacts, async () => {
      const b = await s.createBuild(build({ maxAttempts: 3 }));
      const art = (name: string, attempt: number, sizeBytes: number) => ({ buildId: b.id, name, attempt, sizeBytes, sha256: `sha-${name}-${attempt}`, createdAt: 18_000 + attempt });
      expect(await s.listArtifacts(b.id)).toEqual([]);
      await s.putArtifact(art('z.log', 1, 1));
      await s.putArtifact(art('App.ipa', 2, 20));
      expect((await s.listArtifacts(b.id)).map((a) => a.name)).toEqual(['App.ipa', 'z.log']);
      // The same attempt uploading again replaces; a later attempt replaces; an earlier one does not.
      await s.putArtifact(art('App.ipa', 2, 21));
      expect((await s.listArtifacts(b.id)).find((a) => a.name === 'App.ipa')).toEqual(art('App.ipa', 2, 21));
      await s.putArtifact(art('App.ipa', 1, 10));
      expect((await s.listArtifacts(b.id)).find((a) => a.name === 'App.ipa')).toEqual(art('App.ipa', 2, 21));
      await s.putArtifact(art('App.ipa', 3, 30));
      expect((await s.listArtifacts(b.id)).find((a) => a.name === 'App.ipa')).toEqual(art('App.ipa', 3, 30));
      expect(await s.listArtifacts('nosuchbuild')).toEqual([]);
    });

    test(T.close, async () => {
      await s.close();
      await s.close();
      s = await f.reopen();
      expect((await s.getWorker('w1'))?.id).toBe('w1');
    });

    test(T.diskError, async () => {
      // What the backend's own full disk looks like is the adapter's unit test; every backend
      // must at least not take an ordinary refusal for a full disk (that would answer 507).
      await s.createWorker({ id: 'dup', labels: [], keyHash: 'k-dup', createdAt: 1 });
      const refusal = await s.createWorker({ id: 'dup', labels: [], keyHash: 'k-dup2', createdAt: 2 }).catch((e: unknown) => e);
      expect(refusal).toMatchObject({ code: 'WORKER_EXISTS' });
      expect(s.diskError(refusal)).toBeNull();
      expect(s.diskError(new Error('boom'))).toBeNull();
      expect(s.diskError(undefined)).toBeNull();
    });

    test(T.settle, async () => {
      const work: DeliveryWork = {
        event: 'push',
        repo: 'Octo/App',
        cloneUrl: 'https://github.com/Octo/App.git',
        ref: 'refs/heads/main',
        sha: SHA_A,
        prNumber: null,
        baseBranch: null,
        installationId: 7,
        rerunOf: null,
      };
      const later = delivery('00000000-0000-4000-8000-000000000012', 2_000, { outcome: 'pending', reason: 'received', work });
      const first = delivery('00000000-0000-4000-8000-000000000011', 1_000, { outcome: 'pending', reason: 'received', work });
      await s.recordDelivery(later);
      await s.recordDelivery(first);
      await s.recordDelivery(delivery('00000000-0000-4000-8000-000000000013', 500));
      expect(await s.listPendingDeliveries(10)).toEqual([first, later]);
      expect((await s.listPendingDeliveries(1)).map((d) => d.id)).toEqual([first.id]);
      // Filtered before the limit: by id, by age, or either; a settled one never.
      expect((await s.listPendingDeliveries(1, { ids: [later.id], receivedBefore: null })).map((d) => d.id)).toEqual([later.id]);
      expect((await s.listPendingDeliveries(10, { ids: [], receivedBefore: 1_000 })).map((d) => d.id)).toEqual([first.id]);
      expect((await s.listPendingDeliveries(10, { ids: [later.id], receivedBefore: 1_000 })).map((d) => d.id)).toEqual([first.id, later.id]);
      expect(await s.listPendingDeliveries(10, { ids: ['00000000-0000-4000-8000-000000000013'], receivedBefore: null })).toEqual([]);
      expect(await s.listPendingDeliveries(10, { ids: [], receivedBefore: 999 })).toEqual([]);
      const settled = await Promise.all([
        s.settleDelivery(first.id, 'built', 'built ios', ['b1', 'b2']),
        s.settleDelivery(first.id, 'failed', 'no pipeline file', []),
      ]);
      expect(settled.filter(Boolean)).toHaveLength(1);
      const [mine] = (await s.listDeliveries(10)).filter((d) => d.id === first.id);
      expect(mine!.work).toBeNull();
      expect(mine!.outcome === 'built' ? mine!.builds : []).toEqual(settled[0] ? ['b1', 'b2'] : []);
      expect(await s.settleDelivery(first.id, 'ignored', 'again', [])).toBe(false);
      expect(await s.settleDelivery('00000000-0000-4000-8000-000000000013', 'built', 'not pending', ['x'])).toBe(false);
      expect(await s.settleDelivery('00000000-0000-4000-8000-0000000000ff', 'built', 'unknown', [])).toBe(false);
      expect((await s.listPendingDeliveries(10)).map((d) => d.id)).toEqual([later.id]);
    });

    test(T.redeliver, async () => {
      const work = { event: 'push' as const, repo: 'octo/app', cloneUrl: 'https://github.com/octo/app.git', ref: 'refs/heads/main', sha: SHA_A, prNumber: null, baseBranch: null, installationId: null, rerunOf: null };
      const id = '00000000-0000-4000-8000-000000000021';
      await s.recordDelivery(delivery(id, 1_000, { outcome: 'pending', reason: 'received', work }));
      const again = delivery(id, 5_000, { outcome: 'pending', reason: 'redelivered', work: { ...work, before: SHA_B } });
      // Pending (and later built or ignored): not reopened.
      expect(await s.reopenDelivery(again)).toBe(false);
      expect(await s.settleDelivery(id, 'failed', 'GitHub unreachable', ['x'])).toBe(true);
      const [reopened] = await Promise.all([s.reopenDelivery(again), s.reopenDelivery(again)]).then((r) => [r.filter(Boolean).length]);
      expect(reopened).toBe(1);
      expect((await s.listPendingDeliveries(10)).find((d) => d.id === id)).toEqual({ ...again, builds: [] });
      expect(await s.settleDelivery(id, 'built', 'built ios', ['b1'])).toBe(true);
      expect(await s.reopenDelivery(again)).toBe(false);
      expect(await s.reopenDelivery(delivery('00000000-0000-4000-8000-0000000000fe', 1, { outcome: 'pending', reason: 'x', work }))).toBe(false);
    });

    test(T.cancelMessage, async () => {
      const queued = await s.createBuild(build());
      await s.requestCancel(queued.id, 'superseded by ' + SHA_B);
      expect(await s.getBuild(queued.id)).toMatchObject({ status: 'queued', cancelRequested: true, message: 'superseded by ' + SHA_B });
      expect(await s.cancelQueued(queued.id, 20_000)).toBe(true);
      expect(await s.getBuild(queued.id)).toMatchObject({ status: 'cancelled', message: 'superseded by ' + SHA_B, finishedAt: 20_000 });
      const direct = await s.createBuild(build());
      expect(await s.cancelQueued(direct.id, 20_001, 'superseded by x')).toBe(true);
      expect(await s.getBuild(direct.id)).toMatchObject({ status: 'cancelled', message: 'superseded by x' });
      const plain = await s.createBuild(build());
      await s.cancelQueued(plain.id, 20_002);
      expect((await s.getBuild(plain.id))!.message).toBeNull();

      const end = { now: 20_010, failureReason: null, exitCode: null, requeue: false };
      const active = await s.createBuild(build());
      const ca = (await s.claimBuild(claimReq('w1', 20_003)))!;
      await s.requestCancel(active.id, 'superseded by y');
      expect(await s.finishAttempt({ ...end, buildId: active.id, lease: ca.attempt.lease, status: 'cancelled', message: 'cancel requested' })).toMatchObject({
        status: 'cancelled',
        message: 'superseded by y; cancel requested',
      });
      const silent = await s.createBuild(build());
      const cs = (await s.claimBuild(claimReq('w1', 20_004)))!;
      await s.requestCancel(silent.id, 'superseded by z');
      expect(await s.finishAttempt({ ...end, buildId: silent.id, lease: cs.attempt.lease, status: 'cancelled', message: null })).toMatchObject({ message: 'superseded by z' });
      const won = await s.createBuild(build());
      const cw = (await s.claimBuild(claimReq('w1', 20_005)))!;
      await s.requestCancel(won.id, 'superseded by w');
      expect(await s.finishAttempt({ ...end, buildId: won.id, lease: cw.attempt.lease, status: 'succeeded', exitCode: 0, message: null })).toMatchObject({
        status: 'succeeded',
        message: null,
      });
      // A final build is left as it is, message and all.
      await s.requestCancel(won.id, 'too late');
      expect((await s.getBuild(won.id))!.message).toBeNull();
    });

    test(T.projects, async () => {
      const p = await s.createProject({ id: 'p1', repo: 'Octo/App', pipelinePath: '.expo-worker.yml', supersede: true, createdAt: 30_000 });
      expect(p).toEqual({ id: 'p1', repo: 'Octo/App', pipelinePath: '.expo-worker.yml', supersede: true, secretNames: [], createdAt: 30_000 });
      await expect(s.createProject({ id: 'p2', repo: 'octo/APP', pipelinePath: 'x.yml', supersede: false, createdAt: 30_001 })).rejects.toMatchObject({ code: 'PROJECT_EXISTS' });
      expect(await s.getProject('p2')).toBeNull();
      await s.createProject({ id: 'p3', repo: 'alpha/beta', pipelinePath: 'ci/x.yml', supersede: false, createdAt: 30_002 });
      await s.putProjectSecret('p1', 'TOKEN', Buffer.from([9, 9, 9]), 30_003);
      expect(await s.getProject('p1')).toEqual({ ...p, secretNames: ['TOKEN'] });
      expect((await s.getProjectByRepo('OCTO/app'))?.id).toBe('p1');
      expect(await s.getProjectByRepo('octo/other')).toBeNull();
      expect((await s.listProjects()).map((x) => [x.id, x.secretNames])).toEqual([
        ['p3', []],
        ['p1', ['TOKEN']],
      ]);
      // Two registrations of one repository at once: exactly one wins.
      const race = await Promise.allSettled([
        s.createProject({ id: 'r1', repo: 'race/repo', pipelinePath: 'a.yml', supersede: true, createdAt: 30_010 }),
        s.createProject({ id: 'r2', repo: 'RACE/repo', pipelinePath: 'a.yml', supersede: true, createdAt: 30_011 }),
      ]);
      expect(race.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
      expect(race.find((r) => r.status === 'rejected')).toMatchObject({ reason: { code: 'PROJECT_EXISTS' } });
      // Its builds stay, with their source.
      const b = await s.createBuild(build({ source: source() }));
      expect(await s.deleteProject('p1')).toBe(true);
      expect(await s.deleteProject('p1')).toBe(false);
      expect(await s.getProject('p1')).toBeNull();
      expect(await s.getProjectSecrets('p1')).toEqual([]);
      expect((await s.getBuild(b.id))!.source).toEqual(source());
      // The repository may be registered again, and its old secrets do not come back.
      const again = await s.createProject({ id: 'p4', repo: 'octo/app', pipelinePath: '.expo-worker.yml', supersede: true, createdAt: 30_004 });
      expect(again.secretNames).toEqual([]);
      expect(await s.putProjectSecret('p1', 'TOKEN', Buffer.from([1]), 30_005)).toBe(false);
    });

    test(T.projectSecrets, async () => {
      await s.createProject({ id: 'p1', repo: 'octo/app', pipelinePath: '.expo-worker.yml', supersede: true, createdAt: 1 });
      expect(await s.getProjectSecrets('p1')).toEqual([]);
      expect(await s.putProjectSecret('p1', 'ZED', Buffer.from([1, 2]), 10)).toBe(true);
      expect(await s.putProjectSecret('p1', 'APPLE_KEY', Buffer.from([3]), 11)).toBe(true);
      expect(await s.putProjectSecret('p1', 'ZED', Buffer.from([4, 5, 6]), 12)).toBe(true);
      expect(await s.getProjectSecrets('p1')).toEqual([
        { name: 'APPLE_KEY', sealed: Buffer.from([3]), updatedAt: 11 },
        { name: 'ZED', sealed: Buffer.from([4, 5, 6]), updatedAt: 12 },
      ]);
      expect((await s.getProject('p1'))!.secretNames).toEqual(['APPLE_KEY', 'ZED']);
      expect(await s.deleteProjectSecret('p1', 'ZED')).toBe(true);
      expect(await s.deleteProjectSecret('p1', 'ZED')).toBe(false);
      expect(await s.deleteProjectSecret('nope', 'APPLE_KEY')).toBe(false);
      expect(await s.putProjectSecret('nope', 'X', Buffer.from([1]), 13)).toBe(false);
      expect(await s.getProjectSecrets('nope')).toEqual([]);
      expect((await s.listProjects())[0]!.secretNames).toEqual(['APPLE_KEY']);
    });

    test(T.sources, async () => {
      const api = await s.createBuild(build());
      expect(api.source).toBeNull();
      expect(api).toMatchObject({ reported: null, checkRunId: null });
      const main1 = await s.createBuild(build({ source: source() }));
      const main2 = await s.createBuild(build({ source: source({ sha: SHA_B }) }));
      const pr = await s.createBuild(build({ source: source({ event: 'pull_request', ref: 'refs/pull/7/head', prNumber: 7 }) }));
      const other = await s.createBuild(build({ source: source({ projectId: 'p2', repo: 'alpha/beta' }) }));
      expect(main1.source).toEqual(source());
      const ids = async (f: Parameters<Store['listBuilds']>[0]) => (await s.listBuilds(f)).map((b) => b.id);
      expect(await ids({ limit: 10, repo: 'OCTO/app' })).toEqual([pr.id, main2.id, main1.id]);
      expect(await ids({ limit: 10, repo: 'octo/app', ref: 'refs/heads/main' })).toEqual([main2.id, main1.id]);
      expect(await ids({ limit: 10, sha: SHA_A })).toEqual([other.id, pr.id, main1.id]);
      expect(await ids({ limit: 10, repo: 'octo/app', ref: 'refs/heads/main', sha: SHA_B })).toEqual([main2.id]);
      expect(await ids({ limit: 1, repo: 'octo/app' })).toEqual([pr.id]);
      expect(await ids({ limit: 10, ref: 'refs/heads/Main' })).toEqual([]);
      await s.cancelQueued(main1.id, 40_000);
      expect(await ids({ limit: 10, repo: 'octo/app', status: 'cancelled' })).toEqual([main1.id]);
      expect(await ids({ limit: 10, status: 'queued' })).toEqual([other.id, pr.id, main2.id, api.id]);
      // Pruning a build with a source takes it out of the filters too.
      expect(await s.deleteBuilds([main1.id])).toEqual([main1.id]);
      expect(await ids({ limit: 10, sha: SHA_A })).toEqual([other.id, pr.id]);
    });

    test(T.ofRef, async () => {
      const old = await s.createBuild(build({ source: source() }));
      const running = await s.createBuild(build({ source: source() }));
      const done = await s.createBuild(build({ source: source() }));
      await s.createBuild(build({ source: source({ ref: 'refs/heads/dev' }) }));
      await s.createBuild(build({ source: source({ projectId: 'p2' }) }));
      await s.createBuild(build());
      await s.claimBuild(claimReq('w1', 50_000));
      const c = (await s.claimBuild(claimReq('w1', 50_001)))!;
      expect(c.build.id).toBe(running.id);
      const c3 = (await s.claimBuild(claimReq('w2', 50_002)))!;
      await s.finishAttempt({ buildId: done.id, lease: c3.attempt.lease, now: 50_003, status: 'succeeded', failureReason: null, exitCode: 0, message: null, requeue: false });
      expect((await s.unfinishedBuildsOfRef('p1', 'refs/heads/main')).map((b) => b.id)).toEqual([old.id, running.id]);
      expect(await s.unfinishedBuildsOfRef('p1', 'refs/heads/nothing')).toEqual([]);
      expect(await s.unfinishedBuildsOfRef('nope', 'refs/heads/main')).toEqual([]);
    });

    test(T.reports, async () => {
      // Not claimable by w1 (labels), and never listed (no source).
      await s.createBuild(build({ labels: ['linux'] }));
      const a = await s.createBuild(build({ source: source(), maxAttempts: 2 }));
      const b = await s.createBuild(build({ source: source({ sha: SHA_B }) }));
      const toReport = async () => (await s.listBuildsToReport(10)).map((x) => x.id);
      const reportedOf = async (id: string) => {
        const x = (await s.getBuild(id))!;
        return { reported: x.reported, checkRunId: x.checkRunId };
      };
      expect(await toReport()).toEqual([a.id, b.id]);
      expect((await s.listBuildsToReport(1)).map((x) => x.id)).toEqual([a.id]);
      expect(await s.setReported(a.id, 'pending', 42)).toBe(true);
      expect(await reportedOf(a.id)).toEqual({ reported: 'pending', checkRunId: 42 });
      // Pending and still queued, then assigned and preparing: reported as far as it goes for now.
      expect(await toReport()).toEqual([b.id]);
      const c1 = (await s.claimBuild(claimReq('w1', 50_000)))!;
      expect(c1.build.id).toBe(a.id);
      expect(await s.setBuildPhase(a.id, c1.attempt.lease, ['assigned'], 'preparing', 50_001)).toBe(true);
      expect(await toReport()).toEqual([b.id]);

      // pending → running.
      expect(await s.setBuildPhase(a.id, c1.attempt.lease, ['preparing'], 'running', 50_002)).toBe(true);
      expect(await toReport()).toEqual([a.id, b.id]);
      expect(await s.setReported(a.id, 'running')).toBe(true);
      expect(await reportedOf(a.id)).toEqual({ reported: 'running', checkRunId: 42 });
      expect(await toReport()).toEqual([b.id]);
      // A lower stage changes nothing, the check run included.
      expect(await s.setReported(a.id, 'pending', 7)).toBe(true);
      expect(await reportedOf(a.id)).toEqual({ reported: 'running', checkRunId: 42 });

      // Queued again after it ran: not listed again until it ends, however often it runs.
      const fail = { status: 'failed', failureReason: 'worker_lost', exitCode: null, message: null } as const;
      expect(await s.finishAttempt({ buildId: a.id, lease: c1.attempt.lease, now: 50_003, ...fail, requeue: true })).toMatchObject({ status: 'queued' });
      expect(await toReport()).toEqual([b.id]);
      const c2 = (await s.claimBuild(claimReq('w1', 50_004)))!;
      expect(c2.build.id).toBe(a.id);
      expect(await s.setBuildPhase(a.id, c2.attempt.lease, ['assigned'], 'running', 50_005)).toBe(true);
      expect(await toReport()).toEqual([b.id]);

      // running → final; then nothing goes back.
      expect(await s.finishAttempt({ buildId: a.id, lease: c2.attempt.lease, now: 50_006, ...fail, requeue: false })).toMatchObject({ status: 'failed' });
      expect(await toReport()).toEqual([a.id, b.id]);
      expect(await s.setReported(a.id, 'final')).toBe(true);
      expect(await toReport()).toEqual([b.id]);
      for (const lower of ['pending', 'running'] as const) expect(await s.setReported(a.id, lower, 9)).toBe(true);
      expect(await reportedOf(a.id)).toEqual({ reported: 'final', checkRunId: 42 });
      expect(await toReport()).toEqual([b.id]);

      // pending → final, skipping running (it ended before its running was reported).
      expect(await s.setReported(b.id, 'pending', 43)).toBe(true);
      expect(await toReport()).toEqual([]);
      await s.cancelQueued(b.id, 60_000);
      expect(await toReport()).toEqual([b.id]);
      expect(await s.setReported(b.id, 'final')).toBe(true);
      expect(await reportedOf(b.id)).toEqual({ reported: 'final', checkRunId: 43 });
      expect(await toReport()).toEqual([]);

      // Never reported: straight to running (first seen running), or straight to final.
      const r = await s.createBuild(build({ source: source({ name: 'android' }) }));
      const f = await s.createBuild(build({ source: source({ name: 'web' }) }));
      const c3 = (await s.claimBuild(claimReq('w1', 60_001)))!;
      expect(c3.build.id).toBe(r.id);
      await s.setBuildPhase(r.id, c3.attempt.lease, ['assigned'], 'running', 60_002);
      await s.cancelQueued(f.id, 60_003);
      expect(await toReport()).toEqual([r.id, f.id]);
      expect(await s.setReported(r.id, 'running', 44)).toBe(true);
      expect(await s.setReported(f.id, 'final', 45)).toBe(true);
      expect(await reportedOf(r.id)).toEqual({ reported: 'running', checkRunId: 44 });
      expect(await reportedOf(f.id)).toEqual({ reported: 'final', checkRunId: 45 });
      expect(await toReport()).toEqual([]);
      // The same stage again may record the check run.
      expect(await s.setReported(r.id, 'running', 46)).toBe(true);
      expect(await reportedOf(r.id)).toEqual({ reported: 'running', checkRunId: 46 });
      expect(await s.setReported('nosuchbuild', 'final')).toBe(false);
    });

    test(T.since, async () => {
      const since = 100_000;
      const finish = (buildId: string, lease: string, now: number) =>
        s.finishAttempt({ buildId, lease, now, status: 'succeeded', failureReason: null, exitCode: 0, message: null, requeue: false });
      // Before the window and over before it: neither the build nor its attempt.
      const old = await s.createBuild(build({ createdAt: 1_000 }));
      const cOld = (await s.claimBuild(claimReq('w1', 2_000)))!;
      await finish(old.id, cOld.attempt.lease, 3_000);
      // Claimed before the window, ended in it; claimed before it and still running; queued before it.
      const straddle = await s.createBuild(build({ createdAt: 4_000 }));
      const cStraddle = (await s.claimBuild(claimReq('w1', 5_000)))!;
      const running = await s.createBuild(build({ createdAt: 6_000 }));
      expect((await s.claimBuild(claimReq('w2', 7_000)))?.build.id).toBe(running.id);
      const waiting = await s.createBuild(build({ createdAt: 8_000, labels: ['nobody-has-this'] }));
      await finish(straddle.id, cStraddle.attempt.lease, 150_000);
      // In the window: one built, one cancelled while queued.
      const fresh = await s.createBuild(build({ createdAt: 120_000 }));
      const cancelled = await s.createBuild(build({ createdAt: 130_000, labels: ['nobody-has-this'] }));
      await s.cancelQueued(cancelled.id, 140_000);
      const cFresh = (await s.claimBuild(claimReq('w1', 160_000)))!;
      expect(cFresh.build.id).toBe(fresh.id);
      await finish(fresh.id, cFresh.attempt.lease, 170_000);

      expect((await s.listBuildsSince(since, 100)).map((b) => b.id)).toEqual([cancelled.id, fresh.id, waiting.id, running.id, straddle.id]);
      expect((await s.listBuildsSince(since, 100)).map((b) => b.status)).toEqual(['cancelled', 'succeeded', 'queued', 'assigned', 'succeeded']);
      expect((await s.listBuildsSince(200_000, 100)).map((b) => b.id)).toEqual([waiting.id, running.id]);
      const attempts = await s.listAttemptsSince(since, 100);
      expect(attempts.map((a) => [a.buildId, a.workerId, a.claimedAt, a.endedAt])).toEqual([
        [straddle.id, 'w1', 5_000, 150_000],
        [running.id, 'w2', 7_000, null],
        [fresh.id, 'w1', 160_000, 170_000],
      ]);
      expect((await s.listAttemptsSince(200_000, 100)).map((a) => a.buildId)).toEqual([running.id]);
      expect((await s.listAttemptsSince(0, 100)).map((a) => a.buildId)).toEqual([old.id, straddle.id, running.id, fresh.id]);
      // The limit holds, keeping the newest builds and the oldest claims.
      // Over the limit, the kept builds are the newest unfinished and those that finished last
      // (the cancelled one finished before `fresh` and `straddle`, so it drops out first).
      expect((await s.listBuildsSince(since, 2)).map((b) => b.id)).toEqual([fresh.id, waiting.id]);
      expect((await s.listBuildsSince(160_000, 1)).map((b) => b.id)).toEqual([fresh.id]);
      expect((await s.listAttemptsSince(since, 2)).map((a) => a.buildId)).toEqual([straddle.id, running.id]);
      expect((await s.listAttemptsSince(0, 1)).map((a) => a.buildId)).toEqual([old.id]);
    });

    const user = (name: string, role: 'viewer' | 'operator' | 'admin' = 'viewer') => ({ name, role, passwordHash: `scrypt$12$8$1$salt-${name}$key-${name}`, createdAt: 100 });
    const apiToken = (id: string, over: Partial<ApiTokenRecord> = {}): ApiTokenRecord => ({
      id,
      name: `name ${id}`,
      role: 'viewer',
      owner: null,
      secretHash: `secret-${id}`,
      createdAt: 100,
      expiresAt: 10_000,
      lastUsedAt: null,
      revokedAt: null,
      adminEpoch: null,
      ...over,
    });

    test(T.users, async () => {
      expect(await s.createUser(user('bob', 'operator'))).toEqual({ ...user('bob', 'operator'), lastSignInAt: null });
      await s.createUser(user('alice', 'admin'));
      await expect(s.createUser(user('bob', 'admin'))).rejects.toMatchObject({ code: 'USER_EXISTS' });
      expect((await s.listUsers()).map((u) => [u.name, u.role])).toEqual([['alice', 'admin'], ['bob', 'operator']]);
      expect(await s.getUser('nobody')).toBeNull();
      await s.recordSignIn('bob', 500);
      expect(await s.getUser('bob')).toMatchObject({ lastSignInAt: 500, role: 'operator' });

      await s.createSession({ idHash: 'sb1', userName: 'bob', createdAt: 1, expiresAt: 9000 });
      await s.createSession({ idHash: 'sb2', userName: 'bob', createdAt: 1, expiresAt: 9000 });
      await s.createSession({ idHash: 'sa1', userName: 'alice', createdAt: 1, expiresAt: 9000 });
      expect(await s.setUserPassword('bob', 'scrypt$new')).toBe(true);
      expect(await s.setUserPassword('nobody', 'scrypt$new')).toBe(false);
      expect((await s.getUser('bob'))?.passwordHash).toBe('scrypt$new');
      expect(await s.getSession('sb1', 10)).toBeNull();
      expect(await s.getSession('sb2', 10)).toBeNull();
      expect((await s.getSession('sa1', 10))?.user.name).toBe('alice');

      await s.createSession({ idHash: 'sb3', userName: 'bob', createdAt: 1, expiresAt: 9000 });
      await s.createApiToken(apiToken('tok_b', { owner: 'bob' }));
      await s.createApiToken(apiToken('tok_a', { owner: 'alice' }));
      expect(await s.deleteUser('bob')).toBe(true);
      expect(await s.deleteUser('bob')).toBe(false);
      expect(await s.getUser('bob')).toBeNull();
      expect(await s.getSession('sb3', 10)).toBeNull();
      expect(await s.getApiTokenBySecretHash('secret-tok_b')).toBeNull();
      expect((await s.getApiTokenBySecretHash('secret-tok_a'))?.owner?.name).toBe('alice');
    });

    test(T.sessions, async () => {
      await s.createUser(user('carol'));
      await s.createSession({ idHash: 'h1', userName: 'carol', createdAt: 1, expiresAt: 1000 });
      await s.createSession({ idHash: 'h2', userName: 'carol', createdAt: 1, expiresAt: 5000 });
      await s.createSession({ idHash: 'h3', userName: 'carol', createdAt: 1, expiresAt: 5000 });
      expect(await s.getSession('h1', 999)).toEqual({
        session: { idHash: 'h1', userName: 'carol', createdAt: 1, expiresAt: 1000 },
        user: { ...user('carol'), lastSignInAt: null },
      });
      // Expired at its expiry: gone, and gone for good.
      expect(await s.getSession('h1', 1000)).toBeNull();
      expect(await s.getSession('h1', 10)).toBeNull();
      expect(await s.getSession('unknown', 10)).toBeNull();
      expect(await s.deleteSession('h2')).toBe(true);
      expect(await s.deleteSession('h2')).toBe(false);
      expect(await s.getSession('h2', 10)).toBeNull();
      await s.createSession({ idHash: 'h4', userName: 'carol', createdAt: 1, expiresAt: 5000 });
      expect(await s.deleteSessionsOfUser('carol')).toBe(2);
      expect(await s.deleteSessionsOfUser('carol')).toBe(0);
      expect(await s.getSession('h3', 10)).toBeNull();
    });

    test(T.expiredSessions, async () => {
      await s.createUser(user('fay'));
      await s.createSession({ idHash: 'e1', userName: 'fay', createdAt: 1, expiresAt: 1000 });
      await s.createSession({ idHash: 'e2', userName: 'fay', createdAt: 1, expiresAt: 2000 });
      await s.createSession({ idHash: 'e3', userName: 'fay', createdAt: 1, expiresAt: 2001 });
      expect(await s.deleteExpiredSessions(2000)).toBe(2);
      expect(await s.deleteExpiredSessions(2000)).toBe(0);
      // Still there: getSession before its expiry finds it.
      expect((await s.getSession('e3', 1500))?.session.idHash).toBe('e3');
      expect(await s.getSession('e1', 500)).toBeNull();
      expect(await s.getSession('e2', 500)).toBeNull();
    });

    test(T.userRole, async () => {
      await s.createUser(user('gus', 'admin'));
      expect(await s.setUserRole('gus', 'viewer')).toBe('admin');
      expect(await s.getUser('gus')).toMatchObject({ role: 'viewer' });
      expect(await s.setUserRole('gus', 'operator')).toBe('viewer');
      expect(await s.setUserRole('nobody', 'admin')).toBeNull();
      expect(await s.getUser('nobody')).toBeNull();
    });

    test(T.tokens, async () => {
      await s.createUser(user('dave', 'operator'));
      await s.createApiToken(apiToken('tok_1', { owner: 'dave', createdAt: 100 }));
      await s.createApiToken(apiToken('tok_2', { owner: null, createdAt: 200, role: 'admin', adminEpoch: 'epoch-1' }));
      await s.createApiToken(apiToken('tok_3', { owner: 'dave', createdAt: 300, expiresAt: 50 }));
      expect(await s.getApiTokenBySecretHash('secret-tok_1')).toEqual({ token: apiToken('tok_1', { owner: 'dave', createdAt: 100 }), owner: { ...user('dave', 'operator'), lastSignInAt: null } });
      expect(await s.getApiTokenBySecretHash('secret-tok_2')).toMatchObject({ token: { id: 'tok_2', role: 'admin', owner: null, adminEpoch: 'epoch-1' }, owner: null });
      // An expired one is found all the same: the caller tells expired from unknown.
      expect((await s.getApiTokenBySecretHash('secret-tok_3'))?.token.id).toBe('tok_3');
      expect(await s.getApiTokenBySecretHash('nope')).toBeNull();
      expect(await s.getApiToken('tok_2')).toMatchObject({ name: 'name tok_2' });
      expect(await s.getApiToken('tok_none')).toBeNull();
      expect((await s.listApiTokens()).map((t) => t.id)).toEqual(['tok_3', 'tok_2', 'tok_1']);
      expect((await s.listApiTokens('dave')).map((t) => t.id)).toEqual(['tok_3', 'tok_1']);
      expect((await s.listApiTokens(null)).map((t) => t.id)).toEqual(['tok_2']);
      expect(await s.listApiTokens('nobody')).toEqual([]);

      expect(await s.revokeApiToken('tok_1', 700)).toBe(true);
      expect(await s.revokeApiToken('tok_1', 800)).toBe(false);
      expect(await s.revokeApiToken('tok_none', 800)).toBe(false);
      expect(await s.getApiToken('tok_1')).toMatchObject({ revokedAt: 700 });
      await s.touchApiToken('tok_2', 900);
      expect(await s.getApiToken('tok_2')).toMatchObject({ lastUsedAt: 900, revokedAt: null });
    });

    test(T.audit, async () => {
      expect(await s.listAudit({ limit: 10 })).toEqual([]);
      await s.appendAudit({ at: 1, actor: 'admin key', action: 'user.add', target: 'erin', detail: 'role viewer' });
      await s.appendAudit({ at: 2, actor: 'user erin', action: 'build.cancel', target: 'b1', detail: null });
      await s.appendAudit({ at: 3, actor: 'user erin', action: 'build.cancel', target: 'b2', detail: null });
      const all = await s.listAudit({ limit: 10 });
      expect(all.map((e) => e.target)).toEqual(['b2', 'b1', 'erin']);
      expect(all[2]).toEqual({ id: all[2]!.id, at: 1, actor: 'admin key', action: 'user.add', target: 'erin', detail: 'role viewer' });
      expect(all[0]!.id).toBeGreaterThan(all[1]!.id);
      expect((await s.listAudit({ limit: 2 })).map((e) => e.target)).toEqual(['b2', 'b1']);
      expect((await s.listAudit({ limit: 10, beforeId: all[1]!.id })).map((e) => e.target)).toEqual(['erin']);
      expect((await s.listAudit({ limit: 10, action: 'build.cancel' })).map((e) => e.target)).toEqual(['b2', 'b1']);
      expect((await s.listAudit({ limit: 10, action: 'build.cancel', beforeId: all[0]!.id })).map((e) => e.target)).toEqual(['b1']);
    });

    test(T.drainRemove, async () => {
      expect(await s.setWorkerDrainRequested('w1', true)).toBe(true);
      expect(await s.getWorker('w1')).toMatchObject({ drainRequested: true, draining: false });
      expect(await s.setWorkerDrainRequested('w1', false)).toBe(true);
      expect(await s.getWorker('w1')).toMatchObject({ drainRequested: false });
      expect(await s.setWorkerDrainRequested('nobody', true)).toBe(false);

      // w2 holds an active build, and has a finished one behind it.
      const done = await s.createBuild(build());
      const c1 = (await s.claimBuild(claimReq('w2', 8000)))!;
      await s.finishAttempt({ buildId: done.id, lease: c1.attempt.lease, now: 8001, status: 'succeeded', failureReason: null, exitCode: 0, message: null, requeue: false });
      const active = await s.createBuild(build());
      const c2 = (await s.claimBuild(claimReq('w2', 8002)))!;
      expect(await s.deleteWorker('w2')).toBe('busy');
      expect(await s.getWorker('w2')).not.toBeNull();
      await s.finishAttempt({ buildId: active.id, lease: c2.attempt.lease, now: 8003, status: 'failed', failureReason: 'build_failed', exitCode: 1, message: null, requeue: false });
      expect(await s.deleteWorker('w2')).toBe('removed');
      expect(await s.deleteWorker('w2')).toBe('missing');
      expect(await s.getWorker('w2')).toBeNull();
      expect(await s.getWorkerByKeyHash('k2')).toBeNull();
      expect(await s.getBuild(done.id)).toMatchObject({ workerId: 'w2', status: 'succeeded' });
      expect((await s.listAttempts(done.id)).map((a) => a.workerId)).toEqual(['w2']);
      // A removed worker claims nothing; and the foreign keys hold again after the removal (a
      // session for a user who is not there is refused).
      await s.createBuild(build());
      expect(await s.claimBuild(claimReq('w2', 8004))).toBeNull();
      expect(await s.countQueuedBuilds()).toBe(1);
      await expect(s.createSession({ idHash: 'fk-check', userName: 'nobody', createdAt: 8004, expiresAt: 9000 })).rejects.toThrow();
      // A drained worker claims nothing until resumed.
      expect(await s.setWorkerDrainRequested('w1', true)).toBe(true);
      expect(await s.claimBuild(claimReq('w1', 8005))).toBeNull();
      expect(await s.setWorkerDrainRequested('w1', false)).toBe(true);
      const resumed = (await s.claimBuild(claimReq('w1', 8006)))!;
      await s.finishAttempt({ buildId: resumed.build.id, lease: resumed.attempt.lease, now: 8007, status: 'succeeded', failureReason: null, exitCode: 0, message: null, requeue: false });
      expect(await s.deleteWorker('w1')).toBe('removed');
      expect(await s.listWorkers()).toEqual([]);
    });

    it('has a test for every port method', () => {
      const missing = Object.entries(PORT_METHODS).flatMap(([method, tests]) => (tests.length === 0 ? [`${method}: no test`] : tests.filter((t) => !registered.has(t)).map((t) => `${method}: ${t}`)));
      expect(missing).toEqual([]);
    });
  });
}
