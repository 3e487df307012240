/**
 * Every HTTP route of the controller, in one table: its method, its path in Fastify's syntax
 * (`:id` a parameter, a final `*` a wildcard that may hold `/`), who may call it, and the TypeBox
 * schemas of its request (from schemas.ts) and, where there is one, of its answer.
 *
 * The controller registers its routes from this table (`src/controller/route.ts`, which refuses
 * at start any route that is not in it), the agent and the CLI build their calls from it with
 * `pathOf`, and a test checks docs/api.md against it. A new route is a new row here first.
 */
import type { Static, TSchema } from 'typebox';
import {
  ArtifactList,
  ArtifactParams,
  ArtifactStored,
  ArtifactUploadHeaders,
  BuildList,
  CreateWorkerResponse,
  WorkerHeartbeatResponse,
  WorkerList,
  BuildHeartbeatBody,
  BuildHeartbeatResponse,
  BuildIdParams,
  BuildView,
  CancelBody,
  CompleteBody,
  CreateBuildBody,
  CreateWorkerBody,
  HealthResponse,
  ListBuildsQuery,
  LogChunkBody,
  LogChunkResponse,
  LogQuery,
  PhaseBody,
  PollBody,
  PollResponse,
  PruneBody,
  PruneResult,
  WorkerHeartbeatBody,
  WorkerIdParams,
  WebhookAnswer,
  DeliveryList,
  ListDeliveriesQuery,
  WorkerView,
  CheckoutToken,
  CheckoutTokenBody,
  CreateProjectBody,
  ProjectIdParams,
  ProjectList,
  ProjectSecretParams,
  ProjectView,
  PutSecretBody,
  RerunBody,
  SecretStored,
  AuditList,
  CreatedToken,
  CreatedUser,
  CreateTokenBody,
  CreateUserBody,
  ListAuditQuery,
  LogStreamQuery,
  MeView,
  SessionsRevoked,
  SetPasswordBody,
  SetUserRoleBody,
  TokenIdParams,
  TokenList,
  UserList,
  UserNameParams,
  UserView,
} from './schemas.ts';
import { Type } from 'typebox';
import type { HttpMethod } from './route-paths.ts';

/**
 * Who may call a route (see docs/api.md, Credentials, and docs/access.md). The controller checks
 * the kind of credential and its role before the handler runs; which worker, build or token a
 * caller may act on beyond that is decided with the records (the lease, the build's worker, the
 * token's owner).
 * - `public`: no credential (`/health`, `/metrics`, the sign-in page, the dashboard's assets);
 * - `viewer` / `operator` / `admin`: a person or script of at least that role — the admin key
 *   (`--api-key`, counts as admin), an API token (`ewt_…`, its role capped by its owner's), or a
 *   dashboard session (cookie; a request that changes something must carry its CSRF token);
 * - `own-worker`: the key of the worker named in the path (`/workers/:id/…`);
 * - `own-worker-or-viewer`: that, or a viewer (or higher);
 * - `holding-worker`: a worker key — the worker holding the build, as its lease proves;
 * - `build-token-or-worker`: the build's token (the in-VM monitor) or its worker's key;
 * - `github-signature`: no key at all — a Bearer key of any kind counts for nothing; the route's
 *   own handler verifies the GitHub webhook signature on the raw body before anything else.
 */
export type AuthScope =
  | 'public'
  | 'viewer'
  | 'operator'
  | 'admin'
  | 'own-worker'
  | 'own-worker-or-viewer'
  | 'holding-worker'
  | 'build-token-or-worker'
  | 'github-signature';


/** The request schemas, as Fastify takes them. */
export interface RouteSchema {
  params?: TSchema;
  querystring?: TSchema;
  body?: TSchema;
  headers?: TSchema;
}

