/**
 * The wire format of the HTTP API as TypeBox schemas: one definition serves request validation
 * in the controller, the static types both processes use, and the tests. Every object refuses
 * unknown fields and every string and array is bounded. Limits on stored text are in bytes of
 * UTF-8 (`maxBytes`, a keyword the controller adds to its validator), not characters.
 */
import { Type, type Static, type TSchema } from 'typebox';
import {
  BUILD_ID_PATTERN,
  BUILD_PHASES,
  ARTIFACT_NAME_MAX_BYTES,
  ARTIFACT_PATTERN,
  ARTIFACT_PROBLEM_REASONS,
  BUILD_STATUSES,
  ENV_NAME_PATTERN,
  FAILURE_REASONS,
  LABEL_PATTERN,
  WORKER_ID_PATTERN,
  WORKER_STATUSES,
  WAITING_REASONS,
  PIPELINE_PATH_PATTERN,
  PROJECT_ID_PATTERN,
  REPO_PATTERN,
  SECRET_NAME_PATTERN,
  SHA_PATTERN,
  SOURCE_EVENTS,
  GIT_REF_PATTERN,
  ROLES,
  USER_NAME_PATTERN,
  TOKEN_NAME_PATTERN,
  TOKEN_ID_PATTERN,
  PASSWORD_MIN_LENGTH,
  AUDIT_ACTIONS,
} from './domain.ts';


/** A string of at most `bytes` bytes of UTF-8 (`maxLength` is a cheap first bound: a character is at least a byte). */
const textOfBytes = (bytes: number, options: { minLength?: number } = {}) => Type.String({ ...options, maxLength: bytes, maxBytes: bytes });

const strict = <P extends Record<string, TSchema>>(props: P) => Type.Object(props, { additionalProperties: false });

export const LIMITS = {
  maxSteps: 100,
  maxStepRunBytes: 64 * 1024,
  maxEnvVars: 200,
  maxEnvValueBytes: 32 * 1024,
  maxLabels: 32,
  maxRunningBuildsListed: 16,
  maxLogChunkBytes: 1024 * 1024,
  maxStepNameBytes: 200,
  maxMessageBytes: 4096,
  maxTimeoutS: 7 * 24 * 3600,
  maxAttempts: 5,
  maxPollWaitS: 25,
  maxArtifactPatterns: 20,
  /** Problems one completion may report: one per pattern, plus files of a pattern that matched many. */
  maxArtifactProblems: 200,
  /** Request bodies, in bytes: 1 MiB, and 4 MiB for log chunks (JSON escaping grows them). */
  bodyBytes: 1024 * 1024,
  logBodyBytes: 4 * 1024 * 1024,
} as const;

export const WorkerId = Type.String({ pattern: WORKER_ID_PATTERN });
export const BuildId = Type.String({ pattern: BUILD_ID_PATTERN });
export const Labels = Type.Array(Type.String({ pattern: LABEL_PATTERN }), { maxItems: LIMITS.maxLabels, uniqueItems: true });
export const BuildStatusSchema = Type.Enum(BUILD_STATUSES);
export const FailureReasonSchema = Type.Enum(FAILURE_REASONS);
export const WorkerStatusSchema = Type.Enum(WORKER_STATUSES);
/** A git ref in full (`refs/heads/main`). */
export const GitRef = Type.String({ maxLength: 255, pattern: GIT_REF_PATTERN });
export const Token = Type.String({ minLength: 16, maxLength: 128, pattern: '^[A-Za-z0-9_-]+$' });

export const Step = strict({
  name: textOfBytes(LIMITS.maxStepNameBytes, { minLength: 1 }),
  run: textOfBytes(LIMITS.maxStepRunBytes, { minLength: 1 }),
});
export type Step = Static<typeof Step>;

export const Env = Type.Record(Type.String({ pattern: ENV_NAME_PATTERN }), textOfBytes(LIMITS.maxEnvValueBytes), {
  maxProperties: LIMITS.maxEnvVars,
  additionalProperties: false,
});

// ---- admin: workers ----
export const CreateWorkerBody = strict({ id: WorkerId, labels: Type.Optional(Labels) });
export type CreateWorkerBody = Static<typeof CreateWorkerBody>;

