/**
 * The controller as a Fastify application. `buildApp` wires the routes, validation, auth and
 * the error handler around a BuildService; it never listens and installs no signal handler —
 * `main.ts` does that, and tests drive the app with `app.inject`.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Logger } from 'pino';
import { ERROR_CODES, ExpoError, isExpoError } from '../protocol/errors.ts';
import { LIMITS } from '../protocol/schemas.ts';
import { DEFAULT_PREPARE_TIMEOUT_MS } from '../protocol/liveness.ts';
import { requireRole, type Principal } from './auth.ts';
import fastifyCookie from '@fastify/cookie';
import { AccessService, cookieMustBeSecure, SESSION_COOKIE, sessionCookie } from './access-service.ts';
import { accessRoutes } from './routes/access.ts';
import { answerClientError, mapFastifyError } from './http-errors.ts';
import { maxBytesKeyword } from './max-bytes.ts';
import { describeStorageFull, STORE_FULL_RETRY_AFTER_S } from './storage-full.ts';
import { BuildService } from './build-service.ts';
import type { BuildEvent } from './attempt-endings.ts';
import { ControllerMetrics } from './metrics.ts';
import { adminRoutes } from './routes/admin.ts';
import { workerRoutes } from './routes/worker.ts';
import { artifactRoutes } from './routes/artifacts.ts';
import { ArtifactFiles } from './artifact-files.ts';
import type { ArtifactBlobs } from './artifact-blobs.ts';
import type { Store } from './store/store.ts';
import { Watchdog } from './watchdog.ts';
import { graceFrom } from '../monitor/watchdog-policy.ts';
import { SecretBox } from './secret-box.ts';
import { Retention } from './retention.ts';
import { retentionRoutes } from './routes/retention.ts';
import { guardRouteTable, route } from './route.ts';
import { ROUTES } from '../protocol/routes.ts';
import { WorkerService } from './worker-service.ts';
import { StatusService } from './status-service.ts';
import { ArtifactService } from './artifact-service.ts';
import { githubRoutes } from './routes/github.ts';
import { checkoutRoutes } from './routes/checkout.ts';
import { WebhookService } from './webhook-service.ts';
import { GithubReporter } from './github-reporter.ts';
import type { GithubApi } from '../github/api.ts';
import { SystemClock, sleepOn, type Clock } from '../sys/clock.ts';
import { ProjectService } from './project-service.ts';
import { projectRoutes } from './routes/projects.ts';
import helmet from '@fastify/helmet';
import { uiRoutes } from './ui/plugin.ts';
import { LogNotifier } from './log-notifier.ts';
import { LogStreams, logStreamRoutes, type LogStreamsOptions } from './routes/log-stream.ts';
import { LocalCluster, type Cluster, type ClusterEvent } from './cluster.ts';
import { LeaderJobs } from './leader-jobs.ts';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal;
  }
  interface FastifyContextConfig {
    /**
     * Who may call the route. Every route needs a key unless it says `public` or
     * `github-signature` here (set by `route()` from the route table's auth scope; the latter's
     * handler verifies the delivery's signature itself): the auth decision is made on the route
     * the router matched, never on the URL string.
     */
    auth?: 'public' | 'github-signature';
  }
}

/**
 * Two info lines per request would dominate the heartbeat path (thousands a minute on a big
 * farm), so requests are logged once, at debug level; errors keep their level.
 */
class QuietLogController extends LogController {
  override incomingRequest(): void {}