export interface RouteSpec {
  method: HttpMethod;
  path: string;
  auth: AuthScope;
  schema: RouteSchema;
  /** The answer's status when it succeeds. */
  okStatus: number;
  /**
   * Other statuses that are success too: a poll's 204 (nothing to do), an artifact download's
   * 302 (the controller keeps artifacts in S3: `Location` is a presigned URL to fetch without
   * the key).
   */
  alsoOk?: readonly number[];
  /** The answer's JSON body, for readers and clients; not given to Fastify (it would filter fields). None: text or bytes. */
  answer?: TSchema;
  /**
   * A dashboard page or form (HTML, src/controller/ui/): a caller with no credential (or an
   * expired session) is sent to `/login?next=…` (303) instead of a JSON 401, and other errors are
   * answered as an HTML page. Forms post `application/x-www-form-urlencoded` and answer 303.
   */
  page?: true;
}

/** The type of a route's JSON answer (`unknown` for one that answers text or bytes). */
export type AnswerOf<R extends RouteSpec> = R['answer'] extends TSchema ? Static<R['answer']> : unknown;

/** A body with no fields: `{}` or none. */
const EmptyBody = Type.Object({}, { additionalProperties: false });
const UI_NEXT_PATTERN = '^/(?![/\\\\])[A-Za-z0-9/._~?&=%+-]{0,512}$';
/** Where to go after signing in: a path on this site only (`/x`, never `//host` or `/\\host`). */
const UiNextQuery = Type.Object({ next: Type.Optional(Type.String({ pattern: UI_NEXT_PATTERN })) }, { additionalProperties: false });
/** Every dashboard form carries the session's CSRF token. */
const UiForm = Type.Object({ _csrf: Type.String({ maxLength: 128 }) }, { additionalProperties: false });
const UiSignInForm = Type.Object(
  { name: Type.String({ maxLength: 64 }), password: Type.String({ maxLength: 1024 }) },
  { additionalProperties: false },
);
const UiCreateTokenForm = Type.Object(
  { _csrf: Type.String({ maxLength: 128 }), name: Type.String({ maxLength: 64 }), role: Type.String({ maxLength: 16 }), expiresInDays: Type.Optional(Type.String({ maxLength: 4 })) },
  { additionalProperties: false },
);
const UiBuildsQuery = Type.Object(
  {
    status: Type.Optional(Type.String({ maxLength: 32 })),
    repo: Type.Optional(Type.String({ maxLength: 200 })),
    ref: Type.Optional(Type.String({ maxLength: 260 })),
    /** `rows`: only the table's rows (htmx's live refresh). */
    fragment: Type.Optional(Type.Literal('rows')),
  },
  { additionalProperties: false },
);
const UiLogQuery = Type.Object({ before: Type.String({ pattern: '^[0-9]{1,12}$' }) }, { additionalProperties: false });
/** The dashboard's assets by name (a fixed list: see src/controller/ui/assets.ts). */
const UiAssetParams = Type.Object({ file: Type.String({ pattern: '^[a-z0-9][a-z0-9.-]{0,63}$' }) }, { additionalProperties: false });

