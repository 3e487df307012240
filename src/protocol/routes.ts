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
} from './schemas.ts';

/**
 * Who may call a route (see docs/api.md, Credentials). The controller checks the kind of key
 * before the handler runs; which worker or which build a key may act on beyond that is decided
 * with the records (the lease, the build's worker).
 * - `public`: no key (`/health`, `/metrics`);
 * - `admin`: the admin key;
 * - `own-worker`: the key of the worker named in the path (`/workers/:id/…`);
 * - `own-worker-or-admin`: that, or the admin key;
 * - `holding-worker`: a worker key — the worker holding the build, as its lease proves;
 * - `build-token-or-worker`: the build's token (the in-VM monitor) or its worker's key;
 * - `github-signature`: no key at all — a Bearer key of any kind counts for nothing; the route's
 *   own handler verifies the GitHub webhook signature on the raw body before anything else.
 */
export type AuthScope = 'public' | 'admin' | 'own-worker' | 'own-worker-or-admin' | 'holding-worker' | 'build-token-or-worker' | 'github-signature';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'DELETE';

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
  /** The answer's status when it succeeds (a poll may also answer 204). */
  okStatus: number;
  /** The answer's JSON body, for readers and clients; not given to Fastify (it would filter fields). None: text or bytes. */
  answer?: TSchema;
}

/** The type of a route's JSON answer (`unknown` for one that answers text or bytes). */
export type AnswerOf<R extends RouteSpec> = R['answer'] extends TSchema ? Static<R['answer']> : unknown;

export const ROUTES = {
  health: { method: 'GET', path: '/health', auth: 'public', schema: {}, okStatus: 200, answer: HealthResponse },
  metrics: { method: 'GET', path: '/metrics', auth: 'public', schema: {}, okStatus: 200 },

  // ---- admin ----
  createWorker: { method: 'POST', path: '/api/v1/workers', auth: 'admin', schema: { body: CreateWorkerBody }, okStatus: 201, answer: CreateWorkerResponse },
  listWorkers: { method: 'GET', path: '/api/v1/workers', auth: 'admin', schema: {}, okStatus: 200, answer: WorkerList },
  submitBuild: { method: 'POST', path: '/api/v1/builds', auth: 'admin', schema: { body: CreateBuildBody }, okStatus: 201, answer: BuildView },
  listBuilds: { method: 'GET', path: '/api/v1/builds', auth: 'admin', schema: { querystring: ListBuildsQuery }, okStatus: 200, answer: BuildList },
  getBuild: { method: 'GET', path: '/api/v1/builds/:id', auth: 'admin', schema: { params: BuildIdParams }, okStatus: 200, answer: BuildView },
  cancelBuild: { method: 'POST', path: '/api/v1/builds/:id/cancel', auth: 'admin', schema: { params: BuildIdParams, body: CancelBody }, okStatus: 200, answer: BuildView },
  readLog: { method: 'GET', path: '/api/v1/builds/:id/logs', auth: 'admin', schema: { params: BuildIdParams, querystring: LogQuery }, okStatus: 200 },
  listArtifacts: { method: 'GET', path: '/api/v1/builds/:id/artifacts', auth: 'admin', schema: { params: BuildIdParams }, okStatus: 200, answer: ArtifactList },
  downloadArtifact: { method: 'GET', path: '/api/v1/builds/:id/artifacts/*', auth: 'admin', schema: { params: ArtifactParams }, okStatus: 200 },
  rerunBuild: { method: 'POST', path: '/api/v1/builds/:id/rerun', auth: 'admin', schema: { params: BuildIdParams, body: RerunBody }, okStatus: 201, answer: BuildView },
  prune: { method: 'POST', path: '/api/v1/admin/prune', auth: 'admin', schema: { body: PruneBody }, okStatus: 200, answer: PruneResult },

  // ---- worker ----
  getWorker: { method: 'GET', path: '/api/v1/workers/:id', auth: 'own-worker-or-admin', schema: { params: WorkerIdParams }, okStatus: 200, answer: WorkerView },
  poll: { method: 'POST', path: '/api/v1/workers/:id/poll', auth: 'own-worker', schema: { params: WorkerIdParams, body: PollBody }, okStatus: 200, answer: PollResponse },
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
  listProjects: { method: 'GET', path: '/api/v1/projects', auth: 'admin', schema: {}, okStatus: 200, answer: ProjectList },
  getProject: { method: 'GET', path: '/api/v1/projects/:id', auth: 'admin', schema: { params: ProjectIdParams }, okStatus: 200, answer: ProjectView },
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
  listDeliveries: { method: 'GET', path: '/api/v1/github/deliveries', auth: 'admin', schema: { querystring: ListDeliveriesQuery }, okStatus: 200, answer: DeliveryList },
} as const satisfies Record<string, RouteSpec>;

export type RouteName = keyof typeof ROUTES;

/** The names of a path's parameters: `:id` gives `id`, a final `*` gives `*`. */
type ParamNames<P extends string> = P extends `${string}:${infer Name}/${infer Rest}`
  ? Name | ParamNames<`/${Rest}`>
  : P extends `${string}:${infer Name}`
    ? Name
    : P extends `${string}*`
      ? '*'
      : never;

export type PathParams<R extends { path: string }> = Record<ParamNames<R['path']> | (R['path'] extends `${string}*` ? '*' : never), string>;

/**
 * A concrete path for `route`: each `:param` percent-encoded whole (`encodeURIComponent`), the
 * wildcard (an artifact's relative path) encoded segment by segment with its slashes kept, and
 * `query` (undefined values left out) appended.
 */
export function pathOf<R extends RouteSpec>(route: R, params: PathParams<R>, query: Record<string, string | number | undefined> = {}): string {
  const values = params as Record<string, string>;
  const path = route.path
    .replace(/:([A-Za-z0-9_]+)/g, (_m, name: string) => encodeURIComponent(need(values, name, route)))
    .replace(/\*$/, () => need(values, '*', route).split('/').map(encodeURIComponent).join('/'));
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined) search.append(k, String(v));
  const q = search.toString();
  return q === '' ? path : `${path}?${q}`;
}

function need(values: Record<string, string>, name: string, route: RouteSpec): string {
  const v = values[name];
  if (typeof v !== 'string') throw new TypeError(`pathOf ${route.method} ${route.path}: missing parameter '${name}'`);
  return v;
}