  override requestCompleted(error: Error | null, req: FastifyRequest, reply: FastifyReply): void {
    if (error) return super.requestCompleted(error, req, reply, {});
    // Checked first: the line's fields are work for every request, thrown away below debug.
    if (!(req.log as Logger).isLevelEnabled('debug')) return;
    req.log.debug({ method: req.method, url: req.url.split('?')[0], statusCode: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'request');
  }
}

/** At most one disk-full error line per this interval, ms. */
const DISK_FULL_LOG_INTERVAL_MS = 30_000;

/** Messages echo client input (URLs, header values): keep them short. */
const bounded = (message: string): string => (message.length > 300 ? `${message.slice(0, 300)}…` : message);

export interface AppOptions {
  store: Store;
  adminKey: string;
  heartbeatTimeoutMs: number;
  maxLogBytes: number;
  /** Where artifact files are kept (`<dir>/<buildId>/<attempt>/…`) when `artifacts` is not given. */
  artifactsDir: string;
  /** Where artifact bytes live. Default `new ArtifactFiles(artifactsDir)`; main passes `S3Artifacts` for `--artifacts s3://…`. */
  artifacts?: ArtifactBlobs;
  /** The largest artifact accepted, in bytes. Default 4 GiB. */
  maxArtifactBytes?: number;
  defaultBuildTimeoutS: number;
  /** How long a claimed build may prepare before it fails `prepare_timeout`, ms. Default 600 000. */
  prepareTimeoutMs?: number;
  logger: Logger;
  /** Time source in ms since the epoch. Default Date.now. */
  now?: () => number;
  /** When the controller started (for the watchdog's grace). Default now(). */
  startedAt?: number;
  /**
   * When the store last found its database unreachable (PgDb's `lastUnavailableAt`), read at
   * every sweep: no controller watched then, so the watchdog's grace also counts from there.
   * Default never.
   */
  storeUnavailableAt?: () => number;
  /** How long an unacknowledged assignment may stay unlisted by its worker, in ms. Default 10 000. */
  claimGraceMs?: number;
  /** Seals secret env values at rest. Default a key held in memory only (tests; main passes the data dir's key). */
  secrets?: SecretBox;
  /** Final builds older than this many days are pruned by the schedule (and by default by `prune`); 0 keeps them. Default 30. */
  retentionDays?: number;
  /**
   * The directory holding the database: its free space is the `expo_worker_controller_disk_free_bytes`
   * gauge (beside the artifact directory's), and a disk-full error names it. Default: none.
   */
  dataDir?: string;
  /**
   * The secret GitHub signs webhook deliveries with (`--github-secret`). Default: none, and
   * `POST /webhooks/github` refuses every delivery with 503 `WEBHOOK_NOT_CONFIGURED`.
   */
  githubSecret?: string;
  /** How long a webhook delivery's body may take to arrive before its connection is closed, in ms. Default 30 000. */
  webhookArrivalMs?: number;
  /**
   * GitHub's API (`createGithubApi` of the configuration): pipeline files, statuses and check
   * runs, checkout tokens. Default: none configured — every call is refused (`GITHUB_STATUS`),
   * nothing is reported, and a delivery for a project fails with that reason.
   */
  github?: GithubApi;
  /** Where repositories are cloned from (`--github-web-url`). Default `https://github.com`. */
  githubWebUrl?: string;
  /** The controller as users reach it (`--public-url`): links on GitHub, sign-in's Origin, Secure cookie, HSTS. Default: none. */
  publicUrl?: string | null;
  /** Fastify's `trustProxy` (`--trust-proxy`): whose X-Forwarded-* headers set req.ip, req.protocol and req.host. Default false. */
  trustProxy?: boolean | readonly string[];
  /** Timings of the GitHub work, for tests: deliveries' first retry wait and how long one may wait; the reporter's sweep. */
  githubTuning?: { deliveryRetryBaseMs?: number; deliveryMaxPendingMs?: number; reportSweepMs?: number };
  /** scrypt's cost for users' passwords, as log2 N. Default 17; tests lower it to stay quick. */
  passwordCostLog2?: number;
  /** How long a dashboard session lasts, ms. Default 12 h. */
  sessionTtlMs?: number;
  /** Live log streams: their bounds (256 at once, 32 per person), ping and recheck intervals, life and write deadline (see `LogStreamsOptions`). */
  logStreams?: Pick<LogStreamsOptions, 'maxStreams' | 'pingMs' | 'recheckMs' | 'maxPerCaller' | 'maxLifeMs' | 'writeDeadlineMs'>;
  /**
   * The controllers sharing this database (`PgCluster`): every wake-up goes through its events,
   * and the leader-only jobs run while it says this controller leads (`startCluster`). Default
   * `LocalCluster` (one controller alone).
   */
  cluster?: Cluster;
  /** The retention schedule (cron), run while leading. Default: none. */
  retentionSchedule?: string;
}

export interface ControllerApp {
  app: FastifyInstance<Server, IncomingMessage, ServerResponse, FastifyBaseLogger, TypeBoxTypeProvider>;
  service: BuildService;
  /** Projects and their secrets (the delivery processor reads them). */
  projects: ProjectService;
  /** GitHub deliveries and the work they ask for. */
  webhooks: WebhookService;
  /** Builds' states reported back to GitHub. */
  reporter: GithubReporter;
  watchdog: Watchdog;
  metrics: ControllerMetrics;
  /** Pruning of old builds and abandoned uploads; `main` starts its schedule. */
  retention: Retention;
  /** Users, sessions, API tokens and the audit log. */
  access: AccessService;
  /** Wakes the live log streams of a build that changed (the build service tells it). */
  logNotifier: LogNotifier;
  /** The open live log streams. */
  logStreams: LogStreams;
  /** The controllers sharing the database: events and the lead. */
  cluster: Cluster;
  /**
   * Takes part in the cluster (after `listen`): the watchdog, the retention schedule, the webhook
   * delivery sweep and the GitHub reporter run while this controller leads, and the workers
   * waiting here are touched in the store so the leader's watchdog sees them alive.
   */
  startCluster: () => Promise<void>;
  /** Answers open long-polls with 204, ends open log streams, stops the watchdog and the server. Does not close the store. */
  shutdown: () => Promise<void>;
}

export async function buildApp(o: AppOptions): Promise<ControllerApp> {
  const now = o.now ?? Date.now;
  const diskError = (e: unknown) => o.store.diskError(e);
  const metrics = new ControllerMetrics({ heartbeatTimeoutMs: o.heartbeatTimeoutMs, clockSkewMs: () => cluster.clockSkewMs ?? null });
  const secrets = o.secrets ?? SecretBox.ephemeral();
  const projects = new ProjectService({ store: o.store, now, secrets });
  const clock = clockOf(now);
  const github = o.github ?? UNCONFIGURED_GITHUB;
  const reporter = new GithubReporter({
    store: o.store,
    api: github,
    publicUrl: o.publicUrl ?? null,
    clock,
    logger: o.logger,
    ...(o.githubTuning?.reportSweepMs === undefined ? {} : { sweepMs: o.githubTuning.reportSweepMs }),
    onReport: (r) => metrics.onGithubReport(r),
  });
  const logNotifier = new LogNotifier();
  const cluster: Cluster = o.cluster ?? new LocalCluster();
  const publish = (e: ClusterEvent) => cluster.publish(e);
  const service = new BuildService({
    store: o.store,
    now,
    heartbeatTimeoutMs: o.heartbeatTimeoutMs,
    prepareTimeoutMs: o.prepareTimeoutMs ?? DEFAULT_PREPARE_TIMEOUT_MS,
    maxLogBytes: o.maxLogBytes,
    claimGraceMs: o.claimGraceMs ?? 10_000,
    defaultTimeoutS: o.defaultBuildTimeoutS,
    secrets,
    // `access` is made below; a refusal comes only with a request, long after.
    onBuildTokenRefused: (tokenHash) => access.forgetBuildToken(tokenHash),
    onBackgroundError: (err, what) => o.logger.warn({ err }, what),
    projectSecrets: (projectId, names) => projects.secretValues(projectId, names),
    publish,
    onBuildChange: (id) => logNotifier.notify(id),
    onBuildEvent: (e: BuildEvent) => {
      publish({ kind: 'build', buildId: e.build.id });
      metrics.onBuildEvent(e, now());
      if (e.build.source !== null) publish({ kind: 'report' });
      if (e.kind === 'finished' || e.kind === 'requeued') {
        o.logger.info({ buildId: e.build.id, status: e.build.status, failureReason: e.build.failureReason, attempt: e.build.attempt }, `build ${e.kind}`);
      }
    },
  });
  const watchdog = new Watchdog({
    store: o.store,
    service,
    now,
    policy: graceFrom(o.heartbeatTimeoutMs, o.startedAt ?? now(), o.storeUnavailableAt),
    onFailing: () => {
      if (!cluster.leading || cluster.resign === undefined) return;
      o.logger.warn('giving up the lead: the watchdog sweeps keep failing here (another controller may do better)');
      cluster.resign();
    },
    onPass: (p) => {
      metrics.watchdogLoopDelay.observe(p.loopDelayMaxMs / 1000);
      o.logger.debug(p, 'watchdog pass');
    },
    onError: (err) => {
      void describeStorageFull(err, o.dataDir, diskError).then((full) =>
        full ? o.logger.error({ err, ...full.fields }, `watchdog sweep failed: ${full.summary}`) : o.logger.error({ err }, 'watchdog sweep failed'),
      );
    },
  });

  const app = Fastify({
    loggerInstance: o.logger as FastifyBaseLogger,
    bodyLimit: LIMITS.bodyBytes,
    return503OnClosing: false,
    // Behind a reverse proxy that it names, req.ip is the client (the sign-in limit and the audit
    // key on it) and req.protocol/req.host are what the browser used (the sign-in's Origin check).
    trustProxy: typeof o.trustProxy === 'object' ? [...o.trustProxy] : (o.trustProxy ?? false),
    logController: new QuietLogController(),
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: true, useDefaults: false }, plugins: [maxBytesKeyword] },
    // A request too malformed to reach a route still gets `{code, message}` with a documented code.
    clientErrorHandler: answerClientError,
    frameworkErrors: (err: FastifyError, _req: FastifyRequest, reply: FastifyReply) => {
      const code = mapFastifyError(err.code) ?? 'API_BAD_REQUEST';
      void reply.status(ERROR_CODES[code].status).send({ code, message: bounded(err.message) });
    },
  }).withTypeProvider<TypeBoxTypeProvider>();

  // Every route comes from the route table (src/protocol/routes.ts); any other fails the start.
  guardRouteTable(app);
  // Security headers on every answer. The dashboard runs no inline script or style (htmx's
  // indicator style is turned off in its layout; ansi_up's styles become classes).
  // Referrer-Policy same-origin, not helmet's no-referrer: under no-referrer a browser sends
  // `Origin: null` with every form POST, and the sign-in's login-CSRF check needs the real one.
  // HSTS only when the controller is known to be reached over https (--public-url), and without
  // includeSubDomains: pinning every sibling host of the farm's name is the domain owner's call.
  const hsts = cookieMustBeSecure(o.publicUrl, 'http') ? { maxAge: 31_536_000, includeSubDomains: false } : false;
  await app.register(helmet, { contentSecurityPolicy: { useDefaults: false, directives: CSP_DIRECTIVES }, referrerPolicy: { policy: 'same-origin' }, hsts });
  // Bodies are JSON only; anything else is refused with 415 instead of reaching a route as text.
  app.removeContentTypeParser('text/plain');
  app.decorateRequest('principal', null as unknown as { getter: () => Principal });
  let stopping = false;
  const access = new AccessService({
    store: o.store,
    now,
    adminKey: o.adminKey,
    logger: o.logger,
    ...(o.passwordCostLog2 === undefined ? {} : { passwordCostLog2: o.passwordCostLog2 }),
    ...(o.sessionTtlMs === undefined ? {} : { sessionTtlMs: o.sessionTtlMs }),
  });
  // Unsigned: the session cookie's value is a random 256-bit secret, looked up by its digest.
  await app.register(fastifyCookie);
  app.addHook('onRequest', async (req: FastifyRequest) => {
    // Decided on the route the router matched, never on `req.url`: the router decodes the path
    // (`/%61pi/…` is `/api/…`) and accepts absolute-form targets (`http://host/api/…`), so a
    // prefix test on the raw URL let such requests reach a route with no principal. An
    // unmatched request runs nothing but the not-found answer.
    const auth = req.routeOptions.config.auth;
    if (req.is404 || auth === 'public') return;
    // While stopping, requests already running finish; new ones are told to come back (agents retry).
    if (stopping) throw new ExpoError('API_SHUTTING_DOWN', 'the controller is stopping; retry shortly');
    if (auth === 'github-signature') return;
    req.principal = await access.resolve(req.headers.authorization, req.cookies[SESSION_COOKIE]);
  });

  // By route pattern, never the URL: a build id in a label would make a series per build.
  app.addHook('onResponse', async (req: FastifyRequest, reply: FastifyReply) => {
    metrics.onRequest(req.method, req.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000);
  });

  // While the disk stays full every agent retry is refused again: one error line per interval
  // (with how many were refused since) says it without filling what little room is left.
  let diskFullLoggedAt = Number.NEGATIVE_INFINITY;
  let diskFullUnlogged = 0;
  app.setErrorHandler(async (err: FastifyError | ExpoError, req, reply) => {
    const full = await describeStorageFull(err, o.dataDir, diskError);
    if (full) {
      if (now() - diskFullLoggedAt >= DISK_FULL_LOG_INTERVAL_MS) {
        req.log.error({ err, ...full.fields, refusedSinceLastLine: diskFullUnlogged }, full.summary);
        diskFullLoggedAt = now();
        diskFullUnlogged = 0;
      } else diskFullUnlogged++;
      return reply
        .status(ERROR_CODES.STORE_FULL.status)
        .header('retry-after', String(STORE_FULL_RETRY_AFTER_S))
        .send({ code: 'STORE_FULL', message: `the disk under the ${full.fields.file === null ? 'controller database' : 'artifact directory'} is full; nothing was written — retry later` });
    }
    // The client went away before its body arrived (an agent stopped mid-upload): its doing, not
    // a fault here — one info line, no stack; nobody is left to hear the answer. Only a client
    // error counts: a failed write here (a full disk, a removed folder) also destroys the request
    // stream, and is reported by the branches around this one.
    if (req.raw.destroyed && !req.raw.complete && isClientAbort(err)) {
      req.log.info({ code: (err as NodeJS.ErrnoException).code, route: req.routeOptions.url }, `request aborted by the client: ${err.message}`);
      return reply.status(400).send({ code: 'API_BAD_REQUEST', message: 'the request was aborted before its body arrived' });
    }
    if (isExpoError(err)) {
      const extra = 'expectedOffset' in err.details ? { expectedOffset: err.details.expectedOffset } : {};
      if (err.code === 'AUTH_RATE_LIMITED' && typeof err.details.retryAfterS === 'number') void reply.header('retry-after', String(err.details.retryAfterS));
      // The webhook's refusals are logged by its route, once per interval (anyone may send them).
      if (err.status >= 500 && !err.code.startsWith('WEBHOOK_')) req.log.error({ err }, 'request failed');
      return reply.status(err.status).send({ code: err.code, message: err.message, ...extra });
    }
    const e = err as FastifyError;
    if (e.validation) {
      const where = e.validationContext ?? 'request';
      const detail = e.validation.map((v) => `${where}${v.instancePath || ''} ${v.message ?? 'is invalid'}${v.keyword === 'additionalProperties' ? ` ('${String((v.params as { additionalProperty?: string }).additionalProperty)}')` : ''}`);
      return reply.status(400).send({ code: 'API_BAD_REQUEST', message: detail.join('; ') });
    }
    const mapped = mapFastifyError(e.code);
    if (mapped === 'API_UNSUPPORTED_MEDIA_TYPE') return reply.status(415).send({ code: mapped, message: 'send the body as application/json' });
    if (mapped !== undefined) return reply.status(ERROR_CODES[mapped].status).send({ code: mapped, message: bounded(e.message) });
    if (e.statusCode !== undefined && e.statusCode >= 400 && e.statusCode < 500) {
      return reply.status(e.statusCode === 404 ? 404 : 400).send({ code: e.statusCode === 404 ? 'API_NOT_FOUND' : 'API_BAD_REQUEST', message: bounded(e.message) });
    }
    req.log.error({ err }, 'request failed');
    return reply.status(500).send({ code: 'API_INTERNAL', message: 'internal error; see the controller log' });
  });
  app.setNotFoundHandler((req, reply) => reply.status(404).send({ code: 'API_NOT_FOUND', message: bounded(`no route ${req.method} ${req.url.split('?')[0]}`) }));

  const blobs = o.artifacts ?? new ArtifactFiles(o.artifactsDir);
  // An S3 bucket has no local disk to watch.
  const status = new StatusService({ store: o.store, metrics, diskDirs: [o.dataDir, blobs.kind === 'dir' ? o.artifactsDir : undefined] });
  route(app, ROUTES.health, {}, async () => status.health(stopping));
  route(app, ROUTES.metrics, {}, async (_req, reply) => {
    const scraped = await status.scrape(now());
    return reply.type(scraped.contentType).send(scraped.text);
  });

  const workers = new WorkerService({ store: o.store, now, wake: () => publish({ kind: 'queued' }) });
  await app.register(adminRoutes, { service, workers, access });
  await app.register(accessRoutes, { access, workers });
  await app.register(workerRoutes, { service, workers, metrics });
  const retention = new Retention({ store: o.store, blobs, retentionDays: o.retentionDays ?? 30, now, logger: o.logger });
  await app.register(retentionRoutes, { retention, access });
  const artifacts = new ArtifactService({
    store: o.store,
    builds: service,
    files: blobs,
    maxArtifactBytes: o.maxArtifactBytes ?? 4 * 1024 ** 3,
    now,
  });
  await app.register(artifactRoutes, { artifacts });
  await app.register(projectRoutes, { projects, access });
  const logStreams = new LogStreams({
    ...o.logStreams,
    store: o.store,
    notifier: logNotifier,
    // The credential the stream's request came with, resolved again as the auth hook does (a
    // revoked or expired token, a removed user, an ended session no longer resolve); 'viewer' is
    // the stream route's role. A store failure is not a refusal: it ends the stream as a failure.
    stillValid: async (req) => {
      try {
        requireRole(await access.resolve(req.headers.authorization, req.cookies[SESSION_COOKIE]), 'viewer');
        return true;
      } catch (err) {
        if (isExpoError(err) && err.code.startsWith('AUTH_')) return false;
        throw err;
      }
    },
  });
  await app.register(logStreamRoutes, { streams: logStreams, store: o.store });
  const webhooks = new WebhookService({
    store: o.store,
    projects,
    builds: service,
    github,
    webUrl: o.githubWebUrl ?? 'https://github.com',
    publicUrl: o.publicUrl ?? null,
    clock,
    logger: o.logger,
    retryBaseMs: o.githubTuning?.deliveryRetryBaseMs,
    maxPendingMs: o.githubTuning?.deliveryMaxPendingMs,
    // With other controllers, one that accepted a delivery may still be working on it.
    handoffMs: cluster instanceof LocalCluster ? 0 : 120_000,
  });
  await app.register(checkoutRoutes, { service, github });
  await app.register(githubRoutes, { secret: o.githubSecret ?? null, arrivalMs: o.webhookArrivalMs, webhooks });
  await app.register(uiRoutes, {
    store: o.store,
    builds: service,
    workers,
    projects,
    artifacts,
    access,
    sessionCookie,
    // The controller itself speaks plain HTTP: TLS is the proxy's, which --public-url names (or,
    // behind a trusted proxy, X-Forwarded-Proto: req.protocol follows it only with --trust-proxy).
    secureCookies: (protocol) => cookieMustBeSecure(o.publicUrl, protocol),
    // The cookie lives as long as the session it names (the access service's TTL, 12 h by default).
    sessionMaxAgeS: Math.floor((access.o.sessionTtlMs ?? 12 * 3600 * 1000) / 1000),
    publicUrl: o.publicUrl ?? null,
    now,
  });
  await app.ready();
  // One subscriber turns every event, this controller's own and the others', into the local wake-up.
  cluster.subscribe((e) => {
    service.wakeLocally(e);
    if (e.kind === 'report') reporter.notify();
  });
  const leaderJobs = new LeaderJobs({ watchdog, retention, webhooks, reporter, metrics, logger: o.logger, retentionSchedule: o.retentionSchedule });
  // Workers waiting here look silent in the store; the leader's watchdog (maybe on another
  // controller) cannot see this controller's waits, so their contact is renewed while they wait.
  const touchMs = Math.max(10, Math.floor(o.heartbeatTimeoutMs / 4));
  let toucher: NodeJS.Timeout | null = null;

  return {
    app,
    service,
    projects,
    webhooks,
    reporter,
    watchdog,
    metrics,
    retention,
    access,
    logNotifier,
    logStreams,
    cluster,
    startCluster: async () => {
      // A renewal still running (a slow database) is not overtaken by the next one.
      let touching = false;
      toucher ??= setInterval(() => {
        if (touching) return;
        touching = true;
        service
          .touchWaiting()
          .catch((err: unknown) => o.logger.warn({ err }, 'cannot renew the contact of waiting workers'))
          .finally(() => (touching = false));
      }, touchMs);
      toucher.unref();
      await cluster.start((leading) => leaderJobs.lead(leading));
    },
    shutdown: async () => {
      stopping = true;
      if (toucher) clearInterval(toucher);
      // First: another controller takes the lead at once; this one's leader jobs stop.
      await cluster.stop();
      await leaderJobs.idle();
      await webhooks.stop();
      await reporter.stop();
      await retention.stop();
      await watchdog.stop();
      service.waits.wakeAll();
      await service.dispatcher.closeAll();
      // A hijacked stream would hold the server's close until its client left.
      logStreams.closeAll();
      await app.close();
    },
  };
}