export const ROUTES = {
  health: { method: 'GET', path: '/health', auth: 'public', schema: {}, okStatus: 200, answer: HealthResponse },
  metrics: { method: 'GET', path: '/metrics', auth: 'public', schema: {}, okStatus: 200 },

  // ---- people and scripts (role: viewer reads, operator acts on builds and workers, admin manages) ----
  createWorker: { method: 'POST', path: '/api/v1/workers', auth: 'admin', schema: { body: CreateWorkerBody }, okStatus: 201, answer: CreateWorkerResponse },
  listWorkers: { method: 'GET', path: '/api/v1/workers', auth: 'viewer', schema: {}, okStatus: 200, answer: WorkerList },
  submitBuild: { method: 'POST', path: '/api/v1/builds', auth: 'operator', schema: { body: CreateBuildBody }, okStatus: 201, answer: BuildView },
  listBuilds: { method: 'GET', path: '/api/v1/builds', auth: 'viewer', schema: { querystring: ListBuildsQuery }, okStatus: 200, answer: BuildList },
  getBuild: { method: 'GET', path: '/api/v1/builds/:id', auth: 'viewer', schema: { params: BuildIdParams }, okStatus: 200, answer: BuildView },
  cancelBuild: { method: 'POST', path: '/api/v1/builds/:id/cancel', auth: 'operator', schema: { params: BuildIdParams, body: CancelBody }, okStatus: 200, answer: BuildView },
  readLog: { method: 'GET', path: '/api/v1/builds/:id/logs', auth: 'viewer', schema: { params: BuildIdParams, querystring: LogQuery }, okStatus: 200 },
  listArtifacts: { method: 'GET', path: '/api/v1/builds/:id/artifacts', auth: 'viewer', schema: { params: BuildIdParams }, okStatus: 200, answer: ArtifactList },
  downloadArtifact: { method: 'GET', path: '/api/v1/builds/:id/artifacts/*', auth: 'viewer', schema: { params: ArtifactParams }, okStatus: 200, alsoOk: [302] },
  rerunBuild: { method: 'POST', path: '/api/v1/builds/:id/rerun', auth: 'operator', schema: { params: BuildIdParams, body: RerunBody }, okStatus: 201, answer: BuildView },
  prune: { method: 'POST', path: '/api/v1/admin/prune', auth: 'admin', schema: { body: PruneBody }, okStatus: 200, answer: PruneResult },

  // ---- worker ----
  getWorker: { method: 'GET', path: '/api/v1/workers/:id', auth: 'own-worker-or-viewer', schema: { params: WorkerIdParams }, okStatus: 200, answer: WorkerView },
  poll: { method: 'POST', path: '/api/v1/workers/:id/poll', auth: 'own-worker', schema: { params: WorkerIdParams, body: PollBody }, okStatus: 200, alsoOk: [204], answer: PollResponse },
  workerHeartbeat: {
    method: 'POST',
    path: '/api/v1/workers/:id/heartbeat',
    auth: 'own-worker',
    schema: { params: WorkerIdParams, body: WorkerHeartbeatBody },
    okStatus: 200,
    answer: WorkerHeartbeatResponse,
  },
  buildHeartbeat: {
    method: 'POST',
    path: '/api/v1/builds/:id/heartbeat',
    auth: 'build-token-or-worker',
    schema: { params: BuildIdParams, body: BuildHeartbeatBody },
    okStatus: 200,
    answer: BuildHeartbeatResponse,
  },
  phase: { method: 'POST', path: '/api/v1/builds/:id/phase', auth: 'holding-worker', schema: { params: BuildIdParams, body: PhaseBody }, okStatus: 200, answer: BuildView },
  appendLog: { method: 'POST', path: '/api/v1/builds/:id/logs', auth: 'holding-worker', schema: { params: BuildIdParams, body: LogChunkBody }, okStatus: 200, answer: LogChunkResponse },
  complete: { method: 'POST', path: '/api/v1/builds/:id/complete', auth: 'holding-worker', schema: { params: BuildIdParams, body: CompleteBody }, okStatus: 200, answer: BuildView },
  checkoutToken: {
    method: 'POST',
    path: '/api/v1/builds/:id/checkout-token',
    auth: 'holding-worker',
    schema: { params: BuildIdParams, body: CheckoutTokenBody },
    okStatus: 200,
    answer: CheckoutToken,
  },
  uploadArtifact: {
    method: 'PUT',
    path: '/api/v1/builds/:id/artifacts/*',
    auth: 'holding-worker',
    schema: { params: ArtifactParams, headers: ArtifactUploadHeaders },
    okStatus: 201,
    answer: ArtifactStored,
  },

  // ---- GitHub ----
  // A ping answers 200 `{ok: true}`; okStatus is the answer to every other event.
  githubWebhook: { method: 'POST', path: '/webhooks/github', auth: 'github-signature', schema: {}, okStatus: 202, answer: WebhookAnswer },
  createProject: { method: 'POST', path: '/api/v1/projects', auth: 'admin', schema: { body: CreateProjectBody }, okStatus: 201, answer: ProjectView },
  listProjects: { method: 'GET', path: '/api/v1/projects', auth: 'viewer', schema: {}, okStatus: 200, answer: ProjectList },
  getProject: { method: 'GET', path: '/api/v1/projects/:id', auth: 'viewer', schema: { params: ProjectIdParams }, okStatus: 200, answer: ProjectView },
  // 204, no body: the project, its secrets and its pending reports go; its builds stay.
  deleteProject: { method: 'DELETE', path: '/api/v1/projects/:id', auth: 'admin', schema: { params: ProjectIdParams }, okStatus: 204 },
  putProjectSecret: {
    method: 'PUT',
    path: '/api/v1/projects/:id/secrets/:name',
    auth: 'admin',
    schema: { params: ProjectSecretParams, body: PutSecretBody },
    okStatus: 200,
    answer: SecretStored,
  },
  deleteProjectSecret: { method: 'DELETE', path: '/api/v1/projects/:id/secrets/:name', auth: 'admin', schema: { params: ProjectSecretParams }, okStatus: 204 },
  listDeliveries: { method: 'GET', path: '/api/v1/github/deliveries', auth: 'viewer', schema: { querystring: ListDeliveriesQuery }, okStatus: 200, answer: DeliveryList },
  // ---- access (docs/access.md) ----
  me: { method: 'GET', path: '/api/v1/me', auth: 'viewer', schema: {}, okStatus: 200, answer: MeView },
  createUser: { method: 'POST', path: '/api/v1/users', auth: 'admin', schema: { body: CreateUserBody }, okStatus: 201, answer: CreatedUser },
  listUsers: { method: 'GET', path: '/api/v1/users', auth: 'admin', schema: {}, okStatus: 200, answer: UserList },
  // 204: the user, their sessions and their tokens go; what they did stays in the audit log.
  deleteUser: { method: 'DELETE', path: '/api/v1/users/:name', auth: 'admin', schema: { params: UserNameParams }, okStatus: 204 },
  setUserPassword: { method: 'PUT', path: '/api/v1/users/:name/password', auth: 'admin', schema: { params: UserNameParams, body: SetPasswordBody }, okStatus: 200, answer: CreatedUser },
  // A lower role ends the user's sessions; their tokens act with no more than it at once.
  setUserRole: { method: 'PUT', path: '/api/v1/users/:name/role', auth: 'admin', schema: { params: UserNameParams, body: SetUserRoleBody }, okStatus: 200, answer: UserView },
  revokeUserSessions: { method: 'DELETE', path: '/api/v1/users/:name/sessions', auth: 'admin', schema: { params: UserNameParams }, okStatus: 200, answer: SessionsRevoked },
  // A token is made by a signed-in user (their own) or with the admin key; never by another token.
  createToken: { method: 'POST', path: '/api/v1/tokens', auth: 'viewer', schema: { body: CreateTokenBody }, okStatus: 201, answer: CreatedToken },
  // An admin sees every token; a signed-in user their own; a token below admin only itself.
  listTokens: { method: 'GET', path: '/api/v1/tokens', auth: 'viewer', schema: {}, okStatus: 200, answer: TokenList },
  // 204; an admin revokes any token, a signed-in user their own, a token below admin itself (another's is a 404).
  revokeToken: { method: 'DELETE', path: '/api/v1/tokens/:id', auth: 'viewer', schema: { params: TokenIdParams }, okStatus: 204 },
  listAudit: { method: 'GET', path: '/api/v1/audit', auth: 'admin', schema: { querystring: ListAuditQuery }, okStatus: 200, answer: AuditList },
  drainWorker: { method: 'POST', path: '/api/v1/workers/:id/drain', auth: 'operator', schema: { params: WorkerIdParams, body: EmptyBody }, okStatus: 200, answer: WorkerView },
  resumeWorker: { method: 'POST', path: '/api/v1/workers/:id/resume', auth: 'operator', schema: { params: WorkerIdParams, body: EmptyBody }, okStatus: 200, answer: WorkerView },
  // 204; 409 WORKER_BUSY while it holds active builds. Its key stops working at once.
  deleteWorker: { method: 'DELETE', path: '/api/v1/workers/:id', auth: 'admin', schema: { params: WorkerIdParams }, okStatus: 204 },
  // text/event-stream: `log` events (id: the byte offset after the chunk; data: the chunk as a JSON string), `status` events, and `end`.
  streamLog: { method: 'GET', path: '/api/v1/builds/:id/logs/stream', auth: 'viewer', schema: { params: BuildIdParams, querystring: LogStreamQuery }, okStatus: 200 },

  // ---- the dashboard (HTML, src/controller/ui/; see `page`) ----
  uiAsset: { method: 'GET', path: '/ui/:file', auth: 'public', schema: { params: UiAssetParams }, okStatus: 200 },
  uiSignInPage: { method: 'GET', path: '/login', auth: 'public', schema: { querystring: UiNextQuery }, okStatus: 200, page: true },
  uiSignIn: { method: 'POST', path: '/login', auth: 'public', schema: { querystring: UiNextQuery, body: UiSignInForm }, okStatus: 303, page: true },
  uiSignOut: { method: 'POST', path: '/logout', auth: 'viewer', schema: { body: UiForm }, okStatus: 303, page: true },
  uiOverview: { method: 'GET', path: '/', auth: 'viewer', schema: {}, okStatus: 200, page: true },
  uiBuilds: { method: 'GET', path: '/builds', auth: 'viewer', schema: { querystring: UiBuildsQuery }, okStatus: 200, page: true },
  uiBuild: { method: 'GET', path: '/builds/:id', auth: 'viewer', schema: { params: BuildIdParams }, okStatus: 200, page: true },
  // An HTML fragment: up to 256 KiB of the log ending at byte `before`, from a line start ("show older").
  uiBuildLog: { method: 'GET', path: '/builds/:id/log', auth: 'viewer', schema: { params: BuildIdParams, querystring: UiLogQuery }, okStatus: 200, page: true },
  uiCancelBuild: { method: 'POST', path: '/builds/:id/cancel', auth: 'operator', schema: { params: BuildIdParams, body: UiForm }, okStatus: 303, page: true },
  uiRerunBuild: { method: 'POST', path: '/builds/:id/rerun', auth: 'operator', schema: { params: BuildIdParams, body: UiForm }, okStatus: 303, page: true },
  uiWorkers: { method: 'GET', path: '/workers', auth: 'viewer', schema: {}, okStatus: 200, page: true },
  uiDrainWorker: { method: 'POST', path: '/workers/:id/drain', auth: 'operator', schema: { params: WorkerIdParams, body: UiForm }, okStatus: 303, page: true },
  uiResumeWorker: { method: 'POST', path: '/workers/:id/resume', auth: 'operator', schema: { params: WorkerIdParams, body: UiForm }, okStatus: 303, page: true },
  uiRemoveWorker: { method: 'POST', path: '/workers/:id/remove', auth: 'admin', schema: { params: WorkerIdParams, body: UiForm }, okStatus: 303, page: true },
  uiQueue: { method: 'GET', path: '/queue', auth: 'viewer', schema: {}, okStatus: 200, page: true },
  uiProjects: { method: 'GET', path: '/projects', auth: 'viewer', schema: {}, okStatus: 200, page: true },
  uiTokens: { method: 'GET', path: '/tokens', auth: 'viewer', schema: {}, okStatus: 200, page: true },
  // Answers 200 with the page showing the new token's secret once (not a redirect: the secret must not travel in a URL).
  uiCreateToken: { method: 'POST', path: '/tokens', auth: 'viewer', schema: { body: UiCreateTokenForm }, okStatus: 200, page: true },
  uiRevokeToken: { method: 'POST', path: '/tokens/:id/revoke', auth: 'viewer', schema: { params: TokenIdParams, body: UiForm }, okStatus: 303, page: true },
  uiAudit: { method: 'GET', path: '/audit', auth: 'admin', schema: { querystring: ListAuditQuery }, okStatus: 200, page: true },
} as const satisfies Record<string, RouteSpec>;

export type RouteName = keyof typeof ROUTES;

// The schema-free half (also what the agent imports, without TypeBox): see route-paths.ts.
export { pathOf, type HttpMethod, type PathParams } from './route-paths.ts';