export const WorkerView = Type.Object({
  id: Type.String(),
  labels: Type.Array(Type.String()),
  status: WorkerStatusSchema,
  createdAt: Type.String(),
  lastSeenAt: Type.Union([Type.String(), Type.Null()]),
  slotsTotal: Type.Union([Type.Integer(), Type.Null()]),
  runningBuilds: Type.Array(Type.String()),
  /** An operator drained it from the controller (`POST …/drain`): it is handed no new build until resumed. Its status is `draining` (or `offline`). */
  drainRequested: Type.Boolean(),
});
export type WorkerView = Static<typeof WorkerView>;
export const WorkerList = Type.Object({ workers: Type.Array(WorkerView) });
/** An enrolment's answer: the worker's key, shown this once. */
export const CreateWorkerResponse = Type.Object({ id: Type.String(), labels: Type.Array(Type.String()), apiKey: Type.String() });

// ---- admin: builds ----
/**
 * An artifact pattern: a path relative to the build's work directory, `*` and `?` allowed
 * (expanded by the VM's shell), no `..`, no leading `/`.
 */
export const ArtifactPattern = Type.String({ pattern: ARTIFACT_PATTERN, maxLength: ARTIFACT_NAME_MAX_BYTES });
/**
 * A declared artifact: a pattern, or `{path, required}` — a required one that matches nothing
 * or cannot be stored fails the build (`artifact_missing`) even when its steps passed.
 */
export const ArtifactSpec = Type.Union([ArtifactPattern, strict({ path: ArtifactPattern, required: Type.Optional(Type.Boolean()) })]);
export type ArtifactSpec = Static<typeof ArtifactSpec>;
/** A declared artifact as stored and shown: what was submitted (a string or an object). */
const ArtifactSpecView = Type.Union([Type.String(), Type.Object({ path: Type.String(), required: Type.Optional(Type.Boolean()) })]);

/** A declared artifact that was not stored, recorded on the build by the attempt that collected. */
export const ArtifactProblem = strict({
  /** The declared pattern. */
  pattern: Type.String({ maxLength: ARTIFACT_NAME_MAX_BYTES }),
  /** The matched file, when the problem is one file's (not for `no_match`). */
  name: Type.Optional(Type.String({ maxLength: 4 * ARTIFACT_NAME_MAX_BYTES })),
  reason: Type.Enum(ARTIFACT_PROBLEM_REASONS),
  required: Type.Boolean(),
  message: Type.String({ maxLength: 1024 }),
});
export type ArtifactProblem = Static<typeof ArtifactProblem>;

/**
 * How a GitHub build checks its commit out, as its pipeline file asks: `submodules` false (the
 * default), true (the first level) or `recursive`; `lfs` fetches Git LFS files.
 */
export const CheckoutOptions = strict({
  submodules: Type.Union([Type.Boolean(), Type.Literal('recursive')]),
  lfs: Type.Boolean(),
});
export type CheckoutOptions = Static<typeof CheckoutOptions>;

/**
 * Where a build came from, when GitHub started it (null for a build submitted through the API):
 * what `GET /api/v1/builds?repo=&ref=&sha=` filters on and what its commit status names.
 */
export const BuildSource = Type.Object({
  projectId: Type.String(),
  /** `owner/name` as the project spells it. */
  repo: Type.String(),
  /** The build's name in the pipeline file (the key under `builds:`); the commit status context is `expo-worker/<name>`. */
  name: Type.String(),
  event: Type.Enum(SOURCE_EVENTS),
  /** The full ref built: `refs/heads/<branch>`, `refs/tags/<tag>`, or `refs/pull/<n>/head`. */
  ref: Type.String(),
  sha: Type.String(),
  /** The pull request's number (pull_request events only). */
  prNumber: Type.Union([Type.Integer(), Type.Null()]),
  /** The `X-GitHub-Delivery` the build came from (a rerun keeps its original's). */
  deliveryId: Type.Union([Type.String(), Type.Null()]),
  /** The build this one reruns, when it is a rerun. */
  rerunOf: Type.Union([Type.String(), Type.Null()]),
  /** Where the VM clones from: the event's `repository.clone_url`. */
  cloneUrl: Type.String(),
  checkout: CheckoutOptions,
});
export type BuildSource = Static<typeof BuildSource>;

