/** Store records turned into what the API shows: ISO times, env values withheld, worker status derived. */
import type { WorkerStatus } from '../protocol/domain.ts';
import type { ArtifactView, AssignedBuild, BuildView, ProjectView, StepTimeView, WaitingView, WorkerView } from '../protocol/schemas.ts';
import type { ArtifactRecord, BuildRecord, Claim, ProjectRecord, WorkerRecord } from './store/store.ts';

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/**
 * Each step's start and duration: a started step lasts until the next started step's start
 * (a step whose start was not reported is skipped over), or else until the build's end; the
 * step still running has no duration yet. Seconds to a tenth.
 */
export function stepTimes(b: BuildRecord): StepTimeView[] {
  const starts = b.stepStartedAt;
  return starts.map((start, i) => {
    if (start === null) return { startedAt: null, durationS: null };
    const end = starts.slice(i + 1).find((s) => s !== null) ?? b.finishedAt;
    return { startedAt: iso(start), durationS: end === null || end === undefined ? null : Math.max(0, Math.round((end - start) / 100) / 10) };
  });
}

/** A build as the API shows it; `waiting` (why a queued build is not claimed yet) only when given. */
export function buildView(b: BuildRecord, waiting?: WaitingView): BuildView {
  return {
    id: b.id,
    status: b.status,
    failureReason: b.failureReason,
    message: b.message,
    exitCode: b.exitCode,
    workerId: b.workerId,
    progress: b.progress,
    attempt: b.attempt,
    maxAttempts: b.maxAttempts,
    timeoutS: b.timeoutS,
    labels: b.labels,
    steps: b.steps,
    stepTimes: stepTimes(b),
    artifacts: b.artifacts,
    artifactProblems: b.artifactProblems,
    envNames: Object.keys(b.env).sort(),
    secretEnvNames: [...b.secretEnvNames].sort(),
    cancelRequested: b.cancelRequested,
    logBytes: b.logBytes,
    createdAt: iso(b.createdAt)!,
    assignedAt: iso(b.assignedAt),
    startedAt: iso(b.startedAt),
    finishedAt: iso(b.finishedAt),
    lastHeartbeatAt: iso(b.lastHeartbeatAt),
    source: b.source,
    ...(waiting === undefined ? {} : { waiting }),
  };
}

/**
 * A worker's status: never_seen until its agent first polls, offline when the watchdog said so,
 * else draining (its agent is stopping, or an operator drained it), busy (holds a build) or idle.
 */
export function workerStatus(w: WorkerRecord, runningBuilds: readonly string[]): WorkerStatus {
  if (w.lastSeenAt === null) return 'never_seen';
  if (w.offline) return 'offline';
  if (w.draining || w.drainRequested) return 'draining';
  return runningBuilds.length > 0 ? 'busy' : 'idle';
}

export function workerView(w: WorkerRecord, runningBuilds: string[]): WorkerView {
  return {
    id: w.id,
    labels: w.labels,
    status: workerStatus(w, runningBuilds),
    createdAt: iso(w.createdAt)!,
    lastSeenAt: iso(w.lastSeenAt),
    slotsTotal: w.slotsTotal,
    runningBuilds,
    drainRequested: w.drainRequested,
  };
}

export function artifactView(a: ArtifactRecord): ArtifactView {
  return { name: a.name, attempt: a.attempt, sizeBytes: a.sizeBytes, sha256: a.sha256, createdAt: iso(a.createdAt)! };
}

/** What the worker gets: the build, with its secret env values opened for it (`secretEnv`, when any). */
export function assignedBuild(c: Claim, secretEnv: Record<string, string> | null): AssignedBuild {
  const src = c.build.source;
  return {
    id: c.build.id,
    steps: c.build.steps,
    env: c.build.env,
    ...(secretEnv ? { secretEnv } : {}),
    labels: c.build.labels,
    timeoutS: c.build.timeoutS,
    attempt: c.attempt.attempt,
    maxAttempts: c.build.maxAttempts,
    artifacts: c.build.artifacts,
    logOffset: c.attempt.logOffset,
    // A GitHub build clones its commit first; the credential is asked for separately.
    ...(src === null ? {} : { checkout: { url: src.cloneUrl, sha: src.sha, ref: src.ref, submodules: src.checkout.submodules, lfs: src.checkout.lfs } }),
  };
}

/** A project as the API shows it: its secrets by name only. */
export function projectView(p: ProjectRecord): ProjectView {
  return { id: p.id, repo: p.repo, pipelinePath: p.pipelinePath, supersede: p.supersede, secretNames: p.secretNames, createdAt: iso(p.createdAt)! };
}