/** The clock of the GitHub work: the app's `now`, the system's timers. */
function clockOf(now: () => number): Clock {
  const system = new SystemClock();
  const clock: Clock = { now, sleep: (ms, signal) => sleepOn(clock, ms, signal), after: (ms, fn) => system.after(ms, fn), every: (ms, fn) => system.every(ms, fn) };
  return clock;
}

/** The GitHub API when none is configured: nothing to read, report or clone with. */
const UNCONFIGURED_GITHUB: GithubApi = {
  mode: 'none',
  getFile: () => Promise.reject(new ExpoError('GITHUB_STATUS', 'no GitHub API is configured', { details: { status: 0, unsupported: true } })),
  createStatus: () => Promise.resolve(),
  createCheckRun: () => Promise.resolve(0),
  updateCheckRun: () => Promise.resolve(),
  cloneToken: () => Promise.resolve({ token: null, expiresAt: null }),
};

/** The Content-Security-Policy of every answer: our own files only, no inline script or style, no framing. */
const CSP_DIRECTIVES = {
  defaultSrc: ["'self'"],
  scriptSrc: ["'self'"],
  styleSrc: ["'self'"],
  imgSrc: ["'self'", 'data:'],
  connectSrc: ["'self'"],
  objectSrc: ["'none'"],
  baseUri: ["'none'"],
  frameAncestors: ["'none'"],
  formAction: ["'self'"],
};


/** The errors Node gives a request stream whose client closed the connection mid-body. */
function isClientAbort(err: Error): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE' || err.message === 'aborted';
}