export const CreateBuildBody = strict({
  steps: Type.Array(Step, { minItems: 1, maxItems: LIMITS.maxSteps }),
  artifacts: Type.Optional(Type.Array(ArtifactSpec, { maxItems: LIMITS.maxArtifactPatterns, uniqueItems: true })),
  env: Type.Optional(Env),
  /**
   * Env values that are secrets: never shown by the API, sealed at rest until the build ends
   * and then erased, masked as `***` in the build's log. A name may not also be in `env`.
   */
  secretEnv: Type.Optional(Env),
  labels: Type.Optional(Labels),
  timeoutS: Type.Optional(Type.Integer({ minimum: 1, maximum: LIMITS.maxTimeoutS })),
  maxAttempts: Type.Optional(Type.Integer({ minimum: 1, maximum: LIMITS.maxAttempts })),
});
export type CreateBuildBody = Static<typeof CreateBuildBody>;

/** Why a queued build has not been claimed yet (only on queued builds). */
export const WaitingView = Type.Object({ reason: Type.Enum(WAITING_REASONS), message: Type.String() });
export type WaitingView = Static<typeof WaitingView>;

/**
 * When one step of the current (or last) attempt started, and how long it took: until the next
 * started step's start, or the build's end. `durationS` is null while the step runs, and both are
 * null for a step that has not started (or whose start the agent did not report).
 */
export const StepTimeView = Type.Object({
  startedAt: Type.Union([Type.String(), Type.Null()]),
  durationS: Type.Union([Type.Number({ minimum: 0 }), Type.Null()]),
});
export type StepTimeView = Static<typeof StepTimeView>;

export const BuildView = Type.Object({
  id: Type.String(),
  status: BuildStatusSchema,
  failureReason: Type.Union([FailureReasonSchema, Type.Null()]),
  message: Type.Union([Type.String(), Type.Null()]),
  exitCode: Type.Union([Type.Integer(), Type.Null()]),
  workerId: Type.Union([Type.String(), Type.Null()]),
  progress: Type.Union([Type.Integer(), Type.Null()]),
  attempt: Type.Integer(),
  maxAttempts: Type.Integer(),
  timeoutS: Type.Integer(),
  labels: Type.Array(Type.String()),
  steps: Type.Array(Step),
  /** One entry per step, in the steps' order (see `StepTimeView`). */
  stepTimes: Type.Array(StepTimeView),
  artifacts: Type.Array(ArtifactSpecView),
  /** Declared artifacts that were not stored (matched nothing, failed to upload…), as the last collecting attempt reported them. */
  artifactProblems: Type.Array(ArtifactProblem),
  /** Names only: values may be secrets and are handed to the worker alone. */
  envNames: Type.Array(Type.String()),
  /** Names of the secret env values; their values are never shown. */
  secretEnvNames: Type.Array(Type.String()),
  cancelRequested: Type.Boolean(),
  logBytes: Type.Integer(),
  /** Where GitHub-started builds came from; null for builds submitted through the API. */
  source: Type.Union([BuildSource, Type.Null()]),
  createdAt: Type.String(),
  assignedAt: Type.Union([Type.String(), Type.Null()]),
  startedAt: Type.Union([Type.String(), Type.Null()]),
  finishedAt: Type.Union([Type.String(), Type.Null()]),
  lastHeartbeatAt: Type.Union([Type.String(), Type.Null()]),
  waiting: Type.Optional(WaitingView),
});
export type BuildView = Static<typeof BuildView>;
export const BuildList = Type.Object({ builds: Type.Array(BuildView) });

export const ListBuildsQuery = strict({
  status: Type.Optional(BuildStatusSchema),
  limit: Type.Optional(Type.String({ pattern: '^(?:[1-9][0-9]{0,2}|1000)$' })),
  /** Only builds from this repository (`owner/name`, any case). */
  repo: Type.Optional(Type.String({ pattern: REPO_PATTERN })),
  /** Only builds of this git ref (`refs/heads/main`, `refs/tags/v1`, `refs/pull/7/head`), exactly. */
  ref: Type.Optional(GitRef),
  /** Only builds of this commit. */
  sha: Type.Optional(Type.String({ pattern: SHA_PATTERN })),
});
/**
 * `offset`: the first byte to read (default 0). `limit`: at most this many bytes (default: to the
 * end); the answer may stop short of it so as not to cut a UTF-8 character. See `readLog`.
 */
