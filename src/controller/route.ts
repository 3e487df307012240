/**
 * Registering routes from the route table (src/protocol/routes.ts): `route(app, ROUTES.x, …)`
 * takes the method, path, request schemas and auth scope from the table, so a route cannot drift
 * from what the clients call and the docs say; `guardRouteTable` refuses at start any route
 * registered around it.
 */
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest, RouteHandlerMethod, RouteShorthandOptions } from 'fastify';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { ExpoError } from '../protocol/errors.ts';
import { ROUTES, type AuthScope, type RouteSpec } from '../protocol/routes.ts';
import { requireAnyWorker, requireRole, requireWorker } from './auth.ts';
import { csrfTokenMatches } from './access-service.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route table's entry this route was registered from (set by `route`, checked by the guard). */
    routeSpec?: RouteSpec;
  }
}

export type App = FastifyInstance<Server, IncomingMessage, ServerResponse, FastifyBaseLogger, TypeBoxTypeProvider>;

type Schema<R extends RouteSpec> = R['schema'];

/** What a route may add to its table entry: hooks and limits, never its method, path, schema or auth. */
export type RouteExtras<R extends RouteSpec> = Omit<
  RouteShorthandOptions<Server, IncomingMessage, ServerResponse, object, unknown, Schema<R>, TypeBoxTypeProvider>,
  'schema' | 'config' | 'preHandler'
> & {
  /**
   * Serialize the success answer with the table's `answer` schema (Fastify's compiled
   * serializer) instead of `JSON.stringify`: for hot routes whose answer has exactly the
   * schema's fields (any other field would be dropped). Default false.
   */
  serializeAnswer?: boolean;
};

export type RouteHandler<R extends RouteSpec> = RouteHandlerMethod<Server, IncomingMessage, ServerResponse, object, unknown, Schema<R>, TypeBoxTypeProvider>;

/**
 * Registers `spec`'s route on `app` with `handler`. The kind of key the scope needs is checked
 * before the handler runs (after validation, as a preHandler: a malformed request is a 400
 * whoever sends it); an unmatched or public request carries no principal.
 */
export function route<const R extends RouteSpec>(app: App, spec: R, extras: RouteExtras<R>, handler: RouteHandler<R>): void {
  const scope = spec.auth;
  const scopeCheck = scope === 'public' ? null : async (req: FastifyRequest): Promise<void> => checkScope(scope, req);
  if (scopeCheck) SCOPE_CHECKS.set(scopeCheck, spec);
  const { serializeAnswer, ...options } = extras;
  if (serializeAnswer && spec.answer === undefined) throw new Error(`route ${spec.method} ${spec.path}: serializeAnswer needs the table's answer schema`);
  app.route({
    ...(options as object),
    method: spec.method,
    url: spec.path,
    schema: serializeAnswer ? { ...spec.schema, response: { [spec.okStatus]: spec.answer } } : spec.schema,
    // The scopes that take no Bearer key tell the app's auth hook to look for none.
    config: scope === 'public' || scope === 'github-signature' ? { auth: scope, routeSpec: spec } : { routeSpec: spec },
    ...(scopeCheck ? { preHandler: scopeCheck } : {}),
    handler: handler as RouteHandlerMethod,
  });
}

/**
 * The scope check, run as the route's preHandler (after the body is parsed, so a form's `_csrf`
 * field is there to read). People and scripts need the route's role; a signed-in (cookie)
 * request that may change something must also carry its session's CSRF token — a Bearer caller
 * needs none (no browser sends its header by itself).
 */
function checkScope(scope: Exclude<AuthScope, 'public'>, req: FastifyRequest): void {
  const p = req.principal;
  const workerId = (req.params as { id?: string }).id ?? '';
  switch (scope) {
    case 'admin':
    case 'operator':
    case 'viewer':
      requireRole(p, scope);
      return checkCsrf(req);
    case 'own-worker':
      requireWorker(p, workerId);
      return;
    case 'own-worker-or-viewer':
      if (p.kind === 'worker') requireWorker(p, workerId);
      else requireRole(p, 'viewer');
      return checkCsrf(req);
    case 'holding-worker':
      requireAnyWorker(p);
      return;
    case 'build-token-or-worker':
      if (p.kind !== 'build' && p.kind !== 'worker') throw new ExpoError('AUTH_FORBIDDEN', "build heartbeats need the build's token or its worker's key");
      return;
    case 'github-signature':
      // No principal is resolved for this scope (the app's auth hook skips it) and none is
      // wanted: the route's handler verifies the delivery's signature on the raw body.
      return;
    default: {
      const never: never = scope;
      throw new Error(`unknown auth scope ${String(never)}`);
    }
  }
}

/** AUTH_CSRF for a session's request other than GET/HEAD without its token (`x-csrf-token` header or the body's `_csrf`). */
function checkCsrf(req: FastifyRequest): void {
  const p = req.principal;
  if (p.kind !== 'session' || req.method === 'GET' || req.method === 'HEAD') return;
  const header = req.headers['x-csrf-token'];
  const field = typeof req.body === 'object' && req.body !== null ? (req.body as { _csrf?: unknown })._csrf : undefined;
  if (csrfTokenMatches(p.csrfToken, header) || csrfTokenMatches(p.csrfToken, field)) return;
  throw new ExpoError('AUTH_CSRF', 'this signed-in request changes something but came without its CSRF token (x-csrf-token header or _csrf form field): reload the page and try again');
}

/**
 * The scope checks `route` made, each with the entry it checks for. The guard asks for one on
 * every non-public route, so a route that names a table entry in its config without going
 * through `route` (and so without its check) is refused too.
 */
const SCOPE_CHECKS = new WeakMap<object, RouteSpec>();

const hasScopeCheckFor = (preHandler: unknown, spec: RouteSpec): boolean =>
  (Array.isArray(preHandler) ? preHandler : [preHandler]).some((h) => typeof h === 'function' && SCOPE_CHECKS.get(h) === spec);

/** Every method+path of the table; a GET's HEAD twin is Fastify's own (exposeHeadRoutes). */
const KNOWN = new Set(Object.values(ROUTES as Record<string, RouteSpec>).flatMap((r) => (r.method === 'GET' ? [`GET ${r.path}`, `HEAD ${r.path}`] : [`${r.method} ${r.path}`])));

/**
 * Refuses, as it is registered (so `buildApp` fails at start), any route that is not an entry of
 * the table registered through `route`: a hand-written `app.get(…)` would escape the table's auth
 * scope, the clients and the docs check. Add it before registering any route.
 */
export function guardRouteTable(app: App): void {
  app.addHook('onRoute', (opts) => {
    const methods = Array.isArray(opts.method) ? opts.method : [opts.method];
    const spec = opts.config?.routeSpec;
    for (const method of methods) {
      const key = `${method} ${opts.url}`;
      const fromTable =
        spec !== undefined &&
        (spec.method === method || (spec.method === 'GET' && method === 'HEAD')) &&
        spec.path === opts.url &&
        (spec.auth === 'public' || hasScopeCheckFor(opts.preHandler, spec));
      if (!KNOWN.has(key) || !fromTable) throw new Error(`route ${key} is not registered from the route table (src/protocol/routes.ts): add it there and register it with route()`);
    }
  });
}