export const LogQuery = strict({ offset: Type.Optional(Type.String({ pattern: '^[0-9]{1,12}$' })), limit: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,8}$' })) });
/**
 * Where a log stream starts: the `Last-Event-ID` header when sent (a reconnect), else `offset`,
 * else the last `tail` bytes (from the first line start in them), else byte 0.
 */
export const LogStreamQuery = strict({ offset: Type.Optional(Type.String({ pattern: '^[0-9]{1,12}$' })), tail: Type.Optional(Type.String({ pattern: '^[0-9]{1,9}$' })) });

export const BuildIdParams = strict({ id: BuildId });
/** Cancel takes no fields; an empty body or `{}`. */
export const CancelBody = strict({});
/** `*`: the artifact's name, a relative path (a wildcard route: names hold `/`); checked by `artifactNameProblem`. */
export const ArtifactParams = strict({ id: BuildId, '*': Type.String({ minLength: 1 }) });
/** Headers of an artifact upload (other headers are allowed: this is HTTP). */
export const ArtifactUploadHeaders = Type.Object({ 'x-expo-lease': Token });

export const ArtifactView = Type.Object({
  name: Type.String(),
  attempt: Type.Integer(),
  sizeBytes: Type.Integer(),
  sha256: Type.String(),
  createdAt: Type.String(),
});
export type ArtifactView = Static<typeof ArtifactView>;
/** What an upload answers: the artifact as stored. */
export const ArtifactStored = Type.Object({ name: Type.String(), attempt: Type.Integer(), sizeBytes: Type.Integer(), sha256: Type.String() });
export const ArtifactList = Type.Object({ artifacts: Type.Array(ArtifactView), problems: Type.Array(ArtifactProblem) });
export const WorkerIdParams = strict({ id: WorkerId });

// ---- admin: retention ----
export const PruneBody = strict({
  /** Final builds that finished more than this many days ago go. Default: the controller's --retention-days. */
  olderThanDays: Type.Optional(Type.Number({ minimum: 0, maximum: 36500 })),
  /** Count only; delete nothing. Default false. */
  dryRun: Type.Optional(Type.Boolean()),
});
export type PruneBody = Static<typeof PruneBody>;

export const PruneResult = Type.Object({
  dryRun: Type.Boolean(),
  olderThanDays: Type.Number(),
  /** Builds that finished before this time were (or would be) deleted. */
  cutoff: Type.String(),
  builds: Type.Integer(),
  logBytes: Type.Integer(),
  artifacts: Type.Integer(),
  artifactBytes: Type.Integer(),
  /** Recorded GitHub webhook deliveries received before the cutoff. */
  webhookDeliveries: Type.Integer(),
});
export type PruneResult = Static<typeof PruneResult>;

// ---- GitHub webhooks ----
export const DELIVERY_OUTCOMES = ['pending', 'built', 'ignored', 'failed'] as const;
export type DeliveryOutcome = (typeof DELIVERY_OUTCOMES)[number];
/** The answer to a delivery: a ping is `{ok: true}`; any other event is accepted (or was already). */
export const WebhookAnswer = Type.Union([
  Type.Object({ ok: Type.Literal(true) }),
  Type.Object({ accepted: Type.Literal(true), delivery: Type.String(), duplicate: Type.Optional(Type.Literal(true)) }),
]);
export type WebhookAnswer = Static<typeof WebhookAnswer>;

export const ListDeliveriesQuery = strict({ limit: Type.Optional(Type.String({ pattern: '^(?:[1-9][0-9]{0,2}|1000)$' })) });

/** A recorded delivery: what it was and what became of it (never its payload). */
export const DeliveryView = Type.Object({
  id: Type.String(),
  event: Type.String(),
  action: Type.Union([Type.String(), Type.Null()]),
  repository: Type.Union([Type.String(), Type.Null()]),
  receivedAt: Type.String(),
  /** `pending` until it is worked on; then `built` (builds were made), `ignored` (nothing to build) or `failed` (it should have built and could not). */
  outcome: Type.Enum(DELIVERY_OUTCOMES),
  reason: Type.String(),
  /** The builds the delivery made. */
  builds: Type.Array(Type.String()),
});
export type DeliveryView = Static<typeof DeliveryView>;
export const DeliveryList = Type.Object({ deliveries: Type.Array(DeliveryView) });

// ---- projects ----
export const ProjectId = Type.String({ pattern: PROJECT_ID_PATTERN });
export const ProjectIdParams = strict({ id: ProjectId });
export const SecretName = Type.String({ pattern: SECRET_NAME_PATTERN });
export const ProjectSecretParams = strict({ id: ProjectId, name: SecretName });

export const CreateProjectBody = strict({
  /** The GitHub repository, `owner/name`; one project per repository (any case). */
  repo: Type.String({ pattern: REPO_PATTERN }),
  /** Where the pipeline file is in the repository. Default `.expo-worker.yml`. */
  pipelinePath: Type.Optional(Type.String({ pattern: PIPELINE_PATH_PATTERN })),
  /** Whether a push cancels the same branch's builds of older commits. Default true. */
  supersede: Type.Optional(Type.Boolean()),
});
export type CreateProjectBody = Static<typeof CreateProjectBody>;

export const ProjectView = Type.Object({
  id: Type.String(),
  repo: Type.String(),
  pipelinePath: Type.String(),
  supersede: Type.Boolean(),
  /** Names of the stored secrets; their values are never shown. */
  secretNames: Type.Array(Type.String()),
  createdAt: Type.String(),
});
export type ProjectView = Static<typeof ProjectView>;
export const ProjectList = Type.Object({ projects: Type.Array(ProjectView) });

/** A secret's value: write-only, stored sealed, masked in every log of the project's builds. */
export const PutSecretBody = strict({ value: Type.String({ minLength: 1, maxLength: LIMITS.maxEnvValueBytes, maxBytes: LIMITS.maxEnvValueBytes }) });
export type PutSecretBody = Static<typeof PutSecretBody>;
export const SecretStored = Type.Object({ name: Type.String(), updatedAt: Type.String() });

/** What a rerun may say; nothing yet (`{}` or no body). */
export const RerunBody = strict({});

// ---- worker: checkout credential ----
export const CheckoutTokenBody = strict({ lease: Token });
/**
 * The credential for cloning a GitHub build's commit: a repository-scoped token good for
 * `expiresAt` (an App installation token: one hour), or null when none is configured (a public
 * repository is cloned anonymously). Never stored by the controller, never written to a log.
 */
export const CheckoutToken = Type.Object({ token: Type.Union([Type.String(), Type.Null()]), expiresAt: Type.Union([Type.String(), Type.Null()]) });
export type CheckoutToken = Static<typeof CheckoutToken>;

// ---- worker: poll and heartbeat ----
export const PollBody = strict({
  slotsFree: Type.Integer({ minimum: 0, maximum: 2 }),
  slotsTotal: Type.Optional(Type.Integer({ minimum: 1, maximum: 2 })),
  runningBuilds: Type.Array(BuildId, { maxItems: LIMITS.maxRunningBuildsListed }),
  waitS: Type.Optional(Type.Number({ minimum: 0, maximum: LIMITS.maxPollWaitS })),
  draining: Type.Optional(Type.Boolean()),
});
export type PollBody = Static<typeof PollBody>;

export const AssignedBuild = Type.Object({
  id: Type.String(),
  steps: Type.Array(Step),
  env: Type.Record(Type.String(), Type.String()),
  /** Secret env values, for the steps' environment; the agent masks them in the log. */
  secretEnv: Type.Optional(Type.Record(Type.String(), Type.String())),
  labels: Type.Array(Type.String()),
  timeoutS: Type.Integer(),
  attempt: Type.Integer(),
  maxAttempts: Type.Integer(),
  artifacts: Type.Array(ArtifactSpecView),
  /** The byte offset at which this attempt's log chunks start. */
  logOffset: Type.Integer(),
  /**
   * For a GitHub build: the commit to clone into the work directory before the first step. The
   * credential is not here: the agent asks `POST /api/v1/builds/:id/checkout-token` for it just
   * before cloning.
   */
  checkout: Type.Optional(
    Type.Object({ url: Type.String(), sha: Type.String(), ref: Type.String(), submodules: Type.Union([Type.Boolean(), Type.Literal('recursive')]), lfs: Type.Boolean() }),
  ),
});
export type AssignedBuild = Static<typeof AssignedBuild>;

export const PollResponse = Type.Object({ build: AssignedBuild, lease: Type.String(), buildToken: Type.String() });
export type PollResponse = Static<typeof PollResponse>;

export const WorkerHeartbeatBody = strict({
  runningBuilds: Type.Array(BuildId, { maxItems: LIMITS.maxRunningBuildsListed }),
  slotsTotal: Type.Optional(Type.Integer({ minimum: 1, maximum: 2 })),
  draining: Type.Optional(Type.Boolean()),
  /** Wait up to this long (capped at a quarter of the heartbeat timeout) for a cancel or an abort to tell. */
  waitS: Type.Optional(Type.Number({ minimum: 0, maximum: LIMITS.maxPollWaitS })),
});
export type WorkerHeartbeatBody = Static<typeof WorkerHeartbeatBody>;
/** `abort`: listed builds the worker no longer holds; `cancel`: held builds whose cancel was asked for. */
export const WorkerHeartbeatResponse = Type.Object({ status: Type.Literal('ok'), abort: Type.Array(BuildId), cancel: Type.Array(BuildId) });
export type WorkerHeartbeatResponse = Static<typeof WorkerHeartbeatResponse>;

// ---- build liveness and results ----
export const BuildHeartbeatBody = strict({
  workerId: Type.Optional(WorkerId),
  progress: Type.Optional(Type.Integer({ minimum: 0, maximum: 100 })),
});
export type BuildHeartbeatBody = Static<typeof BuildHeartbeatBody>;

export const BuildHeartbeatResponse = Type.Object({ status: BuildStatusSchema, cancelRequested: Type.Boolean() });
export type BuildHeartbeatResponse = Static<typeof BuildHeartbeatResponse>;

/**
 * A phase update. `step` (0-based, below the build's step count; with phase `running` only) says
 * that step of the current attempt starts now; an agent that sends none (older agents) leaves the
 * build's step times empty.
 */
export const PhaseBody = strict({
  lease: Token,
  phase: Type.Enum(BUILD_PHASES),
  step: Type.Optional(Type.Integer({ minimum: 0, maximum: LIMITS.maxSteps - 1 })),
});
export type PhaseBody = Static<typeof PhaseBody>;

export const LogChunkBody = strict({
  lease: Token,
  offset: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }),
  data: textOfBytes(LIMITS.maxLogChunkBytes),
});
export type LogChunkBody = Static<typeof LogChunkBody>;

export const LogChunkResponse = Type.Object({ logBytes: Type.Integer() });

export const CompleteBody = strict({
  lease: Token,
  status: Type.Enum(['succeeded', 'failed', 'cancelled'] as const),
  exitCode: Type.Optional(Type.Integer({ minimum: -1, maximum: 255 })),
  failureReason: Type.Optional(FailureReasonSchema),
  message: Type.Optional(textOfBytes(LIMITS.maxMessageBytes)),
  /** Declared artifacts the attempt could not store; recorded on the build. */
  artifactProblems: Type.Optional(Type.Array(ArtifactProblem, { maxItems: LIMITS.maxArtifactProblems })),
});
export type CompleteBody = Static<typeof CompleteBody>;

export const ErrorBody = Type.Object({
  code: Type.String(),
  message: Type.String(),
  expectedOffset: Type.Optional(Type.Integer()),
});
export type ErrorBody = Static<typeof ErrorBody>;

export const HealthResponse = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('stopping')]),
  running: Type.Boolean(),
  activeJobs: Type.Integer(),
  maxConcurrent: Type.Integer(),
  queueStats: Type.Record(Type.String(), Type.Integer()),
});
export type HealthResponse = Static<typeof HealthResponse>;

// ---- access: users, tokens, audit (docs/access.md) ----
export const RoleSchema = Type.Enum(ROLES);
export const UserName = Type.String({ pattern: USER_NAME_PATTERN, maxLength: 64 });
export const Password = Type.String({ minLength: PASSWORD_MIN_LENGTH, maxLength: 1024, maxBytes: 1024 });
/** `password` absent: the controller makes one (24 random characters) and answers it once. */
export const CreateUserBody = strict({ name: UserName, role: RoleSchema, password: Type.Optional(Password) });
export type CreateUserBody = Static<typeof CreateUserBody>;
export const UserView = Type.Object({
  name: Type.String(),
  role: RoleSchema,
  createdAt: Type.String(),
  lastSignInAt: Type.Union([Type.String(), Type.Null()]),
});
export type UserView = Static<typeof UserView>;
/** A new user, or a reset password: `password` is present only when the controller made it (shown this once). */
export const CreatedUser = Type.Object({ user: UserView, password: Type.Optional(Type.String()) });
export type CreatedUser = Static<typeof CreatedUser>;
export const UserList = Type.Object({ users: Type.Array(UserView) });
export const UserNameParams = strict({ name: UserName });
/** A new password for the user (every session of theirs ends); absent: the controller makes one. */
export const SetPasswordBody = strict({ password: Type.Optional(Password) });
export const SessionsRevoked = Type.Object({ revoked: Type.Integer() });
/** A user's new role; a lower one ends their sessions (their tokens are capped by it at once). */
export const SetUserRoleBody = strict({ role: RoleSchema });
export type SetUserRoleBody = Static<typeof SetUserRoleBody>;

export const TokenName = Type.String({ pattern: TOKEN_NAME_PATTERN, maxLength: 64 });
export const TokenId = Type.String({ pattern: TOKEN_ID_PATTERN });
/** A token's role may not be above its creator's; `expiresInDays` absent: 90 days; 0 is refused (use revoke). */
export const CreateTokenBody = strict({ name: TokenName, role: RoleSchema, expiresInDays: Type.Optional(Type.Integer({ minimum: 1, maximum: 3650 })) });
export type CreateTokenBody = Static<typeof CreateTokenBody>;
export const TokenView = Type.Object({
  id: Type.String(),
  name: Type.String(),
  role: RoleSchema,
  /** The user who made it; null when it was made with the controller's admin key. */
  owner: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String(),
  expiresAt: Type.String(),
  lastUsedAt: Type.Union([Type.String(), Type.Null()]),
  revokedAt: Type.Union([Type.String(), Type.Null()]),
  /** `active`, `expired` or `revoked`. */
  state: Type.Enum(['active', 'expired', 'revoked'] as const),
});
export type TokenView = Static<typeof TokenView>;
/** A new token: its secret (`ewt_…`) is in this answer and nowhere else, ever. */
export const CreatedToken = Type.Object({ token: TokenView, secret: Type.String() });
export type CreatedToken = Static<typeof CreatedToken>;
export const TokenList = Type.Object({ tokens: Type.Array(TokenView) });
export const TokenIdParams = strict({ id: TokenId });

export const AuditEntryView = Type.Object({
  id: Type.Integer(),
  at: Type.String(),
  /** `admin key`, `user alice`, `token ci-release (alice)`, or for a failed sign-in the name tried. */
  actor: Type.String(),
  action: Type.Enum(AUDIT_ACTIONS),
  /** What was acted on: a build id, worker id, user name, token id, project repo… */
  target: Type.String(),
  /** More in words (a cancelled build's reason, a token's role); never a secret. */
  detail: Type.Union([Type.String(), Type.Null()]),
});
export type AuditEntryView = Static<typeof AuditEntryView>;
/** Newest first; `nextBefore` pages on (`?before=`), null on the last page. */
export const AuditList = Type.Object({ entries: Type.Array(AuditEntryView), nextBefore: Type.Union([Type.Integer(), Type.Null()]) });
export const ListAuditQuery = strict({
  limit: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,2}$' })),
  before: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,15}$' })),
  action: Type.Optional(Type.Enum(AUDIT_ACTIONS)),
});

/** Who the caller is (`GET /api/v1/me`). */
export const MeView = Type.Object({
  kind: Type.Enum(['admin-key', 'user', 'token'] as const),
  /** The user's name, or the token's; null for the admin key. */
  name: Type.Union([Type.String(), Type.Null()]),
  role: RoleSchema,
});
export type MeView = Static<typeof MeView>;
export type AuditList = Static<typeof AuditList>;
export type TokenList = Static<typeof TokenList>;
export type UserList = Static<typeof UserList>;
